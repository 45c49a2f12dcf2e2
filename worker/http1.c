/* llhttp glue. Strict parsing (no lenient flags): llhttp itself rejects
 * CL+TE, duplicate or malformed Content-Length, a Transfer-Encoding other
 * than a final chunked, bare LF/CR, obs-fold and control bytes. Callbacks
 * only record offsets; the single pause point is the end of a message. */
#include "worker/http1.h"

#include <llhttp.h>
#include <string.h>

_Static_assert(sizeof(llhttp_t) == HTTP1_PARSER_SIZE, "HTTP1_PARSER_SIZE");
#if LLHTTP_VERSION_MAJOR < 9 || (LLHTTP_VERSION_MAJOR == 9 && LLHTTP_VERSION_MINOR < 2) ||         \
    (LLHTTP_VERSION_MAJOR == 9 && LLHTTP_VERSION_MINOR == 2 && LLHTTP_VERSION_PATCH < 1)
#error "llhttp >= 9.2.1 is required (CVE-2024-27982)"
#endif

#define MSG(p) ((struct http1_msg *)(p)->data)
#define OFF(m, at) ((uint32_t)((at) - (m)->base))

static int fail(llhttp_t *p, int status, const char *why)
{
    MSG(p)->error = status;
    MSG(p)->error_reason = why;
    return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
    struct http1_msg *m = MSG(p);
    m->nheaders = 0;
    m->kinds = 0;
    m->flags &= H1_SKIP_BODY | H1_BODY_STARTED;
    m->method_len = m->target_len = m->reason_len = 0;
    return 0;
}

/* Spans of one token may arrive in several calls, across executes; the
 * buffer only grows while a head is incomplete, so they are contiguous. */
static int on_method(llhttp_t *p, const char *at, size_t n)
{
    struct http1_msg *m = MSG(p);
    if (!m->method_len) m->method = OFF(m, at);
    m->method_len += n;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct http1_msg *m = MSG(p);
    if (!m->target_len) m->target = OFF(m, at);
    m->target_len += n;
    return 0;
}

static int on_url_complete(llhttp_t *p)
{
    MSG(p)->flags |= H1_URL_DONE;
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
    struct http1_msg *m = MSG(p);
    if (!m->reason_len) m->reason = OFF(m, at);
    m->reason_len += n;
    return 0;
}

/* After the head, header callbacks carry chunked trailer fields. They are
 * dropped (never forwarded as headers) and not recorded: by then the buffer
 * may have been compacted, so offsets from an earlier read would be stale.
 * llhttp has already checked their syntax. */
#define IN_TRAILERS(m) ((m)->flags & H1_HEAD_DONE)

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct http1_msg *m = MSG(p);
    if (IN_TRAILERS(m)) return 0;
    m->flags |= H1_URL_DONE;
    if (!(m->flags & H1_IN_FIELD)) {
        if (m->nheaders >= m->max_headers)
            return fail(p, p->type == HTTP_REQUEST ? 431 : 502, "too many headers");
        struct http1_header *h = &m->headers[m->nheaders++];
        h->name = OFF(m, at);
        h->name_len = 0;
        h->value = 0;
        h->value_len = 0;
        h->kind = HK_OTHER;
        m->flags |= H1_IN_FIELD;
    }
    struct http1_header *h = &m->headers[m->nheaders - 1];
    if (h->name_len + n > 0xffff)
        return fail(p, p->type == HTTP_REQUEST ? 431 : 502, "header name too long");
    h->name_len += n;
    return 0;
}

/* Names are tokens: OR-ing 0x20 lowercases letters and leaves '-', the only
 * other byte in the names below, unchanged (no token byte ORs into a letter
 * or '-' except its own case pair). K is lower case, N bytes long. */
static bool eq_lower(const char *s, const char *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)(s[i] | 0x20) != (unsigned char)k[i]) return false;
    return true;
}

