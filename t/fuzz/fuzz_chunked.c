/* libFuzzer target: the input is the body of a chunked request. It is
 * decoded by http1 at once and in pieces (as the worker reads and compacts),
 * and by a small reference decoder written from RFC 9112 7.1 here; the
 * decodings must agree, and http1 must refuse what is clearly not a chunk
 * size. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "t/fuzz/harness.h"
#include "worker/http1.h"

#define HEAD "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
#define HEAD_LEN (sizeof(HEAD) - 1)
#define HEAD_FIELDS 2
#define BUF_CAP 512 /* the connection's buffer for the piecewise run */
#define MAX_HEADERS 32

/* ---- reference decoder ---- */

enum ref_result {
    REF_DONE,   /* a complete chunked body of `used` bytes */
    REF_MORE,   /* valid so far, incomplete */
    REF_BAD,    /* clearly invalid chunk size or framing: must be refused */
    REF_UNSURE, /* a corner (whitespace, odd trailer) where parsers may differ */
};

struct ref {
    enum ref_result res;
    size_t used;    /* input bytes of the body when REF_DONE */
    size_t out_len; /* decoded bytes, valid whatever res */
    bool plain;     /* no chunk extension and no trailer field so far */
};

/* chunk-ext = *( ";" name [ "=" ( token / quoted-string ) ] ), no BWS. */
static enum ref_result ref_ext(const uint8_t *p, size_t n, size_t *i)
{
    while (*i < n && p[*i] == ';') {
        (*i)++;
        size_t s = *i;
        while (*i < n && fz_tchar(p[*i]))
            (*i)++;
        if (*i == n) return REF_MORE;
        if (*i == s) return REF_UNSURE;
        if (p[*i] != '=') continue;
        (*i)++;
        if (*i == n) return REF_MORE;
        if (p[*i] == '"') {
            for ((*i)++;; (*i)++) {
                if (*i >= n) return REF_MORE;
                if (p[*i] == '"') break;
                if (p[*i] == '\\') {
                    (*i)++;
                    if (*i == n) return REF_MORE;
                    if (p[*i] < 0x20 && p[*i] != '\t') return REF_UNSURE;
                } else if ((p[*i] < 0x20 && p[*i] != '\t') || p[*i] == 0x7f) {
                    return REF_UNSURE;
                }
            }
            (*i)++;
        } else {
            s = *i;
            while (*i < n && fz_tchar(p[*i]))
                (*i)++;
            if (*i == n) return REF_MORE;
            if (*i == s) return REF_UNSURE;
        }
    }
    if (*i == n) return REF_MORE;
    return p[*i] == '\r' ? REF_DONE : REF_UNSURE;
}

/* Expect CRLF at *i. */
static enum ref_result ref_crlf(const uint8_t *p, size_t n, size_t *i)
{
    if (*i == n) return REF_MORE;
    if (p[*i] != '\r') return REF_BAD;
    if (*i + 1 == n) return REF_MORE;
    if (p[*i + 1] != '\n') return REF_BAD;
    *i += 2;
    return REF_DONE;
}

static void ref_decode(const uint8_t *p, size_t n, uint8_t *out, struct ref *r)
{
    size_t i = 0;
    enum ref_result e;
    r->out_len = 0;
    r->plain = true;
    for (;;) {
        uint64_t size = 0;
        size_t digits = 0;
        unsigned v;
        while (i < n && fz_hex(p[i], &v)) {
            if (size >> 60) { /* more than 64 bits */
                r->res = REF_BAD;
                return;
            }
            size = size << 4 | v;
            digits++;
            i++;
        }
        if (i == n) {
            r->res = REF_MORE;
            return;
        }
        if (!digits) { /* no size at all */
            r->res = REF_BAD;
            return;
        }
        if (p[i] == ';') {
            r->plain = false;
            if ((e = ref_ext(p, n, &i)) != REF_DONE) {
                r->res = e;
                return;
            }
        } else if (p[i] == ' ' || p[i] == '\t') {
            r->res = REF_UNSURE; /* BWS before an extension */
            return;
        } else if (p[i] != '\r') { /* a size ends at ';' or CR */
            r->res = REF_BAD;
            return;
        }
        if ((e = ref_crlf(p, n, &i)) != REF_DONE) {
            r->res = e;
            return;
        }
        if (size == 0) break;
        size_t k = n - i < size ? n - i : (size_t)size;
        memcpy(out + r->out_len, p + i, k);
        r->out_len += k;
        i += k;
        if (k < size) {
            r->res = REF_MORE;
            return;
        }
        if ((e = ref_crlf(p, n, &i)) != REF_DONE) {
            r->res = e;
            return;
        }
    }
    /* trailer-section CRLF; a field is name ":" OWS value, VCHAR/obs-text. */
    for (;;) {
        if (i == n || (p[i] == '\r' && i + 1 == n)) {
            r->res = REF_MORE;
            return;
        }
        if (p[i] == '\r') {
            r->res = p[i + 1] == '\n' ? REF_DONE : REF_BAD;
            r->used = i + 2;
            return;
        }
        r->plain = false;
        size_t s = i;
        while (i < n && fz_tchar(p[i]))
            i++;
        if (i == n) {
            r->res = REF_MORE;
            return;
        }
        if (i == s || p[i] != ':') {
            r->res = REF_UNSURE;
            return;
        }
        for (i++; i < n && p[i] != '\r'; i++) {
            if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f) {
                r->res = REF_UNSURE;
                return;
            }
        }
        if (i + 1 >= n) {
            r->res = REF_MORE;
            return;
        }
        if (p[i + 1] != '\n') {
            r->res = REF_UNSURE;
            return;
        }
        i += 2;
    }
}

