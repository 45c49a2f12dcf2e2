/* Client connections: the state machine IDLE -> HEAD -> (PROXY | RESPOND)
 * -> IDLE or LINGER -> CLOSED. Every transition goes through conn_set_state.
 * A connection holds a buffer and an exchange only while a request is in
 * progress; idle keep-alive connections hold neither. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/ipcount.h"
#include "common/log.h"
#include "common/net.h"
#include "common/shm.h"
#include "common/str.h"
#include "worker/core.h"
#include "worker/route.h"
#include "worker/tls.h"

#define LINGER_MS 2000
/* A full handshake costs 1.2-1.5 ms of CPU with mbedTLS (ECDSA P-256), 3 ms
 * and more with RSA-2048: handshake steps run while the loop turn has spent
 * less than this on them, the rest wait for the next turn (which polls
 * without sleeping), so the requests of established connections wait at
 * most this plus one step behind a burst of handshakes. */
#define HANDSHAKE_BUDGET_NS 2000000

const char *conn_state_str(enum conn_state s)
{
    static const char *const names[] = {"idle",   "head",      "proxy", "respond",
                                        "linger", "handshake", "closed"};
    return s <= CONN_CLOSED ? names[s] : "?";
}

void conn_set_state(struct conn *c, enum conn_state s)
{
    c->state = (uint8_t)s;
}

enum io_result out_write(int fd, struct out *o, bool *can_write)
{
    while (o->i < o->n) {
        ssize_t n = writev(fd, o->iov + o->i, o->n - o->i);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                *can_write = false;
                return IO_AGAIN;
            }
            return IO_ERROR;
        }
        size_t left = (size_t)n;
        while (o->i < o->n && left >= o->iov[o->i].iov_len)
            left -= o->iov[o->i++].iov_len;
        if (o->i < o->n) {
            o->iov[o->i].iov_base = (char *)o->iov[o->i].iov_base + left;
            o->iov[o->i].iov_len -= left;
            /* A short write means the socket buffer is full: don't try again now. */
            *can_write = false;
            return IO_AGAIN;
        }
    }
    o->i = o->n = 0;
    return IO_OK;
}

ssize_t conn_read(struct conn *c, void *p, size_t n)
{
    if (c->tls) return tls_read(c, p, n);
    for (;;) {
        ssize_t k = read(c->fd, p, n);
        /* A short read drained the socket; edge-triggered epoll reports the
         * next arrival, so skip the read that would only say EAGAIN. Not so
         * when the FIN came with the last edge: no edge will announce it. */
        if (k > 0 && (size_t)k < n && !c->rdhup) c->can_read = false;
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EAGAIN) c->can_read = false;
        return k;
    }
}

enum io_result conn_write(struct worker *w, struct conn *c, struct out *o)
{
    if (c->tls) return (enum io_result)tls_write(w, c, o);
    return out_write(c->fd, o, &c->can_write);
}

static void conn_release_request(struct worker *w, struct conn *c)
{
    if (c->x) {
        worker_exchange_put(w, c->x);
        c->x = NULL;
    }
}

static void conn_free_buffers(struct worker *w, struct conn *c)
{
    conn_release_request(w, c);
    worker_buf_put(w, &c->in);
}

static int64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool conn_post(struct worker *w, struct conn *c)
{
    if (c->posted) return true;
    if (w->nposted == w->posted_cap) {
        unsigned cap = w->posted_cap ? 2 * w->posted_cap : 64;
        struct conn **p = realloc(w->posted, cap * sizeof(*p));
        if (!p) return false;
        w->posted = p;
        w->posted_cap = cap;
    }
    w->posted[w->nposted++] = c;
    c->posted = true;
    return true;
}

/* A closed connection leaves the posted list at once: its struct goes back
 * to the pool at the end of the turn and may be a new connection by the
 * time the list is run. */
static void conn_unpost(struct worker *w, struct conn *c)
{
    if (!c->posted) return;
    c->posted = false;
    for (unsigned i = 0; i < w->nposted; i++)
        if (w->posted[i] == c) w->posted[i] = NULL;
}

