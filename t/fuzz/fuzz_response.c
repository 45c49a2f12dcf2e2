/* libFuzzer target: bytes from an upstream into the response parser, read
 * in pieces into a buffer handled as worker/proxy.c handles it (the head,
 * interim 1xx heads included, kept in place; body bytes dropped once
 * forwarded), for a GET or a HEAD, with http1_finish at the upstream's close;
 * bytes after a complete response are parsed as the next response. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "t/fuzz/harness.h"
#include "worker/http1.h"

#define BUF_CAP 1024 /* the upstream connection's input buffer (small, see fuzz_request.c) */
#define MAX_HEADERS 32

struct stream {
    const uint8_t *in;
    size_t n, pos;
    char *buf;
    uint32_t lo, hi;
    size_t origin; /* stream offset of buf[0] */
    bool head;     /* the request was HEAD: http1_skip_body */
    struct http1_msg m;
    struct http1_header headers[MAX_HEADERS];
    bool head_seen; /* the final head was complete and checked */
    uint16_t nheaders;
    uint32_t state; /* fz_parser_feature() */
};

static void msg_start(struct stream *s)
{
    memset(&s->m, 0, sizeof(s->m));
    http1_init(&s->m, false, s->headers, MAX_HEADERS);
    if (s->head) http1_skip_body(&s->m);
    s->head_seen = false;
}

static bool interim(unsigned status)
{
    return status >= 100 && status < 200 && status != 101;
}

static bool no_body(const struct stream *s)
{
    unsigned st = s->m.status;
    return s->head || st == 204 || st == 304 || (st >= 100 && st < 200);
}

/* The final head, as proxy.c rewrites it. */
static void head_check(struct stream *s)
{
    struct http1_msg *m = &s->m;
    CHECK(m->major == 1);
    CHECK(m->status >= 100 && m->status <= 599); /* RFC 9110 15 */
    /* Interim responses are skipped. */
    CHECK(!interim(m->status));
    CHECK(!((m->flags & H1_CHUNKED) && (m->flags & H1_HAS_LENGTH)));
    CHECK(m->reason + m->reason_len <= s->hi);
    /* proxy.c replaces a reason with control bytes; CR and LF end it. */
    CHECK(memchr(s->buf + m->reason, '\r', m->reason_len) == NULL);
    CHECK(memchr(s->buf + m->reason, '\n', m->reason_len) == NULL);
    CHECK(m->nheaders <= MAX_HEADERS);
    uint32_t anchor = m->nheaders ? m->headers[0].name : m->reason;
    uint32_t end = (uint32_t)fz_head_end(s->buf, anchor, s->hi);
    if (!m->nheaders && !m->reason_len) end = s->hi;
    for (uint16_t i = 0; i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        CHECK(h->name_len > 0);
        CHECK(h->name + h->name_len <= end); /* trailers are not fields */
        CHECK(h->value + h->value_len <= end);
        CHECK(h->name + h->name_len <= s->hi && h->value + h->value_len <= s->hi);
        for (uint32_t j = 0; j < h->name_len; j++)
            CHECK(fz_tchar((unsigned char)s->buf[h->name + j]));
        CHECK(fz_clean_value(s->buf + h->value, h->value_len));
    }
    s->head_seen = true;
    s->nheaders = m->nheaders;
}

