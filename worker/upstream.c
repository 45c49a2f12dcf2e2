/* Upstream connections: non-blocking connect (then the TLS handshake when
 * the upstream has tls = on), reads and writes through TLS or not, and the
 * per-worker keep-alive pool per server (LIFO, so the warmest connection is
 * reused and the coldest ones time out; pooled TLS connections keep their
 * session). A connection counts as active in shared memory from the moment
 * it is handed to an exchange until it is released. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/shm.h"
#include "worker/core.h"
#include "worker/tls_upstream.h"

static void pool_remove(struct upool *p, struct uconn *u)
{
    for (struct uconn **pp = &p->idle; *pp; pp = &(*pp)->next) {
        if (*pp == u) {
            *pp = u->next;
            p->nidle--;
            return;
        }
    }
}

void upstream_close(struct worker *w, struct uconn *u, const char *reason)
{
    if (u->state == UCONN_CLOSED) return;
    log_debug("close upstream connection %s fd=%d: %s", u->server->name, u->fd, reason);
    if (u->state == UCONN_IDLE)
        pool_remove(&w->pools[u->server->id], u);
    else
        shm_conn_dec(w->shm, w->row, u->server->id);
    timer_cancel(&w->timers, &u->timer);
    worker_buf_put(w, &u->in);
    if (u->tls) tls_upstream_free(w, u);
    close(u->fd);
    u->fd = -1;
    u->state = UCONN_CLOSED;
    u->x = NULL;
    u->next = w->dead_uconns;
    w->dead_uconns = u;
}

static struct uconn *pool_pop(struct worker *w, const struct conf_server *s)
{
    struct upool *p = &w->pools[s->id];
    struct uconn *u = p->idle;
    if (!u) return NULL;
    p->idle = u->next;
    p->nidle--;
    timer_cancel(&w->timers, &u->timer);
    u->state = UCONN_ACTIVE;
    u->reused = true;
    u->can_write = true;
    u->next = NULL;
    shm_conn_inc(w->shm, w->row, s->id);
    return u;
}

static struct uconn *connect_new(struct worker *w, const struct conf_server *s, int *err)
{
    int fd = socket(s->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int r = connect(fd, (const struct sockaddr *)&s->addr.ss, s->addr.len);
    if (r < 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return NULL;
    }
    struct uconn *u = calloc(1, sizeof(*u));
    if (!u) {
        *err = ENOMEM;
        close(fd);
        return NULL;
    }
    u->ev.kind = EV_UPSTREAM;
    u->fd = fd;
    u->server = s;
    u->state = UCONN_CONNECTING;
    int bad = worker_epoll_add(w, fd, &u->ev) < 0 ? errno : 0;
    if (!bad && r == 0 && upstream_connected(w, u) < 0) bad = ENOMEM;
    if (bad) {
        *err = bad;
        close(fd);
        free(u);
        return NULL;
    }
    shm_conn_inc(w->shm, w->row, s->id);
    return u;
}

int upstream_connected(struct worker *w, struct uconn *u)
{
    u->can_write = true;
    if (!u->server->upstream->tls_client) {
        u->state = UCONN_ACTIVE;
        return 0;
    }
    if (tls_upstream_new(w, u) < 0) return -1;
    u->state = UCONN_HANDSHAKE;
    return 0;
}

ssize_t upstream_read(struct worker *w, struct uconn *u, void *p, size_t n)
{
    if (u->tls) return tls_upstream_read(w, u, p, n);
    for (;;) {
        ssize_t k = read(u->fd, p, n);
        /* A short read drained the socket (see conn_read); not so when the
         * FIN came with the last edge. */
        if (k > 0 && (size_t)k < n && !u->rdhup) u->can_read = false;
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EAGAIN) u->can_read = false;
        return k;
    }
}

enum io_result upstream_write(struct worker *w, struct uconn *u, struct out *o)
{
    if (u->tls) return (enum io_result)tls_upstream_write(w, u, o);
    return out_write(u->fd, o, &u->can_write);
}

struct uconn *upstream_get(struct worker *w, const struct conf_server *s, bool fresh, int *err)
{
    struct uconn *u = fresh ? NULL : pool_pop(w, s);
    return u ? u : connect_new(w, s, err);
}

void upstream_release(struct worker *w, struct uconn *u, bool reusable)
{
    const struct conf_upstream *up = u->server->upstream;
    struct upool *p = &w->pools[u->server->id];
    u->x = NULL;
    u->nrequests++;
    /* TLS bytes left after the response: a late session ticket is taken,
     * anything else would be read as the next response. */
    if (reusable && u->tls && tls_upstream_pending(u) && !tls_upstream_idle_read(w, u))
        reusable = false;
    if (!reusable || w->draining || p->nidle >= up->keepalive) {
        upstream_close(w, u, reusable ? "pool full" : "not reusable");
        return;
    }
    shm_conn_dec(w->shm, w->row, u->server->id);
    worker_buf_put(w, &u->in);
    u->state = UCONN_IDLE;
    u->can_read = false;
    u->next = p->idle;
    p->idle = u;
    p->nidle++;
    timer_arm(&w->timers, &u->timer, w->now + up->keepalive_timeout);
}

/* Anything readable on an idle pooled connection is the server closing it
 * (or talking out of turn): either way it must not carry a request. Over
 * TLS, a session ticket may come late: that one is taken, not fatal. */
void upstream_idle_event(struct worker *w, struct uconn *u, uint32_t events)
{
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
    bool ok =
        u->tls && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && tls_upstream_idle_read(w, u);
    u->can_read = false;
    if (!ok) upstream_close(w, u, "closed by the server while idle");
}
