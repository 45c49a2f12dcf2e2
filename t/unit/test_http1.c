/* http1: header kinds (recognised in any case, only exactly, also when a
 * name arrives in pieces) and the word-at-a-time control-byte check (every
 * length and position, tab and obs-text allowed). */
#include "t/unit/tap.h"
#include "worker/http1.h"

#include <stdbool.h>
#include <stdint.h>

static struct http1_header hdrs[64];
static char buf[4096];

/* Parse REQ (split after SPLIT bytes when SPLIT > 0) into M; returns the
 * last result. */
static enum http1_result parse(struct http1_msg *m, const char *req, size_t split)
{
    size_t n = strlen(req);
    memcpy(buf, req, n);
    memset(m, 0, sizeof(*m));
    http1_init(m, true, hdrs, 64);
    uint32_t stop;
    enum http1_result r = HTTP1_AGAIN;
    if (split && split < n) {
        r = http1_execute(m, buf, 0, (uint32_t)split, &stop);
        if (r != HTTP1_AGAIN) return r;
    }
    return http1_execute(m, buf, (uint32_t)(split < n ? split : 0), (uint32_t)n, &stop);
}

static void test_kinds(void)
{
    static const struct {
        const char *name;
        enum http1_hkind kind;
    } cases[] = {
        {"hOsT", HK_HOST},
        {"CONNECTION", HK_CONNECTION},
        {"Keep-Alive", HK_KEEP_ALIVE},
        {"proxy-CONNECTION", HK_PROXY_CONNECTION},
        {"Te", HK_TE},
        {"Trailer", HK_TRAILER},
        {"Upgrade", HK_UPGRADE},
        {"x-FORWARDED-for", HK_X_FORWARDED_FOR},
        {"X-Forwarded-Proto", HK_X_FORWARDED_PROTO},
        {"X-Forwarded-Host", HK_X_FORWARDED_HOST},
        {"VIA", HK_VIA},
        {"X-Request-Id", HK_X_REQUEST_ID},
        {"X-Upstream", HK_X_UPSTREAM},
        {"Date", HK_DATE},
        {"Referer", HK_REFERER},
        {"User-Agent", HK_USER_AGENT},
        {"Expect", HK_EXPECT},
        {"Hosts", HK_OTHER},
        {"Hos", HK_OTHER},
        {"Connectiom", HK_OTHER},
        {"x_forwarded_for", HK_OTHER},
        {"X-Forwarded-Fo", HK_OTHER},
        {"Via2", HK_OTHER},
        {"T", HK_OTHER},
        {"Xonnection", HK_OTHER},
    };
    size_t nc = sizeof(cases) / sizeof(cases[0]);
    char req[2048];
    size_t n = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < nc; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "%s: v%zu\r\n", cases[i].name, i);
    snprintf(req + n, sizeof(req) - n, "\r\n");
    /* Whole, and split inside the first and inside a later header name. */
    size_t splits[] = {0, 18, (size_t)(strstr(req, "x-FORWARDED") - req) + 5};
    for (size_t s = 0; s < sizeof(splits) / sizeof(splits[0]); s++) {
        struct http1_msg m;
        is_int(parse(&m, req, splits[s]), HTTP1_DONE, "parsed (split at %zu)", splits[s]);
        is_int(m.nheaders, nc, "every header recorded");
        uint32_t want_kinds = 0;
        for (size_t i = 0; i < nc && i < m.nheaders; i++) {
            is_int(m.headers[i].kind, cases[i].kind, "%s (split at %zu)", cases[i].name, splits[s]);
            want_kinds |= HK_BIT(cases[i].kind);
        }
        is_int(m.kinds, want_kinds, "kinds summary");
        const struct http1_header *h = http1_find(&m, HK_VIA);
        ok(h && h->value_len == 3 && memcmp(buf + h->value, "v10", 3) == 0, "http1_find");
    }
    struct http1_msg m;
    parse(&m, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    ok(!http1_find(&m, HK_VIA) && m.kinds == HK_BIT(HK_HOST), "absent kind not found");
}

