/* TLS glue: the only module that includes mbedTLS. Server contexts are built
 * by the master while it loads the config (certificates, keys, ticket key),
 * inherited by workers across fork; each worker seeds its own DRBG and PSA
 * state after the fork (tls_worker_init). Session-ticket keys are in the
 * shared memory (common/ticket_keys.h), installed by worker/tls_tickets.c. */
#ifndef PORTICO_TLS_H
#define PORTICO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct config;
struct conf_listener;
struct tls_server;
struct worker;
struct conn;
struct out;

/* "3.6.x": the mbedTLS version built in. */
const char *tls_library_version(void);

/* How tls_server_new reports a problem: LINE is the config line it belongs
 * to; WARNING problems do not fail the load. */
typedef void tls_report_fn(void *arg, int line, bool warning, const char *msg);

/* Build listener L's server context: parse each "CERT KEY" of
 * L->certificates (LINES[i] is its config line), check each key matches its
 * certificate, warn about expired ones, set protocols, ciphers, groups, ALPN,
 * SNI. NULL after reporting at least one error.
 * Owned by the caller: tls_server_free. */
struct tls_server *tls_server_new(const struct conf_listener *l, const int *lines,
                                  tls_report_fn *report, void *arg);
void tls_server_free(struct tls_server *s);

/* In a worker after fork: PSA, a DRBG seeded from the kernel, ticket keys of
 * every TLS listener. 0, or -1 with a message logged. */
int tls_worker_init(struct worker *w);
/* The worker's DRBG (an mbedtls_ctr_drbg_context, for mbedtls_ctr_drbg_random)
 * for the other TLS glue; NULL before tls_worker_init or without TLS. */
void *tls_worker_rng(struct worker *w);
/* The worker's tick: install ticket keys a master rotated (worker/tls_tickets.c). */
void tls_tick(struct worker *w);

/* A connection's TLS state, for a connection accepted on a TLS listener.
 * 0, or -1 (out of memory; logged). Freed by tls_conn_free. */
int tls_conn_new(struct worker *w, struct conn *c);
/* Send close_notify when the handshake completed and no I/O failed, then
 * free; NULL c->tls is fine. */
void tls_conn_free(struct conn *c);
/* Send close_notify now (before a lingering close); best effort. */
void tls_conn_notify(struct conn *c);

/* Run the handshake: 1 done, 0 waiting (can_read/can_write cleared), -1
 * failed (logged at debug). */
int tls_handshake(struct worker *w, struct conn *c);
/* Like read(2) on the plaintext: >0 bytes, 0 at EOF or close_notify, -1 with
 * errno EAGAIN (c->can_read cleared) or EIO. Keeps c->can_read true while
 * decrypted or buffered bytes remain. */
ssize_t tls_read(struct conn *c, void *p, size_t n);
/* Write out queue O as full-size records. IO_OK (all written), IO_AGAIN
 * (c->can_write cleared; the same bytes are retried later) or IO_ERROR. */
int tls_write(struct worker *w, struct conn *c, struct out *o);
/* The socket became writable: a read that stopped because mbedTLS had to
 * write first may go on (sets c->can_read). */
void tls_writable(struct conn *c);
/* "TLSv1.3" etc. for logs; "" when not TLS. */
const char *tls_conn_version(const struct conn *c);
/* The ALPN protocol agreed, or NULL. */
const char *tls_conn_alpn(const struct conn *c);

#endif
