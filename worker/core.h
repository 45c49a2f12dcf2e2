/* The worker's shared types: the worker itself, client connections (conn),
 * upstream connections (uconn) and the exchange that ties a request to its
 * upstream attempt. Private to worker/; each module owns the functions named
 * after it. Everything here lives in one process: no locking. */
#ifndef PORTICO_WORKER_CORE_H
#define PORTICO_WORKER_CORE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/uio.h>

#include "common/config.h"
#include "common/pool.h"
#include "common/timer.h"
#include "worker/balance.h"
#include "worker/http1.h"
#include "worker/worker.h"

/* What an epoll event's data.ptr points at: every registered object starts
 * with this tag. */
enum ev_kind { EV_LISTEN, EV_CLIENT, EV_UPSTREAM, EV_CHANNEL };
struct ev {
    uint8_t kind;
};

/* A fixed-size byte buffer from the worker's free list. Bytes [lo, hi) are
 * unconsumed; [0, lo) has been parsed (and may still be referenced by an
 * out queue until it drains). */
struct buf {
    struct buf *next;
    uint32_t lo, hi, cap;
    char data[];
};

/* Pending output: a few slices written with one writev. */
#define OUT_MAX 6
struct out {
    struct iovec iov[OUT_MAX];
    uint8_t i, n; /* iov[i..n) still to write */
};

enum conn_state {
    CONN_IDLE,      /* keep-alive, waiting for a request; holds no buffer */
    CONN_HEAD,      /* reading a request head */
    CONN_PROXY,     /* an exchange with an upstream is running */
    CONN_RESPOND,   /* writing a response portico made itself */
    CONN_LINGER,    /* shut down for writing, reading to EOF before close */
    CONN_HANDSHAKE, /* TLS handshake before the first request */
    CONN_CLOSED,    /* waiting to be freed after the event batch */
};

struct conn {
    struct ev ev;
    uint8_t state;
    bool can_read, can_write; /* edge-triggered readiness not yet used up */
    bool close_after;         /* answer with Connection: close, then close */
    bool rdhup;               /* the peer's FIN is queued: keep reading to EOF */
    bool had_bytes;           /* any byte of the current request seen */
    int fd;
    int32_t ip_slot; /* counted for max_connections_per_ip in this shm slot; -1 = not */
    const struct worker_listen *wl;
    struct buf *in;
    struct exchange *x;
    struct timer timer;
    uint32_t nrequests;
    bool posted;                        /* in worker.posted: runs again next loop turn */
    struct conn *next;                  /* free list / graveyard */
    struct conn *live_prev, *live_next; /* every open connection, for draining */
    struct tls_conn *tls;               /* TLS listeners only; NULL on plaintext ones */
    union {
        struct sockaddr sa;
        struct sockaddr_in sin;
        struct sockaddr_in6 sin6;
    } peer;
};

enum uconn_state {
    UCONN_CONNECTING,
    UCONN_HANDSHAKE, /* TLS (tls = on): connected, handshake running */
    UCONN_ACTIVE,    /* serving an exchange */
    UCONN_IDLE,      /* in the keep-alive pool */
    UCONN_CLOSED,
};

struct uconn {
    struct ev ev;
    uint8_t state;
    bool can_read, can_write;
    bool reused; /* came from the pool: a failure before any byte is retryable */
    bool rdhup;  /* the server's FIN is queued: keep reading to EOF */
    int fd;
    const struct conf_server *server;
    struct buf *in;
    struct exchange *x;
    struct timer timer;
    uint32_t nrequests;
    struct uconn *next;    /* pool list / graveyard */
    struct tls_uconn *tls; /* tls = on upstreams only; kept while pooled */
};

/* A request being proxied: parser state for both directions, the rewritten
 * heads and the output queues. Pooled; only active requests hold one. */
