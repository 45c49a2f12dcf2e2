/* Forwarding one request: pick a server, rewrite the head, stream the body
 * up and the response back, each direction through one bounded buffer
 * (backpressure: a side is not read while its output is pending). Framing
 * is always rebuilt; hop-by-hop headers never cross. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/net.h"
#include "common/str.h"
#include "worker/core.h"
#include "worker/tls_upstream.h"

enum pump { STALL, PROGRESS, ENDED };

/* Drop parsed bytes once nothing refers to them any more. */
static void buf_compact(struct buf *b)
{
    if (b->lo == b->hi) {
        b->lo = b->hi = 0;
    } else if (b->lo) {
        memmove(b->data, b->data + b->lo, b->hi - b->lo);
        b->hi -= b->lo;
        b->lo = 0;
    }
}

/* ---- head writer ---- */

struct wr {
    char *p;
    size_t n, cap;
    bool overflow;
};

static void wr_put(struct wr *o, const char *s, size_t n)
{
    if (o->n + n > o->cap) {
        o->overflow = true;
        return;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void wr_str(struct wr *o, const char *s)
{
    wr_put(o, s, strlen(s));
}

/* Decimal without printf: a head is built per request, and vsnprintf
 * alone cost a fifth of a proxied request's user-space instructions. */
static void wr_uint(struct wr *o, uint64_t v)
{
    char d[20];
    size_t i = sizeof(d);
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    wr_put(o, d + i, sizeof(d) - i);
}

static void wr_content_length(struct wr *o, uint64_t n)
{
    wr_put(o, "Content-Length: ", 16);
    wr_uint(o, n);
    wr_put(o, "\r\n", 2);
}

static void wr_header(struct wr *o, const char *name, size_t nn, const char *val, size_t vn)
{
    wr_put(o, name, nn);
    wr_put(o, ": ", 2);
    wr_put(o, val, vn);
    wr_put(o, "\r\n", 2);
}

/* ---- header classification ---- */

#define MAX_TOKENS 16
struct tokens {
    struct slice t[MAX_TOKENS];
    unsigned n;
};

/* Tokens named by the Connection headers: those headers are hop-by-hop too. */
static void connection_tokens(const struct http1_msg *m, struct tokens *tk)
{
    tk->n = 0;
    if (!(m->kinds & HK_BIT(HK_CONNECTION))) return;
    for (uint16_t i = 0; i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        if (h->kind != HK_CONNECTION) continue;
        const char *p = m->base + h->value, *e = p + h->value_len;
        while (p < e && tk->n < MAX_TOKENS) {
            const char *c = memchr(p, ',', (size_t)(e - p));
            const char *end = c ? c : e;
            struct slice s = str_trim(p, (size_t)(end - p));
            if (s.n) tk->t[tk->n++] = s;
            p = end + 1;
        }
    }
}

static bool in_tokens(const struct tokens *tk, const char *name, size_t n)
{
    for (unsigned i = 0; i < tk->n; i++)
        if (str_ieqn(tk->t[i].p, tk->t[i].n, name, n)) return true;
    return false;
}

static bool in_ops(const struct conf_header_op *ops, unsigned nops, const char *n, size_t len)
{
    for (unsigned i = 0; i < nops; i++)
        if (str_ieqn(ops[i].name, ops[i].name_len, n, len)) return true;
    return false;
}

static void wr_op_sets(struct wr *o, const struct conf_header_op *ops, unsigned nops)
{
    for (unsigned i = 0; i < nops; i++)
        if (!ops[i].remove)
            wr_header(o, ops[i].name, ops[i].name_len, ops[i].value, ops[i].value_len);
}

/* ---- request head ---- */

static void wr_target(struct wr *o, const struct exchange *x)
{
    const struct http1_msg *m = &x->req;
    const char *t = m->base + m->target;
    size_t n = m->target_len;
    if (n >= 7 && t[0] != '/' && t[0] != '*') { /* absolute-form: keep path and query */
        const char *s = memchr(t, ':', n);
        size_t k = s ? (size_t)(s - t) + 3 : n;
        while (k < n && t[k] != '/' && t[k] != '?')
            k++;
        t += k;
        n -= k;
    }
    const struct conf_route *r = x->route;
    if (r->strip_prefix) {
        size_t sl = strlen(r->strip_prefix);
        if (sl > 1 && r->strip_prefix[sl - 1] == '/') sl--; /* keep the slash that follows */
        if (n >= sl && memcmp(t, r->strip_prefix, sl) == 0 &&
            (n == sl || t[sl] == '/' || t[sl] == '?')) {
            t += sl;
            n -= sl;
        }
    }
    if (r->add_prefix) {
        size_t al = strlen(r->add_prefix);
        if (al && r->add_prefix[al - 1] == '/' && n && t[0] == '/') al--;
        wr_put(o, r->add_prefix, al);
    }
    if (n == 0 || t[0] == '?') wr_put(o, "/", 1);
    wr_put(o, t, n);
}

static struct slice client_host(const struct exchange *x)
{
    const struct http1_msg *m = &x->req;
    const char *t = m->base + m->target;
    if (m->target_len >= 7 && t[0] != '/' && t[0] != '*') {
        const char *s = memchr(t, ':', m->target_len);
        size_t k = s ? (size_t)(s - t) + 3 : m->target_len, e = k;
        while (e < m->target_len && t[e] != '/' && t[e] != '?')
            e++;
        return (struct slice){t + k, e - k};
    }
    const struct http1_header *h = http1_find(m, HK_HOST);
    return h ? str_trim(m->base + h->value, h->value_len) : (struct slice){"", 0};
}

/* Append every value of the headers of KIND, comma-joined under NAME, then ADD. */
static void wr_joined(struct wr *o, const struct http1_msg *m, enum http1_hkind kind,
                      const char *name, size_t nn, const char *add, size_t addn)
{
    wr_put(o, name, nn);
    wr_put(o, ": ", 2);
    for (uint16_t i = 0; (m->kinds & HK_BIT(kind)) && i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        if (h->kind != kind || !h->value_len) continue;
        wr_put(o, m->base + h->value, h->value_len);
        wr_put(o, ", ", 2);
    }
    wr_put(o, add, addn);
    wr_put(o, "\r\n", 2);
}

/* Request headers portico writes itself (or drops: Expect is answered here). */
#define HK_REQ_OWN                                                                                 \
    (HK_BIT(HK_HOST) | HK_BIT(HK_CONTENT_LENGTH) | HK_BIT(HK_X_FORWARDED_FOR) |                    \
     HK_BIT(HK_X_FORWARDED_PROTO) | HK_BIT(HK_X_FORWARDED_HOST) | HK_BIT(HK_VIA) |                 \
     HK_BIT(HK_X_REQUEST_ID) | HK_BIT(HK_EXPECT))

static bool skip_request_header(const struct exchange *x, const struct tokens *tk,
                                bool *te_trailers, const struct http1_header *h)
{
    const char *n = x->req.base + h->name;
    if (h->kind == HK_TE) {
        *te_trailers = str_list_has(x->req.base + h->value, h->value_len, "trailers");
        return true;
    }
    if (HK_BIT(h->kind) & (HK_HOP_BY_HOP | HK_REQ_OWN)) return true;
    if (tk->n && in_tokens(tk, n, h->name_len)) return true;
    return in_ops(x->route->request_headers, x->route->nrequest_headers, n, h->name_len);
}

static bool build_request_head(struct worker *w, struct exchange *x, const struct conf_server *s)
{
    const struct http1_msg *m = &x->req;
    const struct conf_upstream *up = s->upstream;
    struct wr o = {x->reqhead->data, 0, x->reqhead->cap, false};
    struct tokens tk;
    connection_tokens(m, &tk);

    wr_put(&o, m->base + m->method, m->method_len);
    wr_put(&o, " ", 1);
    wr_target(&o, x);
    wr_str(&o, " HTTP/1.1\r\nHost: ");
    struct slice ch = client_host(x);
    if (up->host_header == HOST_HEADER_SERVER)
        wr_str(&o, s->hostport);
    else if (up->host_header == HOST_HEADER_LITERAL)
        wr_str(&o, up->host_literal);
    else
        wr_put(&o, ch.p, ch.n);
    wr_put(&o, "\r\n", 2);

    bool te_trailers = false;
    for (uint16_t i = 0; i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        if (skip_request_header(x, &tk, &te_trailers, h)) continue;
        wr_header(&o, m->base + h->name, h->name_len, m->base + h->value, h->value_len);
    }
    char ip[64];
    size_t iplen = net_addr_ip(&x->c->peer.sa, ip, sizeof(ip));
    wr_joined(&o, m, HK_X_FORWARDED_FOR, "X-Forwarded-For", 15, ip, iplen);
    wr_str(&o, x->c->tls ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    if (ch.n) wr_header(&o, "X-Forwarded-Host", 16, ch.p, ch.n);
    wr_joined(&o, m, HK_VIA, "Via", 3, "1.1 portico", 11);
    wr_header(&o, "X-Request-ID", 12, x->rid, x->rid_len);
    if (te_trailers) wr_str(&o, "TE: trailers\r\n");
    wr_op_sets(&o, x->route->request_headers, x->route->nrequest_headers);

    x->req_chunked_out = false;
    if (m->flags & H1_CHUNKED) {
        if (m->flags & H1_MSG_DONE) /* the whole body is here: send its length */
            wr_content_length(&o, m->body_seen);
        else {
            wr_str(&o, "Transfer-Encoding: chunked\r\n");
            x->req_chunked_out = true;
        }
    } else if (m->flags & H1_HAS_LENGTH) {
        wr_content_length(&o, m->content_length);
    }
    wr_put(&o, "\r\n", 2);
    x->reqhead->hi = (uint32_t)o.n;
    return !o.overflow;
}

/* Queue body bytes BASE[lo, hi) on O, as a chunk (LINE holds its size line)
 * or raw; LAST ends a chunked body. Both directions frame the same way. */
static void queue_body(struct out *o, bool chunked, char *line, size_t line_cap, char *base,
                       uint32_t lo, uint32_t hi, bool last)
{
    if (!chunked) {
        out_add(o, base + lo, hi - lo);
    } else if (hi > lo) {
        int k = snprintf(line, line_cap, "%x\r\n", hi - lo);
        out_add(o, line, (size_t)k);
        out_add(o, base + lo, hi - lo);
        out_add(o, last ? "\r\n0\r\n\r\n" : "\r\n", last ? 7 : 2);
    } else if (last) {
        out_add(o, "0\r\n\r\n", 5);
    }
}

static void queue_req_body(struct exchange *x, char *base, uint32_t lo, uint32_t hi, bool last)
{
    queue_body(&x->up_out, x->req_chunked_out, x->req_chunk, sizeof(x->req_chunk), base, lo, hi,
               last);
}

/* ---- attempts ---- */

static bool idempotent(const struct exchange *x)
{
    const char *m = x->req.base + x->req.method;
    size_t n = x->req.method_len;
    return str_ieq(m, n, "GET") || str_ieq(m, n, "HEAD") || str_ieq(m, n, "PUT") ||
           str_ieq(m, n, "DELETE") || str_ieq(m, n, "OPTIONS") || str_ieq(m, n, "TRACE");
}

static bool has_body(const struct exchange *x)
{
    return (x->req.flags & H1_CHUNKED) || ((x->req.flags & H1_HAS_LENGTH) && x->req.content_length);
}

static void client_error(struct worker *w, struct exchange *x, int status, const char *why)
{
    struct conn *c = x->c;
    char body[160];
    int n = snprintf(body, sizeof(body), "%d %s\nrequest id: %.*s\n", status,
                     respond_reason(status), (int)x->rid_len, x->rid);
    log_warn("%d: %s, upstream=%s id=%.*s", status, why, x->route->upstream->name, (int)x->rid_len,
             x->rid);
    if (!x->req_body_done) c->close_after = true;
    out_reset(&x->up_out);
    conn_respond(w, c, status, NULL, body, (size_t)n);
}

static void drop_upstream(struct worker *w, struct exchange *x, const char *why)
{
    if (!x->u) return;
    if (x->upstream_start_ms) x->upstream_ms += w->now - x->upstream_start_ms;
    upstream_close(w, x->u, why);
    x->u = NULL;
}

static enum pump attempt(struct worker *w, struct exchange *x, bool fresh_same);

/* The attempt failed before any response reached the client. LEVEL: warn
 * for what the network does, error for what the operator must fix. */
static enum pump attempt_failed_at(struct worker *w, struct exchange *x, int status,
                                   const char *why, bool retryable, int level)
{
    const struct conf_server *s = x->server;
    log_msg(level, "upstream %s server %s: %s", s->upstream->name, s->name, why);
    balance_report(&w->bal, s, false, w->now);
    drop_upstream(w, x, why);
    x->fail_status = (uint16_t)status;
    bool can = retryable && x->attempts <= s->upstream->retries && !x->body_forwarded;
    if (can && attempt(w, x, false) != ENDED) return PROGRESS;
    if (x->c->state != CONN_PROXY) return ENDED; /* attempt() already answered */
    client_error(w, x, status, why);
    return ENDED;
}

static enum pump attempt_failed(struct worker *w, struct exchange *x, int status, const char *why,
                                bool retryable)
{
    return attempt_failed_at(w, x, status, why, retryable, LL_WARN);
}

static enum pump attempt(struct worker *w, struct exchange *x, bool fresh_same)
{
    const struct conf_upstream *up = x->route->upstream;
    const struct conf_server *s;
    if (fresh_same) {
        s = x->server;
    } else {
        int i = balance_pick(&w->bal, up, net_addr_hash(&x->c->peer.sa), x->tried, w->now);
        if (i < 0) {
            /* After a failed attempt, the client learns how the last one
             * failed (a 504 stays a 504), not that the retry found no server. */
            if (x->attempts)
                client_error(w, x, x->fail_status ? x->fail_status : 502,
                             "no other server to retry");
            else
                client_error(w, x, 503, "no server available");
            return ENDED;
        }
        s = &up->servers[i];
        x->tried |= (uint64_t)1 << (i % 64);
        x->attempts++;
    }
    x->server = s;
    if (!x->reqhead && !(x->reqhead = worker_buf_get(w, BUF_SMALL))) {
        client_error(w, x, 503, "out of buffers");
        return ENDED;
    }
    bool built = build_request_head(w, x, s);
    if (!built && x->reqhead->cap < w->buf_size[BUF_BIG]) {
        worker_buf_put(w, &x->reqhead);
        if (!(x->reqhead = worker_buf_get(w, BUF_BIG))) {
            client_error(w, x, 503, "out of buffers");
            return ENDED;
        }
        built = build_request_head(w, x, s);
    }
    if (!built) {
        x->c->close_after = true;
        client_error(w, x, 431, "request head too large after rewriting");
        return ENDED;
    }
    int err = 0;
    struct uconn *u = upstream_get(w, s, fresh_same, &err);
    if (!u) {
        char why[96];
        snprintf(why, sizeof(why), "connect failed: %s", strerror(err));
        return attempt_failed(w, x, 502, why, true);
    }
    u->x = x;
    x->u = u;
    x->upstream_start_ms = w->now;
    out_reset(&x->up_out);
    out_add(&x->up_out, x->reqhead->data, x->reqhead->hi);
    queue_req_body(x, x->c->in->data, x->body_lo, x->body_hi, x->req_body_done);
    x->resp.flags = 0;
    http1_init(&x->resp, false, x->req_headers + w->max_req_headers, w->max_resp_headers);
    if (x->head_request) http1_skip_body(&x->resp);
    x->resp_head_done = false;
    x->req_sent = false;
    /* connect_timeout covers the TCP connect and the TLS handshake. */
    if (u->state == UCONN_CONNECTING || u->state == UCONN_HANDSHAKE)
        timer_arm(&w->timers, &u->timer, w->now + up->connect_timeout);
    return PROGRESS;
}

/* A reused pooled connection failed before the server said anything: the
 * server closed it while we picked it. Retry on a fresh connection. */
static bool stale_retry(struct worker *w, struct exchange *x)
{
    struct uconn *u = x->u;
    if (!u->reused || x->resp_head_done || (u->in && u->in->hi > 0)) return false;
    if (!idempotent(x) || x->body_forwarded) return false;
    log_debug("pooled connection to %s was closed by the server; retrying fresh", u->server->name);
    drop_upstream(w, x, "stale pooled connection");
    x->body_forwarded = false;
    return attempt(w, x, true) != ENDED;
}

/* ---- response head ---- */

/* RFC 9112 4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ). Anything
 * else (or nothing) is replaced by the standard phrase, never copied. */
static bool reason_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) return false;
    }
    return n > 0;
}