void conn_close(struct worker *w, struct conn *c, const char *reason)
{
    if (c->state == CONN_CLOSED) return;
    log_debug("close client connection fd=%d state=%s: %s", c->fd, conn_state_str(c->state),
              reason);
    if (c->x && c->x->u) proxy_abort(w, c->x, reason);
    conn_free_buffers(w, c);
    timer_cancel(&w->timers, &c->timer);
    conn_unpost(w, c);
    if (c->tls) tls_conn_free(c);
    close(c->fd);
    c->fd = -1;
    if (c->ip_slot >= 0) ipcount_release(w->shm, w->row, c->ip_slot);
    c->ip_slot = -1;
    conn_set_state(c, CONN_CLOSED);
    if (c->live_prev)
        c->live_prev->live_next = c->live_next;
    else
        w->live = c->live_next;
    if (c->live_next) c->live_next->live_prev = c->live_prev;
    c->next = w->dead_conns;
    w->dead_conns = c;
    w->nconns--;
    worker_accept_resume(w);
}

/* Close gracefully: stop writing, read what the client still sends until it
 * closes, so a pending request does not turn our response into an RST. */
static void conn_linger(struct worker *w, struct conn *c)
{
    conn_free_buffers(w, c);
    if (c->tls) tls_conn_notify(c);
    shutdown(c->fd, SHUT_WR);
    conn_set_state(c, CONN_LINGER);
    timer_arm(&w->timers, &c->timer, w->now + LINGER_MS);
}

/* Reads per loop turn while lingering: a client that keeps sending as fast
 * as we discard would otherwise hold the loop until the linger deadline. */
#define LINGER_READS_PER_TURN 16

static void linger_read(struct worker *w, struct conn *c)
{
    char sink[16384];
    for (int reads = 0; c->can_read; reads++) {
        if (reads == LINGER_READS_PER_TURN && conn_post(w, c)) return;
        ssize_t n = read(c->fd, sink, sizeof(sink));
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            c->can_read = false;
            return;
        }
        conn_close(w, c, n == 0 ? "closed after response" : "read error while lingering");
        return;
    }
}

static void conn_idle(struct worker *w, struct conn *c)
{
    conn_free_buffers(w, c);
    conn_set_state(c, CONN_IDLE);
    c->had_bytes = false;
    timer_arm(&w->timers, &c->timer, w->now + c->wl->listener->idle_timeout);
}

/* ---- request head ---- */

static void request_id(struct worker *w, struct exchange *x)
{
    const struct http1_msg *m = &x->req;
    for (uint16_t i = 0; (m->kinds & HK_BIT(HK_X_REQUEST_ID)) && i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        if (h->kind != HK_X_REQUEST_ID) continue;
        const char *v = m->base + h->value;
        bool ok = h->value_len >= 1 && h->value_len < sizeof(x->rid);
        for (uint32_t k = 0; ok && k < h->value_len; k++) {
            char ch = v[k];
            ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 ch == '-' || ch == '_' || ch == '.' || ch == ':' || ch == '+' || ch == '/' ||
                 ch == '=';
        }
        if (ok) {
            memcpy(x->rid, v, h->value_len);
            x->rid_len = (uint8_t)h->value_len;
            return;
        }
        break;
    }
    /* splitmix64 over a per-worker random seed and a counter: unique, unguessable enough
     * for correlation, no syscall. */
    uint64_t z[2];
    for (int k = 0; k < 2; k++) {
        uint64_t v = w->rid_seed + (++w->rid_counter) * 0x9e3779b97f4a7c15ULL;
        v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ULL;
        v = (v ^ (v >> 27)) * 0x94d049bb133111ebULL;
        z[k] = v ^ (v >> 31);
    }
    static const char hex[] = "0123456789abcdef"; /* no printf per request */
    for (int k = 0; k < 2; k++)
        for (int d = 15; d >= 0; d--, z[k] >>= 4)
            x->rid[16 * k + d] = hex[z[k] & 15];
    x->rid[32] = 0;
    x->rid_len = 32;
}

