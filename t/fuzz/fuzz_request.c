/* libFuzzer target: bytes from a client into the request parser, read in
 * pieces into a buffer handled as the worker handles its input (head kept
 * in place up to max_header_size, body compacted away, a message's
 * remainder parsed as the next pipelined request), invariants checked after
 * every execute; each complete head is routed against a fixed config. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/config.h"
#include "t/fuzz/harness.h"
#include "worker/http1.h"
#include "worker/route.h"

/* Smaller than the worker's, so that inputs of a few KB reach the limits
 * and are read into the buffer several times over. */
#define HEAD_LIMIT 512 /* the listener's max_header_size */
#define BUF_CAP 1024   /* the connection's input buffer */
#define MAX_HEADERS 32
#define LISTENER_BODY_LIMIT 4096 /* max_body_size of both listeners below */

/* Routes that exercise every rule of route_match: exact path, prefix with
 * and without a trailing slash, exact and suffix hosts (nested suffixes),
 * a listener restriction, methods, a per-route body limit. */
/* clang-format off */
static const char config_text[] =
    "[main]\n"
    "workers = 1\n"
    "[listener a]\n"
    "listen = 127.0.0.1:18080\n"
    "max_body_size = 4096\n"
    "[listener b]\n"
    "listen = 127.0.0.1:18081\n"
    "max_body_size = 4k\n"
    "[upstream app]\n"
    "server = 127.0.0.1:3000\n"
    "server = 127.0.0.1:3001 weight=2 name=two\n"
    "[route health]\n"
    "path = = /healthz\n"
    "return = 200 ok\n"
    "[route api]\n"
    "host = api.example.com\n"
    "host = API.example.org\n"
    "path = /v1/\n"
    "methods = GET HEAD POST\n"
    "max_body_size = 64\n"
    "upstream = app\n"
    "[route api_exact]\n"
    "host = api.example.com\n"
    "path = = /v1/status\n"
    "return = 204\n"
    "[route wild]\n"
    "host = *.example.com\n"
    "path = /\n"
    "return = 200 wild\n"
    "[route deeper]\n"
    "host = *.b.example.com\n"
    "path = /static\n"
    "methods = GET\n"
    "return = 200 static\n"
    "[route only_b]\n"
    "listener = b\n"
    "path = /b\n"
    "redirect = 301 https://$host$request_uri\n"
    "[route app]\n"
    "path = /app/\n"
    "strip_prefix = /app\n"
    "upstream = app\n"
    "[route app_dup]\n"
    "path = /app/\n"
    "return = 500 never: the first route wins a tie\n"
    "[route root]\n"
    "path = /\n"
    "return = 200 root\n";
/* clang-format on */

static struct config *cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[] = "/tmp/portico-fuzz-request-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, config_text, sizeof(config_text) - 1) != sizeof(config_text) - 1) {
        perror("fuzz_request: temp config");
        exit(1);
    }
    close(fd);
    cfg = config_load(path, stderr);
    unlink(path);
    if (!cfg || cfg->nlisteners != 2) {
        fprintf(stderr, "fuzz_request: the built-in config does not load\n");
        exit(1);
    }
    return 0;
}

/* ---- routing: an independent statement of SPEC.md's rule ---- */

static bool ref_prefix(const char *pre, size_t pn, const char *path, size_t n)
{
    if (n < pn || memcmp(pre, path, pn) != 0) return false;
    return pn == 0 || pre[pn - 1] == '/' || n == pn || path[pn] == '/';
}