static bool build_response_head(struct worker *w, struct exchange *x)
{
    const struct http1_msg *m = &x->resp;
    const struct conf_route *r = x->route;
    struct conn *c = x->c;
    /* The request head is no longer needed once it is sent: reuse its buffer. */
    if (!x->resphead && x->req_sent) x->resphead = x->reqhead;
    if (!x->resphead && !(x->resphead = worker_buf_get(w, BUF_SMALL))) return false;
    struct wr o = {x->resphead->data, 0, x->resphead->cap, false};
    struct tokens tk;
    connection_tokens(m, &tk);
    bool nobody = (m->flags & H1_SKIP_BODY) || m->status == 204 || m->status == 304;

    wr_put(&o, "HTTP/1.1 ", 9);
    wr_uint(&o, m->status);
    wr_put(&o, " ", 1);
    if (reason_ok(m->base + m->reason, m->reason_len))
        wr_put(&o, m->base + m->reason, m->reason_len);
    else
        wr_str(&o, respond_reason(m->status));
    wr_put(&o, "\r\n", 2);
    /* Kinds portico writes itself; Content-Length of a bodiless answer
     * describes the resource: pass it. */
    uint32_t own = HK_HOP_BY_HOP | HK_BIT(HK_VIA) | HK_BIT(HK_X_REQUEST_ID) |
                   (nobody ? 0 : HK_BIT(HK_CONTENT_LENGTH)) |
                   (r->expose_upstream ? HK_BIT(HK_X_UPSTREAM) : 0);
    bool has_date = false;
    for (uint16_t i = 0; i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        const char *n = m->base + h->name;
        size_t nl = h->name_len;
        if ((HK_BIT(h->kind) & own) || (tk.n && in_tokens(&tk, n, nl)) ||
            in_ops(r->response_headers, r->nresponse_headers, n, nl))
            continue;
        if (h->kind == HK_DATE) has_date = true;
        wr_header(&o, n, nl, m->base + h->value, h->value_len);
    }
    /* RFC 9110 6.6.1: a forwarded response without Date gets the time we got it. */
    if (!has_date) {
        wr_put(&o, "Date: ", 6);
        wr_str(&o, w->date);
        wr_put(&o, "\r\n", 2);
    }
    wr_joined(&o, m, HK_VIA, "Via", 3, "1.1 portico", 11);
    wr_header(&o, "X-Request-ID", 12, x->rid, x->rid_len);
    if (r->expose_upstream)
        wr_header(&o, "X-Upstream", 10, x->server->name, strlen(x->server->name));
    wr_op_sets(&o, r->response_headers, r->nresponse_headers);

    bool http10 = x->req.minor == 0;
    x->resp_chunked_out = false;
    x->resp_close_out = false;
    if (!nobody) {
        if ((m->flags & H1_HAS_LENGTH) && !(m->flags & H1_CHUNKED))
            wr_content_length(&o, m->content_length);
        else if (m->flags & H1_MSG_DONE)
            wr_content_length(&o, m->body_seen);
        else if (http10)
            x->resp_close_out = true; /* an HTTP/1.0 client reads to EOF */
        else {
            wr_str(&o, "Transfer-Encoding: chunked\r\n");
            x->resp_chunked_out = true;
        }
    }
    bool keep = x->client_keepalive && !x->resp_close_out && !c->close_after && !w->draining &&
                x->req_body_done;
    if (!keep) {
        c->close_after = true;
        wr_str(&o, "Connection: close\r\n");
    } else if (http10) {
        wr_str(&o, "Connection: keep-alive\r\n");
    }
    wr_put(&o, "\r\n", 2);
    x->resphead->hi = (uint32_t)o.n;
    x->status = m->status;
    return !o.overflow;
}