static enum http1_hkind classify(const char *s, size_t n)
{
#define IS(name, kind)                                                                             \
    if (eq_lower(s, name, n)) return kind
    switch (n) {
    case 2:
        IS("te", HK_TE);
        break;
    case 3:
        IS("via", HK_VIA);
        break;
    case 4:
        IS("host", HK_HOST);
        IS("date", HK_DATE);
        break;
    case 6:
        IS("expect", HK_EXPECT);
        break;
    case 7:
        IS("trailer", HK_TRAILER);
        IS("upgrade", HK_UPGRADE);
        IS("referer", HK_REFERER);
        break;
    case 10:
        IS("connection", HK_CONNECTION);
        IS("keep-alive", HK_KEEP_ALIVE);
        IS("x-upstream", HK_X_UPSTREAM);
        IS("user-agent", HK_USER_AGENT);
        break;
    case 12:
        IS("x-request-id", HK_X_REQUEST_ID);
        break;
    case 14:
        IS("content-length", HK_CONTENT_LENGTH);
        break;
    case 15:
        IS("x-forwarded-for", HK_X_FORWARDED_FOR);
        break;
    case 16:
        IS("x-forwarded-host", HK_X_FORWARDED_HOST);
        IS("proxy-connection", HK_PROXY_CONNECTION);
        break;
    case 17:
        IS("x-forwarded-proto", HK_X_FORWARDED_PROTO);
        IS("transfer-encoding", HK_TRANSFER_ENCODING);
        break;
    }
#undef IS
    return HK_OTHER;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct http1_msg *m = MSG(p);
    m->flags &= ~H1_IN_FIELD;
    if (IN_TRAILERS(m)) return 0;
    struct http1_header *h = &m->headers[m->nheaders - 1];
    h->kind = (uint8_t)classify(m->base + h->name, h->name_len);
    m->kinds |= HK_BIT(h->kind);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct http1_msg *m = MSG(p);
    if (IN_TRAILERS(m)) return 0;
    struct http1_header *h = &m->headers[m->nheaders - 1];
    if (!(m->flags & H1_IN_VALUE)) {
        h->value = OFF(m, at);
        m->flags |= H1_IN_VALUE;
    }
    h->value_len += n;
    return 0;
}

/* A word with a byte below 0x20 or equal to 0x7f is flagged; a clean word
 * may be flagged too (the bytewise check then decides), a dirty one never
 * passes. */
static inline bool word_suspect(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t d = v ^ (ones * 0x7f); /* DEL bytes become zero */
    return (((v - ones * 0x20) & ~v & high) | ((d - ones) & ~d & high)) != 0;
}

/* True when P[0, N) holds a control byte other than HTAB (or DEL). Eight
 * bytes at a time, the last word overlapping, a short value padded with
 * spaces; bytewise only when a word is suspect (a tab, or a real control). */
bool http1_has_ctl(const char *s, uint32_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    uint64_t v;
    bool suspect = false;
    if (n >= 8) {
        for (uint32_t i = 0; i + 8 <= n && !suspect; i += 8) {
            memcpy(&v, p + i, 8);
            suspect = word_suspect(v);
        }
        memcpy(&v, p + n - 8, 8);
        suspect = suspect || word_suspect(v);
    } else {
        v = 0x2020202020202020ull;
        memcpy(&v, p, n);
        suspect = word_suspect(v);
    }
    for (uint32_t i = 0; suspect && i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f) return true;
    return false;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct http1_msg *m = MSG(p);
    if (IN_TRAILERS(m)) return 0;
    struct http1_header *h = &m->headers[m->nheaders - 1];
    m->flags &= ~H1_IN_VALUE;
    /* An empty value never reached on_header_value: point it after the name. */
    if (!h->value_len) h->value = h->name + h->name_len;
    /* Defence in depth against obs-fold or stray CR/LF/NUL inside a value. */
    if (http1_has_ctl(m->base + h->value, h->value_len))
        return fail(p, p->type == HTTP_REQUEST ? 400 : 502, "control character in header");
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct http1_msg *m = MSG(p);
    m->flags |= H1_HEAD_DONE;
    m->status = p->status_code;
    m->major = p->http_major;
    m->minor = p->http_minor;
    /* llhttp reads a request line without a version as HTTP/0.9. */
    if (m->major == 0 && p->type == HTTP_REQUEST) return fail(p, 400, "no HTTP version");
    if (m->major != 1)
        return fail(p, p->type == HTTP_REQUEST ? 505 : 502, "unsupported HTTP version");
    /* RFC 9112 2.3: a higher minor version of a major version we implement
     * is processed as the highest we conform to. */
    if (m->minor > 1) m->minor = 1;
    if (p->type == HTTP_RESPONSE && (m->status < 100 || m->status > 599))
        return fail(p, 502, "status code out of range");
    if (p->flags & F_CHUNKED) m->flags |= H1_CHUNKED;
    if (p->flags & F_CONTENT_LENGTH) {
        m->flags |= H1_HAS_LENGTH;
        m->content_length = p->content_length;
    }
    if (p->type == HTTP_REQUEST) {
        if (m->body_limit >= 0 && (m->flags & H1_HAS_LENGTH) &&
            m->content_length > (uint64_t)m->body_limit)
            return fail(p, 413, "body larger than max_body_size");
        if (p->upgrade) m->flags |= H1_UPGRADE;
        /* No Upgrade tunnel yet: parse a request with Upgrade as a plain one. */
        /* 501, not 405: a 405 must list the methods allowed (Allow), and
         * CONNECT is refused on every route alike. */
        return p->method == HTTP_CONNECT ? fail(p, 501, "CONNECT is not supported") : 0;
    }
    if ((m->flags & H1_SKIP_BODY) || m->status == 204 || m->status == 304 ||
        (m->status >= 100 && m->status < 200))
        return 1;
    /* Decided once, from the head: a trailer field (even a Transfer-Encoding
     * one) changes llhttp's flags later but never the framing. */
    if (llhttp_message_needs_eof(p)) m->flags |= H1_NEEDS_EOF;
    return 0;
}

