/* The worker's event loop: edge-triggered epoll over client and upstream
 * sockets, level-triggered over its listening sockets and the master's
 * channel; one clock read per turn; timers from a heap; objects closed
 * during a batch are freed only after it, so later events never see freed
 * memory. Buffers and exchanges come from free lists: no malloc per request. */
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/shm.h"
#include "worker/core.h"
#include "worker/tls.h"
#include "worker/tls_upstream.h"

#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define FREE_KEPT 16 /* spares always kept per pool */
#define TICK_MS 200  /* log flush and pool trim period */
#define EMFILE_PAUSE_MS 100

_Static_assert(offsetof(struct conn, timer) == offsetof(struct uconn, timer),
               "timer owners are told apart by their ev tag at the same offset");

/* ---- pools ---- */

struct buf *worker_buf_get(struct worker *w, enum buf_class cls)
{
    struct buf *b = pool_get(&w->bufs[cls]);
    if (!b) return NULL;
    b->next = NULL;
    b->lo = b->hi = 0;
    b->cap = w->buf_size[cls];
    return b;
}

void worker_buf_put(struct worker *w, struct buf **bp)
{
    struct buf *b = *bp;
    if (!b) return;
    *bp = NULL;
    pool_put(&w->bufs[b->cap == w->buf_size[BUF_BIG] ? BUF_BIG : BUF_SMALL], b);
}

int worker_buf_grow(struct worker *w, struct buf **bp)
{
    struct buf *old = *bp, *b = worker_buf_get(w, BUF_BIG);
    if (!b) return -1;
    memcpy(b->data, old->data, old->hi);
    b->lo = old->lo;
    b->hi = old->hi;
    worker_buf_put(w, bp);
    *bp = b;
    return 0;
}

struct exchange *worker_exchange_get(struct worker *w)
{
    struct exchange *x = pool_get(&w->exchanges);
    if (!x) return NULL;
    memset(x, 0, sizeof(*x));
    http1_init(&x->req, true, x->req_headers, w->max_req_headers);
    return x;
}

void worker_exchange_put(struct worker *w, struct exchange *x)
{
    if (x->resphead == x->reqhead) x->resphead = NULL;
    worker_buf_put(w, &x->reqhead);
    worker_buf_put(w, &x->resphead);
    pool_put(&w->exchanges, x);
}

int worker_epoll_add(struct worker *w, int fd, struct ev *ev)
{
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = ev};
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &e);
}

/* ---- clock ---- */

static void clock_update(struct worker *w)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    w->now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    time_t t = time(NULL);
    if (t != w->wall_sec) {
        struct tm tm;
        w->wall_sec = t;
        gmtime_r(&t, &tm);
        strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    }
}

/* ---- accepting ---- */

static void listen_pause(struct worker *w, struct lsock *l, bool pause)
{
    if (l->paused == pause) return;
    l->paused = pause;
    struct epoll_event e = {.events = pause ? 0 : EPOLLIN, .data.ptr = &l->ev};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, l->fd, &e);
}

void worker_accept_resume(struct worker *w)
{
    if (w->draining || w->nconns >= w->cfg->max_connections) return;
    for (unsigned i = 0; i < w->nls; i++)
        if (w->ls[i].paused && !w->accept_backoff) listen_pause(w, &w->ls[i], false);
}

static void accept_some(struct worker *w, struct lsock *l)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (w->nconns >= w->cfg->max_connections) {
            log_warn("max_connections (%u) reached: accepting paused", w->cfg->max_connections);
            for (unsigned k = 0; k < w->nls; k++)
                listen_pause(w, &w->ls[k], true);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting briefly instead of spinning. */
                /* Once per 10 s: at the limit this repeats every pause. */
                if (!w->emfile_logged || w->now - w->emfile_logged >= 10000) {
                    log_error("accept: %s; pausing accept for %d ms at a time", strerror(errno),
                              EMFILE_PAUSE_MS);
                    w->emfile_logged = w->now;
                }
                for (unsigned k = 0; k < w->nls; k++)
                    listen_pause(w, &w->ls[k], true);
                w->accept_backoff = true;
                timer_arm(&w->timers, &w->tick, w->now + EMFILE_PAUSE_MS);
            }
            return;
        }
        conn_accept(w, fd, l->wl, (struct sockaddr *)&ss, len);
    }
}

/* ---- draining ---- */