/* The rewritten head did not fit a small buffer: once more in a big one. */
static bool build_response_head_big(struct worker *w, struct exchange *x)
{
    if (x->resphead->cap >= w->buf_size[BUF_BIG]) return false;
    if (x->resphead == x->reqhead)
        x->resphead = NULL;
    else
        worker_buf_put(w, &x->resphead);
    if (!(x->resphead = worker_buf_get(w, BUF_BIG))) return false;
    return build_response_head(w, x);
}

static void queue_resp_body(struct exchange *x, char *base, uint32_t lo, uint32_t hi, bool last)
{
    x->resp_bytes += hi - lo;
    queue_body(&x->cl_out, x->resp_chunked_out, x->resp_chunk, sizeof(x->resp_chunk), base, lo, hi,
               last);
}

/* ---- finishing ---- */

static enum pump finish(struct worker *w, struct exchange *x)
{
    struct uconn *u = x->u;
    struct conn *c = x->c;
    if (u) {
        bool reusable = (x->resp.flags & H1_MSG_DONE) && (x->resp.flags & H1_KEEP_ALIVE) &&
                        !(x->resp.flags & H1_NEEDS_EOF) && x->req_sent && u->in &&
                        u->in->lo == u->in->hi;
        x->upstream_ms += w->now - x->upstream_start_ms;
        balance_report(&w->bal, u->server, true, w->now);
        upstream_release(w, u, reusable);
        x->u = NULL;
    }
    conn_exchange_done(w, c, !c->close_after);
    return ENDED;
}