void conn_respond(struct worker *w, struct conn *c, int status, const char *extra_headers,
                  const char *body, size_t body_len)
{
    struct exchange *x = c->x;
    if (!x->resphead) x->resphead = worker_buf_get(w, BUF_BIG);
    if (!x->resphead) {
        conn_close(w, c, "out of buffers");
        return;
    }
    /* A request whose body we did not read cannot be followed by another. */
    if ((x->req.flags & H1_HEAD_DONE) && !(x->req.flags & H1_MSG_DONE)) c->close_after = true;
    if (!(x->req.flags & H1_HEAD_DONE) || !x->client_keepalive) c->close_after = true;
    char extra[4096];
    extra[0] = 0;
    size_t n = 0;
    /* An HTTP/1.0 client keeps the connection only when told so. */
    if (!c->close_after && x->req.minor == 0)
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, "Connection: keep-alive\r\n");
    if (extra_headers) n += (size_t)snprintf(extra + n, sizeof(extra) - n, "%s", extra_headers);
    const struct conf_route *r = x->route;
    for (unsigned i = 0; r && i < r->nresponse_headers && n < sizeof(extra); i++)
        if (!r->response_headers[i].remove)
            n += (size_t)snprintf(extra + n, sizeof(extra) - n, "%s: %s\r\n",
                                  r->response_headers[i].name, r->response_headers[i].value);
    if (n >= sizeof(extra)) n = 0, extra[0] = 0;
    size_t len = respond_build(w, x->resphead, status, x->rid, x->rid_len, c->close_after, extra,
                               body, body_len, x->head_request);
    if (!len) {
        log_error("response %d does not fit a %u-byte buffer (return body too long?)", status,
                  x->resphead->cap);
        conn_close(w, c, "response too large");
        return;
    }
    x->status = (uint16_t)status;
    x->resp_bytes = body_len;
    out_reset(&x->cl_out);
    out_add(&x->cl_out, x->resphead->data, len);
    conn_set_state(c, CONN_RESPOND);
    timer_arm(&w->timers, &c->timer, w->now + c->wl->listener->send_timeout);
}

static void conn_error(struct worker *w, struct conn *c, int status, const char *why)
{
    struct exchange *x = c->x;
    if (!x->rid_len) request_id(w, x);
    log_info("%d for client request: %s", status, why);
    char body[160];
    int n = snprintf(body, sizeof(body), "%d %s\nrequest id: %.*s\n", status,
                     respond_reason(status), (int)x->rid_len, x->rid);
    c->close_after = c->close_after || status == 400 || status == 408 || status == 413 ||
                     status == 414 || status == 431 || status == 501 || status == 505;
    conn_respond(w, c, status, NULL, body, (size_t)n);
}

void conn_exchange_done(struct worker *w, struct conn *c, bool keepalive)
{
    struct exchange *x = c->x;
    access_log_exchange(w, x);
    c->nrequests++;
    w->requests++;
    /* Draining: a response that promised keep-alive (its head went out
     * before the drain) keeps its promise; conn_drain's grace follows. */
    if (!keepalive || c->close_after) {
        /* The client asked to close and we read all it sent: nothing can
         * turn into an RST, so skip the lingering close's extra round. */
        bool drained =
            (x->req.flags & H1_MSG_DONE) && (!c->in || c->in->lo == c->in->hi) && !c->can_read;
        if (!x->client_keepalive && drained)
            conn_close(w, c, "closed after response");
        else
            conn_linger(w, c);
        return;
    }
    conn_release_request(w, c);
    struct buf *in = c->in;
    if (in && in->lo < in->hi) {
        /* Pipelined bytes: move them to the front so the next head has room. */
        memmove(in->data, in->data + in->lo, in->hi - in->lo);
        in->hi -= in->lo;
        in->lo = 0;
        conn_set_state(c, CONN_HEAD);
        c->had_bytes = true;
        timer_arm(&w->timers, &c->timer, w->now + c->wl->listener->header_timeout);
        if (w->draining) conn_drain(w, c);
        return;
    }
    conn_idle(w, c);
    if (w->draining) conn_drain(w, c);
}

/* Host of the request: the authority of an absolute-form target, else the
 * Host header (exactly one for HTTP/1.1). Port stripped; validated. */