/* The best route by (host class, suffix length, path score), first wins. */
static const struct conf_route *ref_route(unsigned li, const char *host, size_t hn,
                                          const char *path, size_t pn)
{
    const struct conf_route *best = NULL;
    size_t bk[3] = {0, 0, 0};
    for (unsigned i = 0; i < cfg->nroutes; i++) {
        const struct conf_route *r = &cfg->routes[i];
        if (!((r->listener_mask >> li) & 1)) continue;
        size_t k[3] = {r->nhosts ? 0 : 1, 0, 0};
        for (unsigned j = 0; j < r->nhosts; j++) {
            const char *h = r->hosts[j];
            size_t n = strlen(h);
            if (n == hn && strncasecmp(h, host, n) == 0) {
                k[0] = 3;
            } else if (h[0] == '*' && h[1] == '.' && hn > n - 1 &&
                       strncasecmp(host + hn - (n - 1), h + 1, n - 1) == 0 && k[0] <= 2) {
                k[0] = 2;
                if (n - 1 > k[1]) k[1] = n - 1;
            }
        }
        if (!k[0]) continue;
        if (k[0] != 2) k[1] = 0;
        if (r->path_exact)
            k[2] = pn == r->path_len && memcmp(r->path, path, pn) == 0 ? SIZE_MAX : 0;
        else
            k[2] = ref_prefix(r->path, r->path_len, path, pn) ? r->path_len + 1 : 0;
        if (!k[2]) continue;
        bool better = false;
        for (int x = 0; x < 3; x++) {
            if (k[x] != bk[x]) {
                better = k[x] > bk[x];
                break;
            }
        }
        if (better || !best) {
            best = r;
            memcpy(bk, k, sizeof(bk));
        }
    }
    return best;
}

/* Host and path of a request as the worker takes them: the authority of an
 * absolute-form target, else the Host header; port and query dropped. */
static const struct conf_route *route_check(const struct http1_msg *m)
{
    const struct conf_route *first = NULL;
    const char *t = m->base + m->target;
    size_t tn = m->target_len, hn = 0;
    const char *host = "";
    for (uint16_t i = 0; i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        if (h->name_len == 4 && strncasecmp(m->base + h->name, "host", 4) == 0) {
            host = m->base + h->value;
            hn = h->value_len;
        }
    }
    const char *path = t;
    size_t pn = tn;
    size_t skip = tn >= 7 && strncasecmp(t, "http://", 7) == 0    ? 7
                  : tn >= 8 && strncasecmp(t, "https://", 8) == 0 ? 8
                                                                  : 0;
    if (skip) {
        size_t e = skip;
        while (e < tn && t[e] != '/' && t[e] != '?')
            e++;
        host = t + skip;
        hn = e - skip;
        path = t + e;
        pn = tn - e;
    }
    if (hn && host[0] != '[') {
        const char *colon = memchr(host, ':', hn);
        if (colon) hn = (size_t)(colon - host);
    }
    const char *q = memchr(path, '?', pn);
    if (q) pn = (size_t)(q - path);
    if (!pn) path = "/", pn = 1;

    for (unsigned li = 0; li < cfg->nlisteners; li++) {
        const struct conf_route *r = route_match(cfg, li, host, hn, path, pn);
        const struct conf_route *want = ref_route(li, host, hn, path, pn);
        if (r != want)
            fprintf(stderr, "route_match chose %s, the rule says %s\n", r ? r->name : "none",
                    want ? want->name : "none");
        CHECK(r == want);
        if (!r) continue;
        if (li == 0) first = r;
        const char *method = m->base + m->method;
        bool allowed = route_method_allowed(r, method, m->method_len);
        bool listed = r->nmethods == 0;
        for (unsigned i = 0; i < r->nmethods; i++)
            listed |= strlen(r->methods[i]) == m->method_len &&
                      memcmp(r->methods[i], method, m->method_len) == 0;
        CHECK(allowed == listed);
    }
    return first;
}

/* ---- the connection ---- */

struct stream {
    const uint8_t *in; /* what the client sent */
    size_t n, pos;     /* pos: next byte to read */
    char *buf;         /* BUF_CAP bytes, malloc'd alone so ASan sees its ends */
    uint32_t lo, hi;   /* parsed up to lo, filled up to hi */
    size_t origin;     /* stream offset of buf[0] */
    struct http1_msg m;
    struct http1_header headers[MAX_HEADERS];
    bool dispatched;   /* the head was complete and routed */
    uint32_t head_end; /* where the head ended, once dispatched */
    uint16_t nheaders; /* at dispatch */
    uint32_t state;    /* fz_parser_feature() */
};

