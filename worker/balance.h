/* Balancer: picks a server of an upstream for one request attempt.
 * Smooth weighted round robin (per worker, as nginx), least_conn over the
 * active counts of all workers (shared memory), ip_hash; backup servers only
 * when no primary is usable; `down` and max_conns respected; passive health
 * (max_fails within fail_timeout marks a server down for fail_timeout). */
#ifndef PORTICO_BALANCE_H
#define PORTICO_BALANCE_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct conf_upstream;
struct conf_server;
struct shm;

struct balance_peer {
    int64_t current_weight; /* smooth weighted round robin state */
    unsigned fails;         /* failures in the current window */
    int64_t fail_start;     /* start of the window, ms */
    int64_t down_until;     /* passive health: unusable until then, ms */
};

struct balance {
    struct balance_peer *peers; /* indexed by conf_server.id */
    unsigned npeers;
    const struct shm *shm;
};

/* Allocate per-server state for CFG. Returns 0, or -1 when out of memory. */
int balance_init(struct balance *b, const struct config *cfg, const struct shm *shm);
void balance_free(struct balance *b);

/* Pick a server of U for an attempt at time NOW (ms). HASH is the client
 * address hash (ip_hash). TRIED has bit (i % 64) set for server index i of U
 * already tried by this request; those are skipped. Returns the server's
 * index in U->servers, or -1 when none is usable (the caller answers 503). */
int balance_pick(struct balance *b, const struct conf_upstream *u, uint32_t hash, uint64_t tried,
                 int64_t now);

/* True when a pick for U that skips TRIED could find a server now (one not
 * down and under max_conns, failed ones included: a pick may reset them).
 * No side effect: callers ask before giving up a response they hold. */
bool balance_any_left(const struct balance *b, const struct conf_upstream *u, uint64_t tried,
                      int64_t now);

/* Passive health: report the outcome of an attempt on S at NOW. */
void balance_report(struct balance *b, const struct conf_server *s, bool ok, int64_t now);

/* True when S may take a request now (not down, not failed, under max_conns). */
bool balance_usable(const struct balance *b, const struct conf_server *s, int64_t now);

#endif