struct exchange {
    struct conn *c;
    struct uconn *u;
    const struct conf_route *route;
    struct http1_msg req, resp;
    struct buf *reqhead;  /* rewritten request head (kept for retries) */
    struct buf *resphead; /* response head or a local response */
    struct out up_out, cl_out;
    char req_chunk[24], resp_chunk[24]; /* chunk-size lines being written */
    bool req_body_done, req_sent, resp_head_done, resp_done, body_forwarded;
    uint32_t body_lo, body_hi; /* undelivered body bytes in c->in, for a retry */
    bool req_chunked_out, resp_chunked_out, resp_close_out;
    bool client_keepalive, head_request;
    uint8_t attempts;
    uint16_t
        fail_status; /* of the last failed attempt: what the client gets when no server is left */
    uint64_t tried;
    uint16_t status; /* sent to the client, for the log */
    uint64_t resp_bytes;
    int64_t start_ms, upstream_start_ms, upstream_ms;
    int64_t rate_start; /* body_min_rate window start; 0 = starts at the next body wait */
    uint64_t rate_base; /* body bytes already seen then */
    const struct conf_server *server; /* last one tried, for the log */
    char rid[40];
    uint8_t rid_len;
    char log_req[512]; /* "GET /path HTTP/1.1", kept for the access log */
    uint16_t log_req_len;
    char log_meta[512]; /* host \0 referer \0 user-agent */
    uint16_t log_meta_len;
    struct exchange *next;             /* free list */
    struct http1_header req_headers[]; /* then the response's */
};

struct lsock {
    struct ev ev;
    int fd;
    const struct worker_listen *wl;
    bool paused;
};

struct upool {
    struct uconn *idle;
    unsigned nidle;
};

struct worker {
    const struct config *cfg;
    struct shm *shm;
    unsigned slot;
    unsigned row; /* shm row of connection counts (struct worker_args) */
    int epfd;
    struct ev channel_ev;
    int channel;
    bool stopping, draining, accept_backoff;
    int64_t emfile_logged; /* when running out of descriptors was last logged */
    /* max_connections_per_ip: refusals (and admissions the full address
     * table could not count) since they were last logged, once per 10 s. */
    uint64_t perip_refused, perip_uncounted;
    int64_t perip_logged;
    char perip_last[64]; /* "ADDR on NAME" of the latest refusal */
    struct conn *live;
    int64_t drain_deadline;
    int64_t now;       /* monotonic ms, once per loop turn */
    int64_t wall_sec;  /* for Date and logs */
    char date[40];     /* "Thu, 03 Dec 2026 16:29:53 GMT" */
    int64_t log_sec;   /* second of the cached access-log times */
    char clf_time[32]; /* "03/Dec/2026:16:29:53 +0000" */
    char iso_time[32]; /* "2026-12-03T16:29:53Z" */
    struct timers timers;
    struct timer tick; /* once a second: flush logs */
    struct lsock *ls;
    unsigned nls;
    unsigned nconns;
    struct pool bufs[2]; /* by enum buf_class */
    uint32_t buf_size[2];
    struct pool exchanges;
    uint16_t max_req_headers, max_resp_headers;
    struct conn *dead_conns;
    struct pool conns; /* client connection structs: no malloc per connection */
    struct uconn *dead_uconns;
    struct upool *pools; /* by conf_server.id */
    struct balance bal;
    uint64_t rid_seed, rid_counter;
    struct tls_worker *tls;            /* NULL without TLS listeners or upstreams */
    struct tls_upstream_worker *tlsup; /* NULL without TLS upstreams */
    int64_t hs_spent;                  /* ns of TLS handshake steps in this loop turn */
    /* Connections that used up their share of a loop turn with work left
     * (conn_post): run first in the next turn, whose events are polled
     * without sleeping while any wait. Grows, never shrinks. */
    struct conn **posted;
    unsigned nposted, posted_cap;
    /* For the exit line only: plain counters of this process, one
     * increment each on the hot path (conn_exchange_done, conn_accept). */
    uint64_t requests; /* exchanges ended: proxied, return, redirect, errors */
    uint64_t accepted; /* client connections taken on */
};

/* worker.c */
/* A buffer from the free list: BUF_SMALL (heads of ordinary requests) or
 * BUF_BIG (streaming, large heads). NULL when out of memory. */
enum buf_class { BUF_SMALL, BUF_BIG };
struct buf *worker_buf_get(struct worker *w, enum buf_class cls);
/* Return *B to its free list and clear *B; NULL is fine. */
void worker_buf_put(struct worker *w, struct buf **b);
/* Move B's bytes into a big buffer (offsets stay valid). 0, or -1. */
int worker_buf_grow(struct worker *w, struct buf **b);
struct exchange *worker_exchange_get(struct worker *w);
void worker_exchange_put(struct worker *w, struct exchange *x);
int worker_epoll_add(struct worker *w, int fd, struct ev *ev);
void worker_accept_resume(struct worker *w);

/* conn.c */
void conn_accept(struct worker *w, int fd, const struct worker_listen *wl,
                 const struct sockaddr *sa, socklen_t len);
