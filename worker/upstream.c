/* Upstream connections: non-blocking connect and the per-worker keep-alive
 * pool per server (LIFO, so the warmest connection is reused and the
 * coldest ones time out). A connection counts as active in shared memory
 * from the moment it is handed to an exchange until it is released. */
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
    u->state = r == 0 ? UCONN_ACTIVE : UCONN_CONNECTING;
    u->can_write = r == 0;
    if (worker_epoll_add(w, fd, &u->ev) < 0) {
        *err = errno;
        close(fd);
        free(u);
        return NULL;
    }
    shm_conn_inc(w->shm, w->row, s->id);
    return u;
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
 * (or talking out of turn): either way it must not carry a request. */
void upstream_idle_event(struct worker *w, struct uconn *u, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        upstream_close(w, u, "closed by the server while idle");
}
