/* Session tickets of one TLS listener in one worker: the listener's three
 * shared keys (common/ticket_keys.h) installed as AES-256-GCM contexts,
 * and the mbedTLS ticket write/parse callbacks that use them. Part of the
 * TLS glue: only tls.c and tls_tickets.c include it. */
#ifndef PORTICO_TLS_TICKETS_H
#define PORTICO_TLS_TICKETS_H

#include <mbedtls/ssl.h>

struct shm;
struct tls_tickets;

/* After fork: the keys of LISTENER from SHM, IVs from RNG. NULL (logged)
 * when the master made no keys for it: the listener then issues no
 * tickets. Every object made is refreshed by tls_tick (worker/tls.h). */
struct tls_tickets *tls_tickets_new(struct shm *shm, const char *listener, mbedtls_f_rng_t *rng,
                                    void *rng_ctx);

/* Make CONF issue and accept tickets with T's keys. */
void tls_tickets_conf(struct tls_tickets *t, mbedtls_ssl_config *conf);

#endif