/* ---- http1, at once or in pieces ---- */

enum run_result { RUN_DONE, RUN_AGAIN, RUN_ERROR };

struct run {
    enum run_result res;
    size_t used; /* body bytes consumed when RUN_DONE */
    size_t out_len;
};

/* Feed HEAD then BODY in reads of split_next() bytes (sp NULL: one read
 * into a buffer of exactly that size). The buffer keeps the head in place
 * and starts over once the body is flowing, as proxy.c does. */
static void run_http1(const uint8_t *body, size_t n, struct split *sp, uint8_t *out, struct run *o)
{
    size_t cap = sp ? BUF_CAP : HEAD_LEN + n;
    char *buf = malloc(cap ? cap : 1);
    struct http1_msg m;
    struct http1_header headers[MAX_HEADERS];
    memset(&m, 0, sizeof(m));
    http1_init(&m, true, headers, MAX_HEADERS);
    memcpy(buf, HEAD, HEAD_LEN);
    uint32_t lo = 0, hi = HEAD_LEN;
    size_t pos = 0, origin = 0; /* body offset of buf[0], head counted */
    uint32_t state = 0;
    o->out_len = 0;
    o->res = RUN_AGAIN;
    for (bool first = true; first || pos < n; first = false) {
        size_t k = sp ? split_next(sp) : n;
        if (k > cap - hi) k = cap - hi;
        if (k > n - pos) k = n - pos;
        memcpy(buf + hi, body + pos, k);
        hi += (uint32_t)k;
        pos += k;
        uint32_t stop;
        uint64_t seen = m.body_seen;
        enum http1_result r = http1_execute(&m, buf, lo, hi, &stop);
        fz_parser_feature(m.parser, &state);
        /* Bytes decoded before an error count too: they were forwarded. */
        CHECK(lo <= m.dec_start && m.dec_start <= m.dec_end && m.dec_end <= hi);
        CHECK(m.body_seen - seen == m.dec_end - m.dec_start);
        memcpy(out + o->out_len, buf + m.dec_start, m.dec_end - m.dec_start);
        o->out_len += m.dec_end - m.dec_start;
        CHECK(o->out_len == m.body_seen);
        if (r == HTTP1_ERROR) {
            CHECK(m.error == 400 || m.error == 431);
            o->res = RUN_ERROR;
            break;
        }
        CHECK(m.flags & H1_HEAD_DONE);
        CHECK((m.flags & H1_CHUNKED) && !(m.flags & H1_HAS_LENGTH));
        CHECK(m.nheaders == HEAD_FIELDS); /* trailer fields are not recorded */
        if (r == HTTP1_DONE) {
            CHECK(stop >= lo && stop <= hi);
            o->res = RUN_DONE;
            o->used = origin + stop - HEAD_LEN;
            break;
        }
        CHECK(stop == hi);
        origin += hi;
        lo = hi = 0;
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *ref_out = malloc(size + 1), *a_out = malloc(size + 1), *b_out = malloc(size + 1);
    struct ref ref;
    struct run a, b;
    ref_decode(data, size, ref_out, &ref);
    run_http1(data, size, NULL, a_out, &a);

    /* Reads of a size picked by a hash of the input. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    struct split sp;
    split_init(&sp, (uint8_t)(2 | (h & 0x38)), h);
    run_http1(data, size, &sp, b_out, &b);

    /* Where one decoding ends, the other agrees on what came before. */
    size_t k = a.out_len < ref.out_len ? a.out_len : ref.out_len;
    CHECK(memcmp(a_out, ref_out, k) == 0);
    if (a.res == RUN_DONE && ref.res == REF_DONE) {
        CHECK(a.used == ref.used);
        CHECK(a.out_len == ref.out_len);
    }
    if (ref.res == REF_BAD) CHECK(a.res == RUN_ERROR);
    if (ref.plain && ref.res == REF_DONE) CHECK(a.res == RUN_DONE);
    if (ref.plain && ref.res == REF_MORE) CHECK(a.res == RUN_AGAIN);

    /* The split must not change the outcome. */
    CHECK(b.res == a.res);
    if (a.res == RUN_DONE) CHECK(b.used == a.used);
    k = a.out_len < b.out_len ? a.out_len : b.out_len;
    CHECK(memcmp(a_out, b_out, k) == 0);
    CHECK(b.out_len == a.out_len);

    free(ref_out);
    free(a_out);
    free(b_out);
    return 0;
}