static void drain_start(struct worker *w)
{
    if (w->draining) return;
    w->draining = true;
    w->drain_deadline = w->now + w->cfg->shutdown_timeout;
    log_notice("draining: %u connections open", w->nconns);
    for (unsigned i = 0; i < w->nls; i++) {
        /* What already waits in our queue is ours to serve: on shutdown, or
         * a slot the reload drops, nobody else may ever accept it. */
        if (!w->ls[i].paused) accept_some(w, &w->ls[i]);
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->ls[i].fd, NULL);
        close(w->ls[i].fd);
    }
    w->nls = 0;
    for (struct conn *c = w->live, *next; c; c = next) {
        next = c->live_next;
        conn_drain(w, c);
    }
}

/* ---- dispatch ---- */

static void channel_read(struct worker *w)
{
    char cmd[16];
    ssize_t n = read(w->channel, cmd, sizeof(cmd));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        /* The master is gone: finish what is in flight, then exit. */
        drain_start(w);
        w->channel = -1;
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (cmd[i] == WORKER_MSG_QUIT)
            drain_start(w);
        else if (cmd[i] == WORKER_MSG_STOP)
            w->stopping = true;
    }
}

static void dispatch(struct worker *w, struct epoll_event *e)
{
    struct ev *ev = e->data.ptr;
    switch ((enum ev_kind)ev->kind) {
    case EV_LISTEN:
        accept_some(w, (struct lsock *)ev);
        break;
    case EV_CLIENT:
        conn_event(w, (struct conn *)ev, e->events);
        break;
    case EV_UPSTREAM: {
        struct uconn *u = (struct uconn *)ev;
        if (u->state == UCONN_IDLE)
            upstream_idle_event(w, u, e->events);
        else if (u->state != UCONN_CLOSED)
            proxy_upstream_event(w, u, e->events);
        break;
    }
    case EV_CHANNEL:
        channel_read(w);
        break;
    }
}

static void tick(struct worker *w)
{
    log_access_flush();
    w->accept_backoff = false;
    worker_accept_resume(w);
    conn_perip_log(w);
    pool_trim(&w->bufs[BUF_SMALL]);
    pool_trim(&w->bufs[BUF_BIG]);
    pool_trim(&w->exchanges);
    tls_tick(w);
    pool_trim(&w->conns);
    timer_arm(&w->timers, &w->tick, w->now + TICK_MS);
}

static void run_timers(struct worker *w)
{
    struct timer *t;
    while ((t = timers_pop_expired(&w->timers, w->now))) {
        if (t == &w->tick) {
            tick(w);
            continue;
        }
        struct ev *ev = (struct ev *)((char *)t - offsetof(struct conn, timer));
        if (ev->kind == EV_CLIENT)
            conn_timeout(w, (struct conn *)ev);
        else
            proxy_upstream_timeout(w, (struct uconn *)ev);
    }
}

static void free_dead(struct worker *w)
{
    while (w->dead_conns) {
        struct conn *c = w->dead_conns;
        w->dead_conns = c->next;
        pool_put(&w->conns, c);
    }
    while (w->dead_uconns) {
        struct uconn *u = w->dead_uconns;
        w->dead_uconns = u->next;
        free(u);
    }
}

/* ---- setup ---- */

/* Streaming buffers: 32 KiB makes a 64 KiB response 2-3 read/writev pairs
 * instead of 4-5, measured at 0.83-0.93x instead of 1.0x HAProxy's CPU per
 * request (t/bench/run big-64k); a streaming exchange holds one, about what
 * nginx's default proxy buffers take. Idle connections hold none. */
static uint32_t buffer_size(const struct config *cfg)
{
    size_t sz = 32768;
    for (unsigned i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].max_header_size + 1024 > sz)
            sz = cfg->listeners[i].max_header_size + 1024;
    return (uint32_t)sz;
}