static void msg_start(struct stream *s)
{
    memset(&s->m, 0, sizeof(s->m));
    http1_init(&s->m, true, s->headers, MAX_HEADERS);
    s->dispatched = false;
}

/* What the worker checks on a complete head, and what it relies on. */
static void head_check(struct stream *s)
{
    struct http1_msg *m = &s->m;
    CHECK(m->major == 1);
    CHECK(!((m->flags & H1_CHUNKED) && (m->flags & H1_HAS_LENGTH)));
    CHECK(m->method_len > 0 && m->target_len > 0);
    CHECK(m->method + m->method_len <= s->hi && m->target + m->target_len <= s->hi);
    for (uint32_t i = 0; i < m->method_len; i++)
        CHECK(fz_tchar((unsigned char)s->buf[m->method + i]));
    const char *name = http1_method_name(m);
    CHECK(strlen(name) == m->method_len && memcmp(name, s->buf + m->method, m->method_len) == 0);
    for (uint32_t i = 0; i < m->target_len; i++) { /* forwarded as is */
        unsigned char c = (unsigned char)s->buf[m->target + i];
        CHECK(c > 0x20 && c != 0x7f);
    }
    /* Strict parsing: no CR LF CR LF inside the request line or a field, so
     * the first one after the method ends the head. */
    s->head_end = (uint32_t)fz_head_end(s->buf, m->method, s->hi);
    CHECK(s->head_end <= s->hi);
    CHECK(m->target + m->target_len <= s->head_end);
    CHECK(m->nheaders <= MAX_HEADERS);
    for (uint16_t i = 0; i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        CHECK(h->name_len > 0);
        CHECK(h->name + h->name_len <= s->head_end); /* trailers are not fields */
        CHECK(h->value + h->value_len <= s->head_end);
        for (uint32_t j = 0; j < h->name_len; j++)
            CHECK(fz_tchar((unsigned char)s->buf[h->name + j]));
        CHECK(fz_clean_value(s->buf + h->value, h->value_len));
    }
    s->nheaders = m->nheaders;
}

/* The worker's dispatch: route; a declared body over the limit ends the
 * connection; otherwise the limit applies to the body to come. */
static bool dispatch(struct stream *s)
{
    struct http1_msg *m = &s->m;
    head_check(s);
    s->dispatched = true;
    const struct conf_route *r = route_check(m);
    int64_t limit = r && r->max_body_size >= 0 ? r->max_body_size : LISTENER_BODY_LIMIT;
    if ((m->flags & H1_HAS_LENGTH) && m->content_length > (uint64_t)limit) return false;
    m->body_limit = limit;
    return m->body_seen <= (uint64_t)limit;
}