void conn_event(struct worker *w, struct conn *c, uint32_t events);
void conn_timeout(struct worker *w, struct conn *c);
void conn_close(struct worker *w, struct conn *c, const char *reason);
/* C has work left but has had its share of this loop turn (its socket may
 * still hold bytes that edge-triggered epoll will not announce again): run
 * it again next turn. False only when out of memory: then carry on now. */
bool conn_post(struct worker *w, struct conn *c);
/* Run the connections posted before this call; those they post wait a turn. */
void conn_run_posted(struct worker *w);
void conn_set_state(struct conn *c, enum conn_state s);
const char *conn_state_str(enum conn_state s);
/* The exchange is over: keep the connection alive or close it. */
void conn_exchange_done(struct worker *w, struct conn *c, bool keepalive);
/* Send a response portico makes itself (error, return, redirect). */
void conn_respond(struct worker *w, struct conn *c, int status, const char *extra_headers,
                  const char *body, size_t body_len);
void conn_drain(struct worker *w, struct conn *c);
/* Run the state machine after another object (the upstream side) changed it. */
void conn_kick(struct worker *w, struct conn *c);
/* Log max_connections_per_ip refusals not yet logged, at most every 10 s. */
void conn_perip_log(struct worker *w);
/* When a request body stalls its connection: body_timeout after the last
 * read, and no later than what body_min_rate allows since the body began. */
int64_t conn_body_deadline(struct worker *w, struct exchange *x);

/* proxy.c */
void proxy_start(struct worker *w, struct exchange *x);
void proxy_progress(struct worker *w, struct exchange *x);
void proxy_upstream_event(struct worker *w, struct uconn *u, uint32_t events);
void proxy_upstream_timeout(struct worker *w, struct uconn *u);
void proxy_abort(struct worker *w, struct exchange *x, const char *reason);

/* upstream.c */
/* A connection to S: pooled unless FRESH, else a new non-blocking connect.
 * NULL with *err = errno when the connect failed at once. */
struct uconn *upstream_get(struct worker *w, const struct conf_server *s, bool fresh, int *err);
void upstream_release(struct worker *w, struct uconn *u, bool reusable);
/* U's TCP connect completed: UCONN_ACTIVE, or UCONN_HANDSHAKE when its
 * upstream speaks TLS. 0, or -1 when TLS could not be set up (logged). */
int upstream_connected(struct worker *w, struct uconn *u);
void upstream_idle_event(struct worker *w, struct uconn *u, uint32_t events);
void upstream_close(struct worker *w, struct uconn *u, const char *reason);

/* out.c-like helpers in conn.c: write an out queue. */
enum io_result { IO_OK, IO_AGAIN, IO_ERROR };
enum io_result out_write(int fd, struct out *o, bool *can_write);
/* The client side, through TLS on TLS listeners. conn_read is read(2) on
 * the plaintext (EINTR retried, can_read cleared when drained or at EAGAIN);
 * conn_write writes O like out_write. */
ssize_t conn_read(struct conn *c, void *p, size_t n);
enum io_result conn_write(struct worker *w, struct conn *c, struct out *o);
/* upstream.c, the upstream side: read the response bytes of U (through TLS when on): read(2)
 * semantics, EINTR retried, u->can_read cleared when drained or at EAGAIN. */
ssize_t upstream_read(struct worker *w, struct uconn *u, void *p, size_t n);
/* Write O to U (through TLS when on), like out_write. */
enum io_result upstream_write(struct worker *w, struct uconn *u, struct out *o);
static inline bool out_pending(const struct out *o)
{
    return o->i < o->n;
}
static inline void out_reset(struct out *o)
{
    o->i = o->n = 0;
}
static inline void out_add(struct out *o, const void *p, size_t n)
{
    if (n) {
        if (o->n >= OUT_MAX) abort(); /* a framing bug; never silently drop bytes */
        o->iov[o->n].iov_base = (void *)p;
        o->iov[o->n].iov_len = n;
        o->n++;
    }
}

/* access.c */
void access_log_exchange(struct worker *w, struct exchange *x);

/* respond.c */
/* Build a complete response into B. Returns its length. */
size_t respond_build(struct worker *w, struct buf *b, int status, const char *rid, size_t rid_len,
                     bool close, const char *extra_headers, const char *body, size_t body_len,
                     bool head);
const char *respond_reason(int status);

#endif