static int request_host(struct exchange *x, struct slice *host, struct slice *path)
{
    const struct http1_msg *m = &x->req;
    const char *t = m->base + m->target;
    size_t tn = m->target_len;
    struct slice hdr = {"", 0};
    int hosts = 0;
    for (uint16_t i = 0; (m->kinds & HK_BIT(HK_HOST)) && i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        if (h->kind == HK_HOST) {
            hosts++;
            hdr = str_trim(m->base + h->value, h->value_len);
        }
    }
    if (hosts > 1 || (hosts == 0 && m->minor >= 1)) return -1;
    *path = (struct slice){t, tn};
    if (tn >= 7 && (str_ieqn(t, 7, "http://", 7) || (tn >= 8 && str_ieqn(t, 8, "https://", 8)))) {
        size_t s = t[4] == ':' ? 7 : 8;
        size_t e = s;
        while (e < tn && t[e] != '/' && t[e] != '?')
            e++;
        hdr = (struct slice){t + s, e - s};
        *path = (struct slice){t + e, tn - e};
    } else if (!(tn >= 1 && t[0] == '/') && !(tn == 1 && t[0] == '*')) {
        return -1;
    }
    /* reg-name or IP literal, optional port; no userinfo, no spaces. */
    size_t n = hdr.n;
    for (size_t i = 0; i < n; i++) {
        char ch = hdr.p[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == ':' || ch == '[' ||
                  ch == ']' || ch == '_';
        if (!ok) return -1;
    }
    size_t hn = n;
    if (n && hdr.p[0] == '[') {
        const char *rb = memchr(hdr.p, ']', n);
        if (!rb) return -1;
        hn = (size_t)(rb - hdr.p) + 1;
    } else {
        const char *colon = memchr(hdr.p, ':', n);
        if (colon) hn = (size_t)(colon - hdr.p);
    }
    while (hn && hdr.p[hn - 1] == '.')
        hn--;
    *host = (struct slice){hdr.p, hn};
    return 0;
}

static bool path_has_dot_segment(const char *p, size_t n)
{
    for (size_t i = 0; i < n && p[i] != '?'; i++) {
        if (p[i] != '/' || i + 1 >= n || p[i + 1] != '.') continue;
        size_t j = i + 2;
        if (j < n && p[j] == '.') j++;
        if (j >= n || p[j] == '/' || p[j] == '?') return true;
    }
    return false;
}

static void keep_for_log(struct exchange *x, struct slice host)
{
    const struct http1_msg *m = &x->req;
    x->log_req_len = (uint16_t)snprintf(x->log_req, sizeof(x->log_req), "%.*s %.*s HTTP/%d.%d",
                                        (int)m->method_len, m->base + m->method, (int)m->target_len,
                                        m->base + m->target, m->major, m->minor);
    if (x->log_req_len >= sizeof(x->log_req)) x->log_req_len = sizeof(x->log_req) - 1;
    struct slice ref = {"", 0}, ua = {"", 0};
    for (uint16_t i = 0; i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        if (h->kind == HK_REFERER)
            ref = (struct slice){m->base + h->value, h->value_len};
        else if (h->kind == HK_USER_AGENT)
            ua = (struct slice){m->base + h->value, h->value_len};
    }
    int n = snprintf(x->log_meta, sizeof(x->log_meta), "%.*s%c%.*s%c%.*s", (int)host.n, host.p, 0,
                     (int)ref.n, ref.p, 0, (int)ua.n, ua.p);
    x->log_meta_len = (uint16_t)(n < (int)sizeof(x->log_meta) ? n : (int)sizeof(x->log_meta) - 1);
}

static void expand_redirect(struct worker *w, struct conn *c, const struct conf_route *r,
                            struct slice host)
{
    struct exchange *x = c->x;
    char url[2048];
    size_t o = 0;
    const char *s = r->redirect_url;
    while (*s && o < sizeof(url) - 1) {
        struct slice v = {NULL, 0};
        if (strncmp(s, "$host", 5) == 0) {
            v = host;
            s += 5;
        } else if (strncmp(s, "$request_uri", 12) == 0) {
            v = (struct slice){x->req.base + x->req.target, x->req.target_len};
            s += 12;
        } else if (strncmp(s, "$scheme", 7) == 0) {
            v = c->tls ? (struct slice){"https", 5} : (struct slice){"http", 4};
            s += 7;
        } else {
            url[o++] = *s++;
            continue;
        }
        size_t k = v.n < sizeof(url) - 1 - o ? v.n : sizeof(url) - 1 - o;
        memcpy(url + o, v.p, k);
        o += k;
    }
    url[o] = 0;
    char hdr[2100];
    snprintf(hdr, sizeof(hdr), "Location: %s\r\n", url);
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", (int)r->redirect_code,
                     respond_reason((int)r->redirect_code));
    conn_respond(w, c, (int)r->redirect_code, hdr, body, (size_t)n);
}

/* redirect_to_https: 308 to the same host and target over https. */
static void redirect_https(struct worker *w, struct conn *c, struct slice host, struct slice path)
{
    unsigned port = c->wl->listener->redirect_to_https;
    char hdr[2300];
    char portstr[8] = "";
    if (port != 443) snprintf(portstr, sizeof(portstr), ":%u", port);
    if (path.n == 1 && path.p[0] == '*') path = (struct slice){"/", 1};
    if (path.n == 0) path = (struct slice){"/", 1};
    int n = snprintf(hdr, sizeof(hdr), "Location: https://%.*s%s%.*s\r\n", (int)host.n, host.p,
                     portstr, (int)path.n, path.p);
    if (n < 0 || (size_t)n >= sizeof(hdr))
        return conn_error(w, c, 414, "target too long to redirect");
    static const char body[] = "308 Permanent Redirect\n";
    conn_respond(w, c, 308, hdr, body, sizeof(body) - 1);
}