static int setup(struct worker *w, const struct worker_args *a)
{
    w->cfg = a->cfg;
    w->shm = a->shm;
    w->slot = a->slot;
    w->row = a->row;
    w->channel = a->channel;
    w->buf_size[BUF_BIG] = buffer_size(a->cfg);
    w->buf_size[BUF_SMALL] = 4096 - sizeof(struct buf) - 16; /* a page with malloc's header */
    pool_init(&w->bufs[BUF_SMALL], sizeof(struct buf) + w->buf_size[BUF_SMALL], FREE_KEPT);
    pool_init(&w->bufs[BUF_BIG], sizeof(struct buf) + w->buf_size[BUF_BIG], FREE_KEPT);
    w->max_resp_headers = 200;
    w->max_req_headers = 1;
    for (unsigned i = 0; i < a->cfg->nlisteners; i++)
        if (a->cfg->listeners[i].max_headers > w->max_req_headers)
            w->max_req_headers = (uint16_t)a->cfg->listeners[i].max_headers;
    pool_init(&w->conns, sizeof(struct conn), FREE_KEPT);
    pool_init(&w->exchanges,
              sizeof(struct exchange) +
                  ((size_t)w->max_req_headers + w->max_resp_headers) * sizeof(struct http1_header),
              FREE_KEPT);
    if (getrandom(&w->rid_seed, sizeof(w->rid_seed), 0) != sizeof(w->rid_seed))
        w->rid_seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0 || timers_init(&w->timers, 1024) < 0) return -1;
    w->pools = calloc(a->cfg->nservers ? a->cfg->nservers : 1, sizeof(*w->pools));
    w->ls = calloc(a->nlistens ? a->nlistens : 1, sizeof(*w->ls));
    if (!w->pools || !w->ls || balance_init(&w->bal, a->cfg, a->shm) < 0) return -1;
    clock_update(w);
    if (tls_worker_init(w) < 0) return -1; /* after fork: own DRBG and PSA state */
    if (tls_upstream_worker_init(w) < 0) return -1;

    for (unsigned i = 0; i < a->nlistens; i++) {
        struct lsock *l = &w->ls[w->nls++];
        l->ev.kind = EV_LISTEN;
        l->fd = a->listens[i].fd;
        l->wl = &a->listens[i];
        int one = 1; /* accepted sockets inherit it: no setsockopt per connection */
        setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &l->ev};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, l->fd, &e) < 0) return -1;
    }
    w->channel_ev.kind = EV_CHANNEL;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &w->channel_ev};
    if (w->channel >= 0 && epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->channel, &e) < 0) return -1;
    timer_arm(&w->timers, &w->tick, w->now + TICK_MS);
    return 0;
}

/* USR1 reopens the logs; TERM and INT (the master's fast stop, or a
 * terminal's ^C to the whole group) end the loop at once, so that the exit
 * line and the buffered access log are still written. */
static int signals_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int worker_main(const struct worker_args *a)
{
    struct worker w;
    memset(&w, 0, sizeof(w));
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an error code, not a signal */
    /* Buffers and exchanges (>= 4 KiB) get pages of their own, so the memory
     * of a burst goes back to the kernel when the free lists shrink, instead
     * of staying stranded between small connection structs. */
    mallopt(M_MMAP_THRESHOLD, 4000);
    if (setup(&w, a) < 0) {
        log_error("worker setup failed: %s", strerror(errno));
        return 2;
    }
    struct ev sig_ev = {EV_CHANNEL};
    int sfd = signals_fd();
    if (sfd >= 0) {
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &sig_ev};
        epoll_ctl(w.epfd, EPOLL_CTL_ADD, sfd, &e);
    }
    if (w.channel >= 0) {
        char ready = WORKER_MSG_READY;
        if (write(w.channel, &ready, 1) != 1) log_warn("cannot tell the master we are ready");
    }
    struct epoll_event events[MAX_EVENTS];
    int64_t next_beat = w.now + WORKER_BEAT_MS;
    while (!w.stopping) {
        int timeout = w.nposted ? 0 : timers_next(&w.timers, w.now);
        int n = epoll_wait(w.epfd, events, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait: %s", strerror(errno));
            break;
        }
        clock_update(&w);
        w.hs_spent = 0; /* a new turn: a new TLS handshake budget */
        /* Those that waited for this turn go first: first come, first
         * served (handshakes over the last turn's budget, big transfers). */
        conn_run_posted(&w);
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == &sig_ev) {
                struct signalfd_siginfo si;
                while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                    if (si.ssi_signo != SIGUSR1) {
                        w.stopping = true;
                        continue;
                    }
                    log_reopen();
                    log_access_reopen();
                }
                continue;
            }
            dispatch(&w, &events[i]);
        }
        run_timers(&w);
        free_dead(&w);
        if (w.channel >= 0 && w.now >= next_beat) {
            /* The tick timer wakes the loop often enough for this. */
            char beat = WORKER_MSG_BEAT;
            if (write(w.channel, &beat, 1) < 0 && errno != EAGAIN)
                log_debug("heartbeat: %s", strerror(errno));
            next_beat = w.now + WORKER_BEAT_MS;
        }
        if (w.draining && (w.nconns == 0 || w.now >= w.drain_deadline)) {
            if (w.nconns) log_warn("shutdown_timeout: closing %u connections", w.nconns);
            break;
        }
    }
    /* Every way out of the loop (drained, QUIT, TERM, the master gone)
     * passes here: the load spread over workers can be read from the log. */
    log_info("worker exiting: %llu requests on %llu connections", (unsigned long long)w.requests,
             (unsigned long long)w.accepted);
    log_access_flush();
    return 0;
}
