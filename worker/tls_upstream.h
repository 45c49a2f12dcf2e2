/* Upstream TLS (tls = on in an [upstream]): the client side of mbedTLS. The
 * master builds one client context per upstream while it loads the config
 * (CA chain, verification, ALPN); workers inherit it across fork, set their
 * own DRBG on it (tls_upstream_worker_init), and keep one resumable session
 * per server. Like tls.c, this file includes mbedTLS; nothing else does. */
#ifndef PORTICO_TLS_UPSTREAM_H
#define PORTICO_TLS_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "worker/tls.h" /* tls_report_fn */

struct config;
struct conf_upstream;
struct tls_client;
struct worker;
struct uconn;
struct out;

/* The system CA bundle used when tls_verify is on and tls_ca is not set. */
#define TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

/* Build upstream U's client context (U->tls must be on): load the CA chain
 * (tls_ca or the system bundle; shared with an earlier upstream of C that
 * names the same file), check tls_sni, set verification, ALPN http/1.1 and
 * session tickets. Problems are reported with their config line; NULL after
 * at least one error. Owned by the caller: tls_client_free. */
struct tls_client *tls_client_new(const struct config *c, const struct conf_upstream *u,
                                  tls_report_fn *report, void *arg);
void tls_client_free(struct tls_client *t);

/* In a worker after fork, after tls_worker_init: the worker's DRBG on every
 * client context, an empty session slot per server. 0, or -1 logged. */
int tls_upstream_worker_init(struct worker *w);

/* Start TLS on U, whose TCP connect just completed: 0, or -1 (out of
 * memory; logged). The handshake then runs in tls_upstream_handshake. */
int tls_upstream_new(struct worker *w, struct uconn *u);
/* Send close_notify when the connection is clean, then free; NULL u->tls
 * is fine. Call before closing the socket. */
void tls_upstream_free(struct worker *w, struct uconn *u);

/* Run the handshake: 1 done, 0 waiting (can_read/can_write cleared), -1
 * failed, -2 the server's certificate was refused; on failure WHY (N bytes)
 * says why, naming mbedTLS's reason. */
int tls_upstream_handshake(struct worker *w, struct uconn *u, char *why, size_t n);
/* Like read(2) on the plaintext: >0 bytes, 0 at close_notify or EOF, -1 with
 * errno EAGAIN (u->can_read cleared) or EIO. Keeps u->can_read true while
 * decrypted or read-ahead bytes remain. Saves session tickets on the way. */
ssize_t tls_upstream_read(struct worker *w, struct uconn *u, void *p, size_t n);
/* Write out queue O in full-size records: IO_OK, IO_AGAIN (u->can_write
 * cleared; retried later with the same bytes) or IO_ERROR. */
int tls_upstream_write(struct worker *w, struct uconn *u, struct out *o);
/* The socket became writable: a read that waited for a write may go on. */
void tls_upstream_writable(struct uconn *u);
/* Bytes arrived on a pooled idle connection (or remain after a response):
 * true when they were only TLS housekeeping (a session ticket) and the
 * connection stays usable; false when it must be closed (close_notify, EOF,
 * data, an error). */
bool tls_upstream_idle_read(struct worker *w, struct uconn *u);
/* True when decrypted or read-ahead bytes are still unread: the connection
 * cannot go back to the pool. */
bool tls_upstream_pending(const struct uconn *u);
/* "TLSv1.3" etc., and whether the session was resumed, for debug logs. */
const char *tls_upstream_version(const struct uconn *u);

#endif