/* One http1_execute over buf[from, to) and what must hold after it. */
static enum http1_result execute(struct stream *s, uint32_t from, uint32_t to, uint32_t *stop)
{
    struct http1_msg *m = &s->m;
    const char *orig = (const char *)s->in + s->origin;
    uint64_t seen = m->body_seen;
    enum http1_result r = http1_execute(m, s->buf, from, to, stop);
    fz_parser_feature(m->parser, &s->state);
    CHECK(m->base == s->buf);
    if (r == HTTP1_ERROR) {
        CHECK(m->error >= 400 && m->error <= 505 && m->error_reason);
        return r;
    }
    if (r == HTTP1_AGAIN) CHECK(*stop == to);
    if (r == HTTP1_DONE) {
        CHECK(*stop >= from && *stop <= to);
        CHECK((m->flags & H1_HEAD_DONE) && (m->flags & H1_MSG_DONE));
    }
    CHECK(from <= m->dec_start && m->dec_start <= m->dec_end && m->dec_end <= to);
    if (m->flags & H1_BODY_STARTED) {
        CHECK(m->flags & H1_HEAD_DONE);
        CHECK(m->body_seen - seen == m->dec_end - m->dec_start);
    } else {
        CHECK(m->body_seen == seen && m->dec_start == from && m->dec_end == from);
    }
    /* Decoding writes [dec_start, dec_end) only. */
    CHECK(memcmp(s->buf + from, orig + from, m->dec_start - from) == 0);
    CHECK(memcmp(s->buf + m->dec_end, orig + m->dec_end, s->hi - m->dec_end) == 0);
    if (!(m->flags & H1_CHUNKED))
        CHECK(memcmp(s->buf + m->dec_start, orig + m->dec_start, m->dec_end - m->dec_start) == 0);
    if (m->flags & H1_HEAD_DONE) {
        CHECK(!((m->flags & H1_CHUNKED) && (m->flags & H1_HAS_LENGTH)));
        if (m->flags & H1_HAS_LENGTH) CHECK(m->body_seen <= m->content_length);
        if (!(m->flags & (H1_HAS_LENGTH | H1_CHUNKED))) CHECK(m->body_seen == 0);
        if (m->body_limit >= 0) CHECK(m->body_seen <= (uint64_t)m->body_limit);
    }
    if (r == HTTP1_DONE && (m->flags & H1_HAS_LENGTH)) CHECK(m->body_seen == m->content_length);
    /* Chunked trailers must not join the header fields. */
    if (r == HTTP1_DONE && s->dispatched) CHECK(m->nheaders == s->nheaders);
    return r;
}

/* A message ended at lo: the rest is the next request, moved to the front. */
static void next_message(struct stream *s)
{
    memmove(s->buf, s->buf + s->lo, s->hi - s->lo);
    s->origin += s->lo;
    s->hi -= s->lo;
    s->lo = 0;
    msg_start(s);
}

/* Parse what is buffered. Returns false when the worker would close. */
static bool parse(struct stream *s)
{
    for (;;) {
        uint32_t stop;
        if (!s->dispatched) {
            /* Head: in place, never beyond the limit. */
            uint32_t to = s->hi < HEAD_LIMIT ? s->hi : HEAD_LIMIT;
            if (s->lo < to) {
                enum http1_result r = execute(s, s->lo, to, &stop);
                if (r == HTTP1_ERROR) return false;
                s->lo = r == HTTP1_DONE ? stop : to;
                if ((s->m.flags & H1_HEAD_DONE) && !dispatch(s)) return false;
                if (r == HTTP1_DONE) {
                    next_message(s);
                    continue;
                }
            }
            if (!s->dispatched) return to < HEAD_LIMIT; /* else 431 or 414 */
            continue;
        }
        /* Body: parsed bytes are forwarded, then dropped. */
        if (s->lo < s->hi) {
            enum http1_result r = execute(s, s->lo, s->hi, &stop);
            if (r == HTTP1_ERROR) return false;
            s->lo = r == HTTP1_DONE ? stop : s->hi;
            if (r == HTTP1_DONE) {
                next_message(s);
                continue;
            }
        }
        s->origin += s->hi;
        s->lo = s->hi = 0;
        return true;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct split sp;
    split_init(&sp, data[0], (uint32_t)size);
    struct stream *s = calloc(1, sizeof(*s));
    s->in = data + 1;
    s->n = size - 1;
    s->buf = malloc(BUF_CAP);
    msg_start(s);
    while (s->pos < s->n) {
        size_t k = split_next(&sp);
        if (k > BUF_CAP - s->hi) k = BUF_CAP - s->hi;
        if (k > s->n - s->pos) k = s->n - s->pos;
        CHECK(k > 0); /* parse() always leaves room */
        memcpy(s->buf + s->hi, s->in + s->pos, k);
        s->hi += (uint32_t)k;
        s->pos += k;
        if (!parse(s)) break;
    }
    free(s->buf);
    free(s);
    return 0;
}