static void dispatch(struct worker *w, struct conn *c)
{
    struct exchange *x = c->x;
    struct http1_msg *m = &x->req;
    const struct conf_listener *l = c->wl->listener;
    request_id(w, x);
    x->start_ms = x->start_ms ? x->start_ms : w->now;
    x->head_request = m->method_len == 4 && memcmp(m->base + m->method, "HEAD", 4) == 0;
    x->client_keepalive = true;
    if (m->minor == 0) {
        /* HTTP/1.0: keep-alive only when asked for; llhttp already knows. */
        x->client_keepalive = false;
        for (uint16_t i = 0; (m->kinds & HK_BIT(HK_CONNECTION)) && i < m->nheaders; i++) {
            const struct http1_header *h = &m->headers[i];
            if (h->kind == HK_CONNECTION &&
                str_list_has(m->base + h->value, h->value_len, "keep-alive"))
                x->client_keepalive = true;
        }
    } else {
        for (uint16_t i = 0; (m->kinds & HK_BIT(HK_CONNECTION)) && i < m->nheaders; i++) {
            const struct http1_header *h = &m->headers[i];
            if (h->kind == HK_CONNECTION && str_list_has(m->base + h->value, h->value_len, "close"))
                x->client_keepalive = false;
        }
    }
    if (c->nrequests + 1 >= l->max_requests) c->close_after = true;

    struct slice host = {"", 0}, path = {"", 0};
    int hr = request_host(x, &host, &path);
    if (w->cfg->access_log) keep_for_log(x, host); /* only what a log line needs */
    /* RFC 9112 3: single spaces between the parts; llhttp tolerates more. */
    if (m->target != m->method + m->method_len + 1 ||
        memcmp(m->base + m->target + m->target_len, " HTTP/", 6) != 0)
        return conn_error(w, c, 400, "malformed request line");
    /* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. */
    if (m->minor == 0 && (m->flags & H1_CHUNKED))
        return conn_error(w, c, 400, "Transfer-Encoding in an HTTP/1.0 request");
    /* A fragment is not part of a request-target; routing must not see one. */
    if (memchr(m->base + m->target, '#', m->target_len))
        return conn_error(w, c, 400, "fragment in the request target");
    if (hr == -1) return conn_error(w, c, 400, "bad Host or request target");
    if (path_has_dot_segment(path.p, path.n)) return conn_error(w, c, 400, "dot segment in path");
    if (l->redirect_to_https) {
        if (!host.n) return conn_error(w, c, 400, "no Host to redirect to");
        return redirect_https(w, c, host, path);
    }
    /* The asterisk-form is for OPTIONS alone (RFC 9112 3.2.4) and asks
     * about the server as a whole, not a resource behind a route: portico
     * is that server and answers it, as the no-op RFC 9110 9.3.7 makes of it. */
    if (path.n == 1 && path.p[0] == '*') {
        if (m->method_len != 7 || memcmp(m->base + m->method, "OPTIONS", 7) != 0)
            return conn_error(w, c, 400, "asterisk-form target with a method other than OPTIONS");
        return conn_respond(w, c, 200, NULL, "", 0);
    }
    const char *q = memchr(path.p, '?', path.n);
    size_t plen = q ? (size_t)(q - path.p) : path.n;
    if (plen == 0) plen = 0; /* absolute-form without path: route as "/" */
    const struct conf_route *r =
        route_match(w->cfg, l->index, host.p, host.n, plen ? path.p : "/", plen ? plen : 1);
    if (!r) return conn_error(w, c, 404, "no route");
    x->route = r;
    /* Size first, as nginx does: a too-large body is refused whatever the method. */
    int64_t limit = r->max_body_size >= 0 ? r->max_body_size : l->max_body_size;
    if ((m->flags & H1_HAS_LENGTH) && m->content_length > (uint64_t)limit)
        return conn_error(w, c, 413, "body larger than max_body_size");
    m->body_limit = limit;
    if (m->body_seen > (uint64_t)limit)
        return conn_error(w, c, 413, "body larger than max_body_size");
    if (!route_method_allowed(r, m->base + m->method, m->method_len)) {
        char hdr[600];
        snprintf(hdr, sizeof(hdr), "Allow: %s\r\n", r->allow);
        char body[160];
        int n = snprintf(body, sizeof(body), "405 Method Not Allowed\nrequest id: %.*s\n",
                         (int)x->rid_len, x->rid);
        return conn_respond(w, c, 405, hdr, body, (size_t)n);
    }

    switch (r->action) {
    case ACTION_RETURN:
        return conn_respond(w, c, (int)r->return_code, NULL, r->return_body ? r->return_body : "",
                            r->return_body ? strlen(r->return_body) : 0);
    case ACTION_REDIRECT:
        return expand_redirect(w, c, r, host);
    case ACTION_UPSTREAM:
        conn_set_state(c, CONN_PROXY);
        timer_cancel(&w->timers, &c->timer);
        return proxy_start(w, x);
    default:
        return conn_error(w, c, 500, "route without action");
    }
}