void proxy_abort(struct worker *w, struct exchange *x, const char *reason)
{
    drop_upstream(w, x, reason);
}

static enum pump abort_client(struct worker *w, struct exchange *x, const char *why)
{
    log_warn("aborting response to the client: %s, upstream=%s id=%.*s", why,
             x->server ? x->server->name : "-", (int)x->rid_len, x->rid);
    if (x->server) balance_report(&w->bal, x->server, false, w->now);
    drop_upstream(w, x, why);
    conn_close(w, x->c, why);
    return ENDED;
}

/* ---- request direction ---- */

static enum pump pump_req(struct worker *w, struct exchange *x)
{
    struct uconn *u = x->u;
    struct conn *c = x->c;
    if (x->req_sent || !u || u->state != UCONN_ACTIVE) return STALL;
    if (out_pending(&x->up_out)) {
        if (!u->can_write) return STALL;
        enum io_result r = upstream_write(w, u, &x->up_out);
        if (r == IO_AGAIN) return STALL;
        if (r == IO_ERROR) {
            if (stale_retry(w, x)) return PROGRESS;
            return attempt_failed(w, x, 502, "write to upstream failed", idempotent(x));
        }
        if (x->body_hi > x->body_lo) x->body_forwarded = true;
        x->body_lo = x->body_hi = 0;
        if (x->req_body_done)
            x->req_sent = true;
        else
            buf_compact(c->in);
        return PROGRESS;
    }
    if (x->req_body_done) return STALL;
    struct buf *in = c->in;
    if (in->lo >= in->hi) { /* nothing left to parse: read */
        if (!c->can_read) return STALL;
        size_t room = in->cap - in->hi;
        ssize_t n = conn_read(c, in->data + in->hi, room);
        if (n < 0 && errno == EINTR) return PROGRESS;
        if (n < 0 && errno == EAGAIN) {
            c->can_read = false;
            return STALL;
        }
        if (n <= 0) return abort_client(w, x, "client closed during the request body");
        in->hi += (uint32_t)n;
    }
    uint32_t stop;
    enum http1_result r = http1_execute(&x->req, in->data, in->lo, in->hi, &stop);
    if (r == HTTP1_ERROR) {
        if (x->resp_head_done) return abort_client(w, x, "bad request body");
        drop_upstream(w, x, "bad request body");
        c->close_after = true;
        client_error(w, x, x->req.error, x->req.error_reason);
        return ENDED;
    }
    in->lo = r == HTTP1_DONE ? stop : in->hi;
    x->req_body_done = r == HTTP1_DONE;
    x->body_lo = (x->req.flags & H1_BODY_STARTED) ? x->req.dec_start : 0;
    x->body_hi = (x->req.flags & H1_BODY_STARTED) ? x->req.dec_end : 0;
    queue_req_body(x, in->data, x->body_lo, x->body_hi, x->req_body_done);
    if (!out_pending(&x->up_out)) {
        if (x->req_body_done)
            x->req_sent = true;
        else
            buf_compact(in);
    }
    return PROGRESS;
}

