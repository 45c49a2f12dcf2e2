/* TLS session-ticket keys shared by every worker of every master: one entry
 * per TLS listener name in the shared memory (common/shm.h), holding the
 * previous, current and next key. A master writes them (creates an entry
 * before forking workers, rotates on its timer); workers only read, checking
 * the region's ticket generation at their tick and copying an entry under
 * its seqlock. Tickets are issued with the current key and accepted under
 * any of the three: previous so a ticket lives until its key is two
 * rotations old, next so a worker that saw a rotation before another one
 * did is understood by it. Keys never leave this module and the worker's
 * ticket code, and are never logged (key names are: they travel in clear in
 * every ticket). No mbedTLS here: the worker side is worker/tls_tickets.c. */
#ifndef PORTICO_TICKET_KEYS_H
#define PORTICO_TICKET_KEYS_H

#include <stdbool.h>
#include <stdint.h>

#define TICKET_NAME_LEN 4
#define TICKET_KEY_LEN 32          /* AES-256-GCM */
#define TICKET_LISTENER_LEN 64     /* stored listener name, NUL included */
#define TICKET_MAX_LIFETIME 604800 /* seconds: RFC 8446 4.6.1 */

enum { TICKET_PREV, TICKET_CUR, TICKET_NEXT, TICKET_SLOTS };

struct ticket_key {
    uint8_t name[TICKET_NAME_LEN];
    uint8_t key[TICKET_KEY_LEN];
    uint32_t reserved;
    int64_t created_ms; /* wall clock; 0 = no key in this slot */
};

/* One listener's keys. seq is odd while a master writes the rest. */
struct ticket_entry {
    uint32_t seq;
    uint32_t reserved;
    char listener[TICKET_LISTENER_LEN]; /* "" = free */
    int64_t rotated_ms;                 /* wall clock when cur became current */
    int64_t rotation_ms;                /* the period its writer rotates with */
    struct ticket_key keys[TICKET_SLOTS];
};

struct shm;
struct config;

/* ---- pure pieces (unit-tested) ---- */

/* The slot whose key is named NAME among the keys present, or -1. */
int ticket_slot_select(const struct ticket_entry *e, const uint8_t name[TICKET_NAME_LEN]);

/* What ENTRY needs at NOW with period ROTATION_MS: 0 nothing, 1 one
 * rotation (prev <- cur <- next <- fresh; also when the clock went back),
 * 2 new keys throughout (empty, or its current key is already past its two
 * periods). */
int ticket_due(const struct ticket_entry *e, int64_t rotation_ms, int64_t now_ms);

/* Seconds a ticket issued now under E's current key stays acceptable: until
 * that key stops being previous, rotated + 2 periods. At least 1, at most
 * TICKET_MAX_LIFETIME. */
uint32_t ticket_lifetime(const struct ticket_entry *e, int64_t now_ms);

/* The stored form of a listener's name: itself when it fits, else a prefix
 * and a hash of the whole (so two long names never share keys). */
void ticket_listener_key(const char *name, char out[TICKET_LISTENER_LEN]);

/* ---- master ---- */

/* Make sure every TLS listener of CFG with tickets has an entry with
 * current keys (new listeners get fresh keys; a listener of the same name
 * keeps its own: reload and binary upgrade keep tickets valid). Rotates
 * what is due. 0, or -1 logged (no room, or another master holds the lock
 * too long): tickets still work, within this master only the keys present. */
int ticket_keys_sync(struct shm *s, const struct config *cfg);

/* The master's timer: rotate what is due. Returns the ms until the next
 * rotation of CFG's listeners, or -1 when none has tickets. */
int ticket_keys_tick(struct shm *s, const struct config *cfg);

/* ---- worker ---- */

/* Index of the entry of listener NAME, or -1. */
int ticket_entry_find(const struct shm *s, const char *name);
/* Copy entry IDX consistently (seqlock). 0, or -1 when the entry is no
 * longer NAME's (reused: find it again). */
int ticket_entry_read(const struct shm *s, unsigned idx, const char *name,
                      struct ticket_entry *out);
/* Bumped after every write of any entry: a worker that saw the same value
 * at its last tick has nothing to do. */
uint32_t ticket_generation(const struct shm *s);

#endif