/* Parse what is buffered; on a complete head, dispatch. Returns true when
 * the state changed (the caller runs the machine again). */
static bool head_parse(struct worker *w, struct conn *c)
{
    struct buf *in = c->in;
    struct exchange *x = c->x;
    /* The head starts at offset 0; llhttp never sees more than the limit, so
     * a head that does not end within max_header_size is refused however it
     * arrives. */
    uint32_t limit = (uint32_t)c->wl->listener->max_header_size;
    uint32_t to = in->hi < limit ? in->hi : limit;
    if (in->lo < to) {
        uint32_t stop;
        enum http1_result r = http1_execute(&x->req, in->data, in->lo, to, &stop);
        if (r == HTTP1_ERROR) {
            conn_error(w, c, x->req.error,
                       x->req.error_reason ? x->req.error_reason : "bad request");
            return true;
        }
        in->lo = r == HTTP1_DONE ? stop : to;
        if (x->req.flags & H1_HEAD_DONE) {
            dispatch(w, c);
            return true;
        }
    }
    if (to < limit && in->hi < in->cap) return false;
    if (to < limit && in->cap < w->buf_size[BUF_BIG]) {
        /* Most heads fit a small buffer; this one needs the big kind. */
        if (worker_buf_grow(w, &c->in) < 0) {
            conn_close(w, c, "out of buffers");
            return true;
        }
        return false;
    }
    {
        conn_error(w, c, (x->req.flags & H1_URL_DONE) ? 431 : 414, "request head too large");
        return true;
    }
    return false;
}

static bool head_start(struct worker *w, struct conn *c)
{
    if (!c->in && !(c->in = worker_buf_get(w, BUF_SMALL))) {
        conn_close(w, c, "out of buffers");
        return false;
    }
    if (!c->x) {
        c->x = worker_exchange_get(w);
        if (!c->x) {
            conn_close(w, c, "out of memory");
            return false;
        }
        c->x->c = c;
        c->x->start_ms = 0;
    }
    return true;
}

/* Returns true when the state changed. */
static bool head_read(struct worker *w, struct conn *c)
{
    if (c->state == CONN_IDLE && !c->can_read) return false;
    if (!head_start(w, c)) return true;
    if (c->state == CONN_HEAD && head_parse(w, c)) return true;
    while (c->can_read && c->state != CONN_CLOSED) {
        struct buf *in = c->in;
        size_t room = in->cap - in->hi;
        ssize_t n = conn_read(c, in->data + in->hi, room);
        if (n > 0) {
            if (c->state == CONN_IDLE) {
                conn_set_state(c, CONN_HEAD);
                timer_arm(&w->timers, &c->timer, w->now + c->wl->listener->header_timeout);
            }
            if (!c->x->start_ms) c->x->start_ms = w->now;
            c->had_bytes = true;
            in->hi += (uint32_t)n;
            if (head_parse(w, c)) return true;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            c->can_read = false;
            break;
        }
        conn_close(w, c, n == 0 ? "client closed" : "read error");
        return true;
    }
    if (c->state == CONN_IDLE) conn_free_buffers(w, c); /* idle holds no buffers */
    return false;
}

static bool respond_write(struct worker *w, struct conn *c)
{
    struct exchange *x = c->x;
    enum io_result r = conn_write(w, c, &x->cl_out);
    if (r == IO_AGAIN) {
        timer_arm(&w->timers, &c->timer, w->now + c->wl->listener->send_timeout);
        return false;
    }
    if (r == IO_ERROR) {
        conn_close(w, c, "write error");
        return true;
    }
    conn_exchange_done(w, c, !c->close_after);
    return true;
}