/* ---- response direction ---- */

static bool retry_on_status(struct worker *w, struct exchange *x)
{
    unsigned st = x->resp.status;
    if (st != 502 && st != 503 && st != 504) return false;
    if (!idempotent(x) || x->body_forwarded || has_body(x)) return false;
    if (x->attempts > x->route->upstream->retries) return false;
    /* With no other server to ask, the server's own answer (its body,
     * Retry-After) tells the client more than a generated one would. */
    if (!balance_any_left(&w->bal, x->route->upstream, x->tried, w->now)) return false;
    char why[48];
    snprintf(why, sizeof(why), "answered %u", st);
    return attempt_failed(w, x, (int)st, why, true) == PROGRESS;
}

static enum pump resp_parsed(struct worker *w, struct exchange *x, enum http1_result r,
                             uint32_t stop)
{
    struct buf *in = x->u->in;
    if (r == HTTP1_ERROR) {
        if (x->resp_head_done) return abort_client(w, x, "invalid response body from upstream");
        return attempt_failed(
            w, x, 502, x->resp.error_reason ? x->resp.error_reason : "invalid response", false);
    }
    in->lo = r == HTTP1_DONE ? stop : in->hi;
    if (!x->resp_head_done) {
        if (!(x->resp.flags & H1_HEAD_DONE)) {
            if (in->hi >= in->cap)
                return attempt_failed(w, x, 502, "response head too large", false);
            return PROGRESS;
        }
        /* Upgrade is never forwarded, so a 101 is a broken upstream. */
        if (x->resp.status == 101)
            return attempt_failed(w, x, 502, "unexpected 101 Switching Protocols", false);
        if (retry_on_status(w, x)) return PROGRESS;
        if (x->c->state != CONN_PROXY) return ENDED;
        x->resp_head_done = true;
        if (!build_response_head(w, x) && !build_response_head_big(w, x))
            return attempt_failed(w, x, 502, "response head too large", false);
        out_reset(&x->cl_out);
        out_add(&x->cl_out, x->resphead->data, x->resphead->hi);
    }
    bool done = r == HTTP1_DONE;
    if (done) x->resp.flags |= H1_MSG_DONE;
    uint32_t lo = (x->resp.flags & H1_BODY_STARTED) ? x->resp.dec_start : 0;
    uint32_t hi = (x->resp.flags & H1_BODY_STARTED) ? x->resp.dec_end : 0;
    if (!(x->resp.flags & H1_SKIP_BODY) && x->resp.status != 204 && x->resp.status != 304)
        queue_resp_body(x, in->data, lo, hi, done);
    return PROGRESS;
}