static void test_ctl(void)
{
    int bad_missed = 0, good_refused = 0, obs_refused = 0;
    for (size_t len = 1; len <= 24; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            char val[32], req[128];
            for (int variant = 0; variant < 4; variant++) {
                memset(val, 'a', len);
                val[len] = 0;
                /* 0: DEL, 1: tab, 2: obs-text 0x80, 3: 0xff. Tabs at an
                 * edge are whitespace llhttp trims: keep them inside. */
                unsigned char ch = variant == 0   ? 0x7f
                                   : variant == 1 ? '\t'
                                   : variant == 2 ? 0x80
                                                  : 0xff;
                if (variant == 1 && (pos == 0 || pos == len - 1)) continue;
                val[pos] = (char)ch;
                snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: h\r\nX-V: %s\r\n\r\n", val);
                struct http1_msg m;
                enum http1_result r = parse(&m, req, 0);
                if (variant == 0 && r != HTTP1_ERROR) bad_missed++;
                if (variant == 1 && r != HTTP1_DONE) good_refused++;
                if (variant >= 2 && r != HTTP1_DONE) obs_refused++;
            }
        }
    }
    is_int(bad_missed, 0, "DEL refused at every length and position");
    is_int(good_refused, 0, "a tab inside a value is accepted");
    is_int(obs_refused, 0, "obs-text (0x80, 0xff) is accepted");
}

/* Directly, since llhttp refuses most of these first: every control byte at
 * every position of values up to 40 bytes is found; tab, printable ASCII and
 * obs-text never are. */
static void test_has_ctl(void)
{
    int missed = 0, false_hits = 0;
    char v[48];
    for (uint32_t len = 1; len <= 40; len++) {
        for (uint32_t pos = 0; pos < len; pos++) {
            for (int ch = 0; ch < 256; ch++) {
                memset(v, 'x', sizeof(v));
                v[pos] = (char)ch;
                bool ctl = (ch < 0x20 && ch != '\t') || ch == 0x7f;
                bool got = http1_has_ctl(v, len);
                if (ctl && !got) missed++;
                if (!ctl && got) false_hits++;
            }
        }
    }
    is_int(missed, 0, "every control byte found");
    is_int(false_hits, 0, "no tab, printable or obs-text byte flagged");
    memset(v, 'x', sizeof(v));
    v[8] = 0x01;
    ok(!http1_has_ctl(v, 8), "bytes past the end are not read as part of the value");
    ok(!http1_has_ctl(v, 0), "empty value");
}

/* RFC 9112 2.3: 1.x above 1.1 is processed as 1.1; another major version
 * gets 505 (a request) whatever its minor; a malformed or missing version
 * (HTTP/0.9 has no place here) stays 400. */
static void test_versions(void)
{
    static const struct {
        const char *line;
        enum http1_result r;
        int error, minor;
        bool keep_alive;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP1_DONE, 0, 1, true},
        {"GET / HTTP/1.0\r\nHost: a\r\n\r\n", HTTP1_DONE, 0, 0, false},
        {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", HTTP1_DONE, 0, 1, true},
        {"GET / HTTP/1.9\r\nHost: a\r\nConnection: close\r\n\r\n", HTTP1_DONE, 0, 1, false},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", HTTP1_ERROR, 505, -1, false},
        {"GET / HTTP/3.0\r\nHost: a\r\n\r\n", HTTP1_ERROR, 505, -1, false},
        {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", HTTP1_ERROR, 400, -1, false},
        {"GET /\r\nHost: a\r\n\r\n", HTTP1_ERROR, 400, -1, false},
        {"GET / HTTP/1.x\r\nHost: a\r\n\r\n", HTTP1_ERROR, 400, -1, false},
        {"GET / HTTP/11.1\r\nHost: a\r\n\r\n", HTTP1_ERROR, 400, -1, false},
        {"GET / HTTQ/1.1\r\nHost: a\r\n\r\n", HTTP1_ERROR, 400, -1, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http1_msg m;
        const char *l = cases[i].line;
        int ln = (int)strcspn(l, "\r"); /* the request line names the case */
        is_int(parse(&m, l, 0), cases[i].r, "%.*s: result", ln, l);
        if (cases[i].r == HTTP1_ERROR) {
            is_int(m.error, cases[i].error, "%.*s: answered with %d", ln, l, cases[i].error);
            continue;
        }
        is_int(m.minor, cases[i].minor, "%.*s: processed as 1.%d", ln, l, cases[i].minor);
        is_int(!!(m.flags & H1_KEEP_ALIVE), cases[i].keep_alive, "%.*s: keep-alive", ln, l);
    }
}

int main(void)
{
    test_versions();
    test_has_ctl();
    test_kinds();
    test_ctl();
    return tap_done();
}
