/* HTTP/1.1 parsing glue: the only module that includes llhttp. A message
 * (request or response) is parsed in place in a caller-owned buffer that
 * must not move while the head is incomplete: every slice is an offset into
 * it. Body bytes are decoded in place (chunk framing squeezed out), so the
 * caller forwards one contiguous region per buffer without copying. */
#ifndef PORTICO_HTTP1_H
#define PORTICO_HTTP1_H

#include <stdbool.h>
#include <stdint.h>

#define HTTP1_PARSER_SIZE 96 /* sizeof(llhttp_t), checked in http1.c */

/* Header names the proxy acts on, recognised once as each name completes, so
 * that later stages switch on a kind instead of comparing strings. */
enum http1_hkind {
    HK_OTHER,
    HK_HOST,
    HK_CONNECTION,
    HK_KEEP_ALIVE,
    HK_PROXY_CONNECTION,
    HK_TE,
    HK_TRAILER,
    HK_TRANSFER_ENCODING,
    HK_UPGRADE,
    HK_CONTENT_LENGTH,
    HK_EXPECT,
    HK_X_FORWARDED_FOR,
    HK_X_FORWARDED_PROTO,
    HK_X_FORWARDED_HOST,
    HK_VIA,
    HK_X_REQUEST_ID,
    HK_X_UPSTREAM,
    HK_DATE,
    HK_REFERER,
    HK_USER_AGENT,
    HK_COUNT
};
#define HK_BIT(k) (1u << (k))
/* The hop-by-hop kinds that never cross the proxy (RFC 9110 7.6.1). */
#define HK_HOP_BY_HOP                                                                              \
    (HK_BIT(HK_CONNECTION) | HK_BIT(HK_KEEP_ALIVE) | HK_BIT(HK_PROXY_CONNECTION) | HK_BIT(HK_TE) | \
     HK_BIT(HK_TRAILER) | HK_BIT(HK_TRANSFER_ENCODING) | HK_BIT(HK_UPGRADE))

struct http1_header {
    uint32_t name, value; /* offsets into the buffer */
    uint16_t name_len;
    uint8_t kind; /* enum http1_hkind */
    uint32_t value_len;
};

enum http1_flags {
    H1_HEAD_DONE = 1u << 0,     /* head complete: slices and framing are known */
    H1_MSG_DONE = 1u << 1,      /* message complete (body included) */
    H1_CHUNKED = 1u << 2,       /* Transfer-Encoding: chunked */
    H1_HAS_LENGTH = 1u << 3,    /* Content-Length present */
    H1_KEEP_ALIVE = 1u << 4,    /* the peer allows another message afterwards */
    H1_NEEDS_EOF = 1u << 5,     /* response body runs until the server closes */
    H1_URL_DONE = 1u << 6,      /* request line complete (414 vs 431) */
    H1_IN_FIELD = 1u << 7,      /* inside a header name (span may continue) */
    H1_IN_VALUE = 1u << 8,      /* inside a header value */
    H1_SKIP_BODY = 1u << 9,     /* response to HEAD: no body whatever it says */
    H1_BODY_STARTED = 1u << 10, /* dec_start is set for this execute */
    H1_UPGRADE = 1u << 11,      /* llhttp saw an upgrade/CONNECT */
};

struct http1_msg {
    _Alignas(8) unsigned char parser[HTTP1_PARSER_SIZE];
    char *base; /* the buffer that offsets refer to */
    uint32_t flags;
    uint32_t method, method_len; /* request */
    uint32_t target, target_len;
    uint32_t reason, reason_len; /* response */
    uint16_t status;
    uint8_t major, minor;
    uint64_t content_length; /* when H1_HAS_LENGTH */
    uint64_t body_seen;      /* decoded body bytes so far */
    int64_t body_limit;      /* request: 413 above it; -1 = none */
    struct http1_header *headers;
    uint16_t nheaders, max_headers;
    uint32_t kinds;              /* HK_BIT() of every kind among the headers */
    uint32_t dec_start, dec_end; /* decoded body bytes of the last execute */
    int error;                   /* status to answer when parsing failed */
    const char *error_reason;    /* for the log */
};

enum http1_result { HTTP1_AGAIN, HTTP1_DONE, HTTP1_ERROR };

/* Start a request (is_request) or response parser. HEADERS has room for
 * MAX_HEADERS entries and is owned by the caller. */
void http1_init(struct http1_msg *m, bool is_request, struct http1_header *headers,
                uint16_t max_headers);

/* Parse BASE[from, to). Returns HTTP1_AGAIN (all consumed, need more),
 * HTTP1_DONE (message complete; *stop = offset just after it) or
 * HTTP1_ERROR (m->error holds 400/413/431/502 and m->error_reason why).
 * Body bytes seen are in BASE[dec_start, dec_end) afterwards (when
 * H1_BODY_STARTED). */
enum http1_result http1_execute(struct http1_msg *m, char *base, uint32_t from, uint32_t to,
                                uint32_t *stop);

/* The peer closed: completes a read-until-close body. HTTP1_DONE or
 * HTTP1_ERROR (message truncated). */
enum http1_result http1_finish(struct http1_msg *m);

/* Mark a response as having no body (HEAD request, set before parsing). */
static inline void http1_skip_body(struct http1_msg *m)
{
    m->flags |= H1_SKIP_BODY;
}

/* The first header of KIND (not HK_OTHER) in M, or NULL. */
const struct http1_header *http1_find(const struct http1_msg *m, enum http1_hkind kind);

/* True when S[0, N) holds a control byte other than HTAB, or DEL: the
 * check every header value gets (llhttp's own rules come first). */
bool http1_has_ctl(const char *s, uint32_t n);

/* The method's canonical name ("GET") for a request parser. */
const char *http1_method_name(const struct http1_msg *m);
/* True for CONNECT. */
bool http1_is_connect(const struct http1_msg *m);

/* "9.2.1": the llhttp version built in. */
const char *http1_library_version(void);

#endif