static enum pump resp_eof(struct worker *w, struct exchange *x, bool reset)
{
    struct uconn *u = x->u;
    bool nothing = !u->in || u->in->hi == 0;
    if (nothing && stale_retry(w, x)) return PROGRESS;
    if (!x->resp_head_done)
        return attempt_failed(w, x, 502,
                              reset ? "upstream reset the connection"
                                    : "upstream closed without a response",
                              nothing && idempotent(x));
    if (!reset && (x->resp.flags & H1_NEEDS_EOF) && http1_finish(&x->resp) == HTTP1_DONE) {
        queue_resp_body(x, u->in->data, 0, 0, true);
        x->resp.flags |= H1_MSG_DONE;
        return PROGRESS;
    }
    return abort_client(w, x, "upstream closed mid-body");
}

static enum pump pump_resp(struct worker *w, struct exchange *x)
{
    struct conn *c = x->c;
    struct uconn *u = x->u;
    if (out_pending(&x->cl_out)) {
        if (!c->can_write) return STALL;
        enum io_result r = conn_write(w, c, &x->cl_out);
        if (r == IO_AGAIN) return STALL;
        if (r == IO_ERROR) return abort_client(w, x, "write to client failed");
        if (x->resp_head_done && u && u->in && u->in->lo == u->in->hi) u->in->lo = u->in->hi = 0;
    }
    if (x->resp_head_done && (x->resp.flags & H1_MSG_DONE)) {
        if (!x->req_body_done) c->close_after = true;
        return finish(w, x);
    }
    if (!u || u->state != UCONN_ACTIVE || !u->can_read) return STALL;
    if (!u->in && !(u->in = worker_buf_get(w, BUF_BIG)))
        return abort_client(w, x, "out of buffers");
    struct buf *in = u->in;
    if (in->hi >= in->cap) return attempt_failed(w, x, 502, "response head too large", false);
    size_t room = in->cap - in->hi;
    ssize_t n = upstream_read(w, u, in->data + in->hi, room);
    if (n < 0 && errno == EAGAIN) return STALL;
    if (n <= 0) return resp_eof(w, x, n < 0);
    in->hi += (uint32_t)n;
    uint32_t stop;
    enum http1_result r = http1_execute(&x->resp, in->data, in->lo, in->hi, &stop);
    return resp_parsed(w, x, r, stop);
}