/* Squeeze body bytes down to dec_end: for chunked bodies this removes the
 * chunk framing in place; for Content-Length bodies it is a no-op. */
static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct http1_msg *m = MSG(p);
    uint32_t off = OFF(m, at);
    if (!(m->flags & H1_BODY_STARTED)) {
        m->flags |= H1_BODY_STARTED;
        m->dec_start = m->dec_end = off;
    }
    if (off != m->dec_end) memmove(m->base + m->dec_end, at, n);
    m->dec_end += (uint32_t)n;
    m->body_seen += n;
    if (m->body_limit >= 0 && m->body_seen > (uint64_t)m->body_limit)
        return fail(p, 413, "body larger than max_body_size");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct http1_msg *m = MSG(p);
    if (p->type == HTTP_RESPONSE && m->status >= 100 && m->status < 200 && m->status != 101) {
        /* Interim response (100, 103): dropped; the final one follows. */
        m->flags &= ~H1_HEAD_DONE;
        return 0;
    }
    m->flags |= H1_MSG_DONE;
    if (llhttp_should_keep_alive(p)) m->flags |= H1_KEEP_ALIVE;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http1_init(struct http1_msg *m, bool is_request, struct http1_header *headers,
                uint16_t max_headers)
{
    llhttp_t *p = (llhttp_t *)m->parser;
    uint32_t keep = m->flags & H1_SKIP_BODY;
    memset(m, 0, sizeof(*m));
    llhttp_init(p, is_request ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    /* Any DIGIT.DIGIT version reaches on_headers_complete, which answers
     * 1.x as 1.1 and any other major version with 505 (llhttp alone would
     * refuse 1.2 and 3.0 with a 400 like any malformed line). */
    llhttp_set_lenient_version(p, 1);
    p->data = m;
    m->flags = is_request ? 0 : keep;
    m->headers = headers;
    m->max_headers = max_headers;
    m->body_limit = -1;
}

static enum http1_result parse_error(struct http1_msg *m, llhttp_t *p, llhttp_errno_t e)
{
    /* A status set by fail() stands: llhttp reports an error returned by
     * on_headers_complete as HPE_CB_HEADERS_COMPLETE, not HPE_USER. */
    if (!m->error) {
        m->error = p->type == HTTP_REQUEST ? 400 : 502;
        m->error_reason = llhttp_get_error_reason(p);
        if (!m->error_reason) m->error_reason = llhttp_errno_name(e);
    }
    return HTTP1_ERROR;
}

enum http1_result http1_execute(struct http1_msg *m, char *base, uint32_t from, uint32_t to,
                                uint32_t *stop)
{
    llhttp_t *p = (llhttp_t *)m->parser;
    m->base = base;
    m->flags &= ~H1_BODY_STARTED;
    m->dec_start = m->dec_end = from;
    llhttp_errno_t e = llhttp_execute(p, base + from, to - from);
    if (e == HPE_OK) {
        *stop = to;
        return HTTP1_AGAIN;
    }
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        *stop = OFF(m, llhttp_get_error_pos(p));
        return HTTP1_DONE;
    }
    return parse_error(m, p, e);
}

enum http1_result http1_finish(struct http1_msg *m)
{
    llhttp_t *p = (llhttp_t *)m->parser;
    llhttp_errno_t e = llhttp_finish(p);
    if (e == HPE_OK || e == HPE_PAUSED) return (m->flags & H1_MSG_DONE) ? HTTP1_DONE : HTTP1_ERROR;
    return parse_error(m, p, e);
}

const struct http1_header *http1_find(const struct http1_msg *m, enum http1_hkind kind)
{
    if (!(m->kinds & HK_BIT(kind))) return NULL;
    for (uint16_t i = 0; i < m->nheaders; i++)
        if (m->headers[i].kind == kind) return &m->headers[i];
    return NULL;
}

const char *http1_method_name(const struct http1_msg *m)
{
    return llhttp_method_name((llhttp_method_t)((const llhttp_t *)m->parser)->method);
}

bool http1_is_connect(const struct http1_msg *m)
{
    return ((const llhttp_t *)m->parser)->method == HTTP_CONNECT;
}

const char *http1_library_version(void)
{
#define STR2(x) #x
#define STR(x) STR2(x)
    return STR(LLHTTP_VERSION_MAJOR) "." STR(LLHTTP_VERSION_MINOR) "." STR(LLHTTP_VERSION_PATCH);
}