static enum http1_result execute(struct stream *s, uint32_t from, uint32_t to, uint32_t *stop)
{
    struct http1_msg *m = &s->m;
    const char *orig = (const char *)s->in + s->origin;
    uint64_t seen = m->body_seen;
    enum http1_result r = http1_execute(m, s->buf, from, to, stop);
    fz_parser_feature(m->parser, &s->state);
    CHECK(m->base == s->buf);
    if (r == HTTP1_ERROR) {
        CHECK(m->error == 502 && m->error_reason);
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
        CHECK(m->body_seen == seen);
    }
    CHECK(memcmp(s->buf + from, orig + from, m->dec_start - from) == 0);
    CHECK(memcmp(s->buf + m->dec_end, orig + m->dec_end, s->hi - m->dec_end) == 0);
    if (!(m->flags & H1_CHUNKED))
        CHECK(memcmp(s->buf + m->dec_start, orig + m->dec_start, m->dec_end - m->dec_start) == 0);
    if (m->flags & H1_HEAD_DONE) {
        if (!s->head_seen) head_check(s);
        CHECK(!((m->flags & H1_CHUNKED) && (m->flags & H1_HAS_LENGTH)));
        if (no_body(s)) CHECK(m->body_seen == 0);
        if (m->flags & H1_HAS_LENGTH) CHECK(m->body_seen <= m->content_length);
        if (m->flags & H1_NEEDS_EOF) {
            CHECK(r == HTTP1_AGAIN && !no_body(s));
            CHECK(!(m->flags & (H1_HAS_LENGTH | H1_CHUNKED)));
        }
    }
    if (r == HTTP1_DONE) {
        CHECK(!interim(m->status));
        if ((m->flags & H1_HAS_LENGTH) && !no_body(s)) CHECK(m->body_seen == m->content_length);
        CHECK(m->nheaders == s->nheaders);
    }
    return r;
}

/* Bytes after a response: parsed as the next one on a fresh parser. */
static void next_message(struct stream *s)
{
    memmove(s->buf, s->buf + s->lo, s->hi - s->lo);
    s->origin += s->lo;
    s->hi -= s->lo;
    s->lo = 0;
    msg_start(s);
}

/* Returns false when the worker would give up on the connection. */
static bool parse(struct stream *s)
{
    for (;;) {
        uint32_t stop;
        if (s->lo < s->hi) {
            enum http1_result r = execute(s, s->lo, s->hi, &stop);
            if (r == HTTP1_ERROR) return false;
            s->lo = r == HTTP1_DONE ? stop : s->hi;
            if (r == HTTP1_DONE) {
                next_message(s);
                continue;
            }
        }
        if (!(s->m.flags & H1_HEAD_DONE)) return s->hi < BUF_CAP; /* else head too large */
        /* Forwarded: the buffer starts over. */
        s->origin += s->hi;
        s->lo = s->hi = 0;
        return true;
    }
}

/* The upstream closed. */
static void finish(struct stream *s, bool always)
{
    struct http1_msg *m = &s->m;
    bool eof_body = (m->flags & H1_NEEDS_EOF) != 0;
    if (!eof_body && !always) return;
    enum http1_result r = http1_finish(m);
    fz_parser_feature(m->parser, &s->state);
    if (eof_body) CHECK(r == HTTP1_DONE);
    if (r == HTTP1_DONE) {
        CHECK((m->flags & H1_HEAD_DONE) && (m->flags & H1_MSG_DONE));
        CHECK(!(m->flags & H1_CHUNKED));
        CHECK(!interim(m->status));
        if ((m->flags & H1_HAS_LENGTH) && !no_body(s)) CHECK(m->body_seen == m->content_length);
    } else {
        CHECK(r == HTTP1_ERROR);
    }
}

/* Input: a mode byte (bits 0-5 the split, bit 6 HEAD, bit 7 http1_finish
 * whatever the state), then what the upstream sends before closing. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct split sp;
    split_init(&sp, data[0] & 0x3f, (uint32_t)size);
    struct stream *s = calloc(1, sizeof(*s));
    s->in = data + 1;
    s->n = size - 1;
    s->head = (data[0] & 0x40) != 0;
    s->buf = malloc(BUF_CAP);
    msg_start(s);
    bool open = true;
    while (open && s->pos < s->n) {
        size_t k = split_next(&sp);
        if (k > BUF_CAP - s->hi) k = BUF_CAP - s->hi;
        if (k > s->n - s->pos) k = s->n - s->pos;
        CHECK(k > 0);
        memcpy(s->buf + s->hi, s->in + s->pos, k);
        s->hi += (uint32_t)k;
        s->pos += k;
        open = parse(s);
    }
    if (open) finish(s, (data[0] & 0x80) != 0);
    free(s->buf);
    free(s);
    return 0;
}