/* ---- driving ---- */

static void arm_timers(struct worker *w, struct exchange *x)
{
    struct conn *c = x->c;
    struct uconn *u = x->u;
    const struct conf_listener *l = c->wl->listener;
    bool client_owes_body =
        !out_pending(&x->cl_out) && !x->req_body_done && !out_pending(&x->up_out);
    if (!client_owes_body) x->rate_start = 0; /* we held it back: its rate starts over */
    if (out_pending(&x->cl_out))
        timer_arm(&w->timers, &c->timer, w->now + l->send_timeout);
    else if (client_owes_body)
        timer_arm(&w->timers, &c->timer, conn_body_deadline(w, x));
    else
        timer_cancel(&w->timers, &c->timer);
    if (!u || u->state == UCONN_CONNECTING || u->state == UCONN_HANDSHAKE) return;
    const struct conf_upstream *up = u->server->upstream;
    if (out_pending(&x->up_out))
        timer_arm(&w->timers, &u->timer, w->now + up->send_timeout);
    else if (!out_pending(&x->cl_out))
        timer_arm(&w->timers, &u->timer, w->now + up->read_timeout);
    else
        timer_cancel(&w->timers, &u->timer);
}

/* Pump rounds per call; each moves at most one buffer each way (32 KiB).
 * A fast client behind a fast server never stalls, so without a bound one
 * big transfer would keep the loop for seconds (measured: 120 ms per event
 * at 4096 rounds), delaying every other connection of the worker and,
 * past 2 s, its heartbeat. Past the bound the exchange is posted. */