/* Returns true when the handshake ended (the state changed). */
static bool handshake_step(struct worker *w, struct conn *c)
{
    if (!c->can_read && !c->can_write) return false;
    /* Over the turn's budget: wait for the next turn, behind the
     * handshakes already waiting (posted connections run first). */
    if (w->hs_spent >= HANDSHAKE_BUDGET_NS && conn_post(w, c)) return false;
    int64_t t0 = clock_ns();
    int r = tls_handshake(w, c);
    w->hs_spent += clock_ns() - t0;
    if (r == 0) return false;
    if (r < 0) {
        conn_close(w, c, "TLS handshake failed");
        return true;
    }
    log_debug("TLS handshake done fd=%d %s", c->fd, tls_conn_version(c));
    conn_set_state(c, CONN_IDLE);
    /* The first request gets its own header_timeout after the handshake's. */
    timer_arm(&w->timers, &c->timer, w->now + c->wl->listener->header_timeout);
    if (w->draining) conn_drain(w, c);
    return true;
}

static void conn_run(struct worker *w, struct conn *c)
{
    for (int guard = 0; guard < 1024; guard++) {
        bool again = false;
        switch ((enum conn_state)c->state) {
        case CONN_IDLE:
        case CONN_HEAD:
            again = head_read(w, c);
            break;
        case CONN_RESPOND:
            again = respond_write(w, c);
            break;
        case CONN_PROXY:
            proxy_progress(w, c->x);
            again = c->state != CONN_PROXY;
            break;
        case CONN_LINGER:
            linger_read(w, c);
            break;
        case CONN_HANDSHAKE:
            again = handshake_step(w, c);
            break;
        case CONN_CLOSED:
            break;
        }
        if (!again) return;
    }
}

void conn_event(struct worker *w, struct conn *c, uint32_t events)
{
    if (c->state == CONN_CLOSED) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->can_read = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->rdhup = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c->can_write = true;
    if (c->tls && (events & EPOLLOUT)) tls_writable(c);
    /* HUP/ERR (not a half-close): the client can no longer receive an answer,
     * so a request still waiting on its upstream is abandoned at once instead
     * of holding the upstream connection until read_timeout. */
    if ((events & EPOLLERR) ||
        ((events & EPOLLHUP) && c->state == CONN_PROXY && c->x && !out_pending(&c->x->cl_out))) {
        conn_close(w, c, (events & EPOLLERR) ? "socket error" : "client gone");
        return;
    }
    conn_run(w, c);
}

void conn_timeout(struct worker *w, struct conn *c)
{
    switch ((enum conn_state)c->state) {
    case CONN_HEAD:
        if (c->had_bytes && c->x) {
            conn_error(w, c, 408, "header_timeout");
            conn_run(w, c);
        } else {
            conn_close(w, c, "header_timeout before any byte");
        }
        return;
    case CONN_IDLE:
        conn_close(w, c, c->nrequests ? "idle_timeout" : "header_timeout before any byte");
        return;
    case CONN_PROXY:
        proxy_abort(w, c->x, "client timeout");
        conn_close(w, c, "client body timeout, body below body_min_rate, or send timeout");
        return;
    case CONN_RESPOND:
        conn_close(w, c, "send_timeout");
        return;
    case CONN_LINGER:
        conn_close(w, c, "linger timeout");
        return;
    case CONN_HANDSHAKE:
        conn_close(w, c, "TLS handshake timeout (header_timeout)");
        return;
    case CONN_CLOSED:
        break;
    }
}

void conn_kick(struct worker *w, struct conn *c)
{
    if (c->state != CONN_CLOSED) conn_run(w, c);
}

void conn_run_posted(struct worker *w)
{
    if (!w->nposted) return;
    unsigned n = w->nposted;
    for (unsigned i = 0; i < n; i++) {
        struct conn *c = w->posted[i];
        if (!c) continue; /* closed since it was posted */
        c->posted = false;
        w->posted[i] = NULL;
        conn_run(w, c);
    }
    /* What the runs posted waits for the next turn. */
    memmove(w->posted, w->posted + n, (w->nposted - n) * sizeof(*w->posted));
    w->nposted -= n;
}

#define DRAIN_GRACE_MS 1000

/* An idle keep-alive connection may already carry the client's next
 * request on the wire: closing it now would lose that request. It gets a
 * short grace instead; a request arriving within it is answered with
 * Connection: close (close_after), then the close lingers. */
void conn_drain(struct worker *w, struct conn *c)
{
    /* A response under way (proxy, respond) may have promised keep-alive;
     * proxy.c answers heads made from now on with close (w->draining). */
    if (c->state != CONN_IDLE && c->state != CONN_HEAD) return;
    c->close_after = true;
    if (c->state != CONN_IDLE) return;
    int64_t at = w->now + DRAIN_GRACE_MS;
    if (!timer_armed(&c->timer) || c->timer.when > at) timer_arm(&w->timers, &c->timer, at);
}

#define PERIP_LOG_MS 10000

