/* Concurrent client connections per client address, shared by every worker
 * through the shared-memory region (common/shm.h): a fixed-size open-
 * addressing table of (address, scope) -> count, plus one column of
 * contributions per shm row so that a dead worker's counts are taken back
 * by its master (ipcount_row_reconcile) instead of leaking forever. */
#ifndef PORTICO_IPCOUNT_H
#define PORTICO_IPCOUNT_H

#include <stdint.h>
#include <sys/socket.h>

struct shm;

#define IPCOUNT_SLOTS 65536u     /* distinct (address, listener) pairs at once */
#define IPCOUNT_PROBE 32u        /* slots looked at per lookup */
#define IPCOUNT_MAX_LIMIT 65535u /* contributions are 16-bit */

/* Results of ipcount_acquire besides a slot index (>= 0). */
#define IPCOUNT_REFUSED (-1) /* the address is at LIMIT: refuse the connection */
#define IPCOUNT_FULL (-2)    /* no room in the table: admit it, uncounted */

/* The key of a client address: IPv4 (also IPv4-mapped IPv6) as itself,
 * IPv6 by its /64 (one subscriber or host), SCOPE telling listeners apart.
 * Returns 0, or -1 for other families (not counted). */
struct ipcount_key {
    uint32_t w[5];
};
int ipcount_key(struct ipcount_key *k, const struct sockaddr *sa, uint32_t scope);
/* A listener's scope from its name: stable across reloads. */
uint32_t ipcount_scope(const char *name);

/* Count one more connection of K for ROW unless it already has LIMIT.
 * Returns the slot (pass it to ipcount_release), IPCOUNT_REFUSED or
 * IPCOUNT_FULL. Lock-free; safe from every worker at once. */
int ipcount_acquire(struct shm *s, unsigned row, const struct ipcount_key *k, uint32_t limit);
/* The connection counted in SLOT by ROW is gone. */
void ipcount_release(struct shm *s, unsigned row, int slot);
/* Live connections of K, summed over every worker (for tests and logs). */
uint32_t ipcount_get(const struct shm *s, const struct ipcount_key *k);
/* ROW's owner is dead (or ROW is being handed out): subtract whatever it
 * still counted. Idempotent. */
void ipcount_row_reconcile(struct shm *s, unsigned row);

#endif