#define PUMPS_PER_TURN 16

void proxy_progress(struct worker *w, struct exchange *x)
{
    struct conn *c = x->c;
    for (int round = 0;; round++) {
        if (round == PUMPS_PER_TURN && conn_post(w, c)) break;
        if (round == 64 * PUMPS_PER_TURN) break; /* could not post (out of memory) */
        enum pump a = pump_req(w, x);
        if (a == ENDED) return;
        enum pump b = pump_resp(w, x);
        if (b == ENDED) return;
        if (a == STALL && b == STALL) break;
    }
    arm_timers(w, x);
}

void proxy_start(struct worker *w, struct exchange *x)
{
    struct conn *c = x->c;
    struct http1_msg *m = &x->req;
    x->req_body_done = (m->flags & H1_MSG_DONE) != 0;
    x->body_lo = (m->flags & H1_BODY_STARTED) ? m->dec_start : 0;
    x->body_hi = (m->flags & H1_BODY_STARTED) ? m->dec_end : 0;
    if (!x->req_body_done && (m->kinds & HK_BIT(HK_EXPECT))) {
        for (uint16_t i = 0; i < m->nheaders; i++) {
            const struct http1_header *h = &m->headers[i];
            if (h->kind == HK_EXPECT &&
                str_ieqn(m->base + h->value, h->value_len, "100-continue", 12)) {
                /* We take the body ourselves; the upstream never sees Expect. */
                out_add(&x->cl_out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            }
        }
    }
    if (attempt(w, x, false) == ENDED) return;
    if (c->state == CONN_PROXY) proxy_progress(w, x);
}

/* One go at the TLS handshake of X's upstream connection: true when it is
 * done and the request may go. A refused certificate is an [error] (the
 * operator's to fix) and, like any handshake failure, a failed attempt
 * that counts for passive health and may be retried on another server. */
static bool handshake_step(struct worker *w, struct exchange *x)
{
    struct uconn *u = x->u;
    char why[600];
    int r = tls_upstream_handshake(w, u, why, sizeof(why));
    if (r == 1) {
        u->state = UCONN_ACTIVE;
        return true;
    }
    if (r < 0) attempt_failed_at(w, x, 502, why, true, r == -2 ? LL_ERROR : LL_WARN);
    return false;
}

void proxy_upstream_event(struct worker *w, struct uconn *u, uint32_t events)
{
    struct exchange *x = u->x;
    if (!x) {
        upstream_close(w, u, "event without exchange");
        return;
    }
    struct conn *c = x->c;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) u->can_read = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) u->rdhup = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) u->can_write = true;
    if (u->tls && (events & EPOLLOUT)) tls_upstream_writable(u);
    if (u->state == UCONN_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            char why[96];
            snprintf(why, sizeof(why), "connect failed: %s", strerror(err));
            attempt_failed(w, x, 502, why, true);
            conn_kick(w, c);
            return;
        }
        if (upstream_connected(w, u) < 0) {
            attempt_failed(w, x, 502, "cannot set up TLS", true);
            conn_kick(w, c);
            return;
        }
    }
    if (u->state == UCONN_HANDSHAKE && !handshake_step(w, x)) {
        if (c->state != CONN_PROXY) conn_kick(w, c);
        return;
    }
    proxy_progress(w, x);
    if (c->state != CONN_PROXY) conn_kick(w, c);
}

void proxy_upstream_timeout(struct worker *w, struct uconn *u)
{
    struct exchange *x = u->x;
    if (!x) {
        upstream_close(w, u, "keepalive_timeout");
        return;
    }
    struct conn *c = x->c;
    if (u->state == UCONN_CONNECTING)
        attempt_failed(w, x, 504, "connect_timeout", true);
    else if (u->state == UCONN_HANDSHAKE)
        attempt_failed(w, x, 504, "connect_timeout during the TLS handshake", true);
    else if (!x->resp_head_done)
        attempt_failed(w, x, 504, "upstream timed out", false);
    else
        abort_client(w, x, "upstream read_timeout mid-body");
    conn_kick(w, c);
}