void conn_perip_log(struct worker *w)
{
    if (!w->perip_refused && !w->perip_uncounted) return;
    if (w->perip_logged && w->now - w->perip_logged < PERIP_LOG_MS) return;
    if (w->perip_refused)
        log_warn("max_connections_per_ip: %llu connection(s) refused since the last report "
                 "(latest: %s)",
                 (unsigned long long)w->perip_refused, w->perip_last);
    if (w->perip_uncounted)
        log_warn("max_connections_per_ip: the shared address table is full (%u addresses): "
                 "%llu connection(s) admitted uncounted",
                 IPCOUNT_SLOTS, (unsigned long long)w->perip_uncounted);
    w->perip_refused = w->perip_uncounted = 0;
    w->perip_logged = w->now;
}

/* max_connections_per_ip, counted over every worker in shared memory.
 * Over the limit the connection is reset at once: no response (nothing to
 * parse or write), and the RST leaves no TIME_WAIT here. A full address
 * table admits uncounted: the limit must never refuse a client it cannot
 * count. Returns the slot, -1 when uncounted, -2 when refused (FD closed). */
static int conn_admit(struct worker *w, int fd, const struct conf_listener *l,
                      const struct sockaddr *sa)
{
    struct ipcount_key k;
    if (!l->max_connections_per_ip || !w->shm || ipcount_key(&k, sa, ipcount_scope(l->name)) < 0)
        return -1;
    int r = ipcount_acquire(w->shm, w->row, &k, l->max_connections_per_ip);
    if (r >= 0) return r;
    if (r == IPCOUNT_FULL) {
        w->perip_uncounted++;
        conn_perip_log(w);
        return -1;
    }
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    w->perip_refused++;
    if (!w->perip_logged || w->now - w->perip_logged >= PERIP_LOG_MS) {
        char a[INET6_ADDRSTRLEN] = "?";
        const void *p = sa->sa_family == AF_INET
                            ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                            : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        inet_ntop(sa->sa_family, p, a, sizeof a);
        snprintf(w->perip_last, sizeof w->perip_last, "%s on %s", a, l->name);
        conn_perip_log(w);
    }
    return -2;
}

int64_t conn_body_deadline(struct worker *w, struct exchange *x)
{
    const struct conf_listener *l = x->c->wl->listener;
    int64_t gap = w->now + l->body_timeout;
    if (!l->body_min_rate) return gap;
    if (!x->rate_start) {
        x->rate_start = w->now;
        x->rate_base = x->req.body_seen;
    }
    /* Averaged since the body began (or since the upstream last held us
     * back), with body_timeout as the grace: like Apache's MinRate, a
     * trickle of a byte per gap cannot hold the connection for hours. */
    uint64_t got = x->req.body_seen - x->rate_base;
    int64_t allowed = x->rate_start + l->body_timeout + (int64_t)(got * 1000 / l->body_min_rate);
    return allowed < gap ? allowed : gap;
}

void conn_accept(struct worker *w, int fd, const struct worker_listen *wl,
                 const struct sockaddr *sa, socklen_t len)
{
    int slot = conn_admit(w, fd, wl->listener, sa);
    if (slot == -2) return;
    struct conn *c = pool_get(&w->conns);
    if (!c) {
        if (slot >= 0) ipcount_release(w->shm, w->row, slot);
        close(fd);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->ev.kind = EV_CLIENT;
    c->fd = fd;
    c->ip_slot = slot;
    c->wl = wl;
    if (len > sizeof(c->peer)) len = sizeof(c->peer);
    memcpy(&c->peer, sa, len);
    w->nconns++;
    w->accepted++;
    if (worker_epoll_add(w, fd, &c->ev) < 0) {
        close(fd);
        c->fd = -1;
        if (slot >= 0) ipcount_release(w->shm, w->row, slot);
        conn_set_state(c, CONN_CLOSED);
        c->next = w->dead_conns;
        w->dead_conns = c;
        w->nconns--;
        return;
    }
    c->live_next = w->live;
    if (w->live) w->live->live_prev = c;
    w->live = c;
    conn_set_state(c, CONN_IDLE);
    if (wl->listener->tls) {
        if (tls_conn_new(w, c) < 0) {
            conn_close(w, c, "out of memory for TLS");
            return;
        }
        conn_set_state(c, CONN_HANDSHAKE);
    }
    /* The first request gets header_timeout, not idle_timeout. */
    timer_arm(&w->timers, &c->timer, w->now + wl->listener->header_timeout);
    c->can_read = true; /* the request often arrives with the handshake's last ACK */
    c->can_write = true;
    conn_run(w, c);
}
