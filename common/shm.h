/* The shared-memory region: one memfd, MAP_SHARED, created by the master
 * before the first fork and inherited by every worker (and, later, by a new
 * master on binary upgrade). It holds offsets, never pointers. Each live
 * worker owns one row of per-server active-connection counts and is its only
 * writer (relaxed atomics); least_conn and max_conns read the column sums.
 * Rows are not worker slots: two generations (reload) or two masters
 * (binary upgrade) overlap, so a master claims a free row per forked worker
 * from the owner table below and releases it when it reaps that worker. */
#ifndef PORTICO_SHM_H
#define PORTICO_SHM_H

#include <stdint.h>

struct ticket_entry;

#define SHM_MAGIC 0x70727463u /* "prtc" */
/* 3: per-address table; 4: TLS ticket keys after it. A master inheriting
 * another version starts a fresh region (shm_attach fails with EPROTO). */
#define SHM_VERSION 4u
#define SHM_MAX_SLOTS 128 /* worker slots per master (config limit) */
#define SHM_MAX_ROWS 512  /* rows: enough for two masters with two generations each */
#define SHM_MAX_SERVERS 4096
#define SHM_TICKET_ENTRIES 256 /* TLS listeners with ticket keys (common/ticket_keys.h) */

struct shm_header {
    uint32_t magic, version;
    uint32_t max_rows, max_servers;
    uint64_t size;
    uint64_t conns_off; /* uint32_t [max_rows][max_servers] */
    uint32_t rows_used; /* high-water mark of rows that counted: sums stop there */
    uint32_t reserved;
    /* Pid owning each row, 0 when free. Claimed by compare-and-swap, so two
     * masters sharing the region never hand out the same row. */
    int32_t owner[SHM_MAX_ROWS];
    /* The per-address table (common/ipcount.h): ip_slots slots at ip_off,
     * then a uint16_t contribution per slot per row at ipc_off. ip_used[row]
     * is set once a row counted an address, so reconciling a row that never
     * did reads nothing. */
    uint64_t ip_off, ipc_off;
    uint64_t ip_seed; /* keyed hash: clients cannot aim at one probe window */
    uint32_t ip_slots, reserved2;
    uint8_t ip_used[SHM_MAX_ROWS];
    /* TLS ticket keys (common/ticket_keys.h), after the address table. */
    uint64_t tickets_off; /* struct ticket_entry [tickets_max] */
    uint32_t tickets_max;
    uint32_t tickets_gen; /* bumped after each write of an entry */
    int32_t tickets_lock; /* pid of the master writing entries, 0 when none */
    uint32_t reserved3;
};

/* One address slot: word = generation (32) | state (2) | count (30). The
 * key is written while the state is CLAIM, read only while it is USED. */
struct shm_ipslot {
    uint64_t word;
    uint32_t key[5];
    uint32_t claimer; /* row + 1 while CLAIM: a crashed claimer's slot is freed */
};

struct shm {
    int fd;
    struct shm_header *hdr;
    uint32_t *conns;
    struct shm_ipslot *ip;
    uint16_t *ipc; /* [max_rows][ip_slots] */
    struct ticket_entry *tickets;
};

/* Create a fresh region. Returns 0, or -1 with errno. Untouched pages cost
 * no memory, so the fixed maximum size is free until used. */
int shm_create(struct shm *s);
/* Map an inherited region from FD, checking magic, version and size.
 * Returns 0, or -1 (errno EINVAL when the region is not ours, EPROTO when it
 * is a portico region of another layout version). */
int shm_attach(struct shm *s, int fd);
void shm_detach(struct shm *s);

/* Active upstream connections of server ID, summed over every row. */
uint32_t shm_server_active(const struct shm *s, unsigned id);
/* Count one more / one fewer connection of ROW to server ID. */
void shm_conn_inc(struct shm *s, unsigned row, unsigned id);
void shm_conn_dec(struct shm *s, unsigned row, unsigned id);
/* Zero a row's counts (the owner stays). */
void shm_slot_clear(struct shm *s, unsigned row);

/* Claim the lowest free row for OWNER (a pid, > 0). Returns the row, or -1
 * when every row is owned. The row's counts are zeroed before it is handed
 * out. */
int shm_row_claim(struct shm *s, int32_t owner);
/* Hand a claimed ROW to NEW_OWNER (the master claims, then forks). */
void shm_row_set_owner(struct shm *s, unsigned row, int32_t new_owner);
/* Owner of ROW, 0 when free or out of range. */
int32_t shm_row_owner(const struct shm *s, unsigned row);
/* The owner of ROW is gone: zero its counts (they must not leak into
 * least_conn), then free the row. */
void shm_row_release(struct shm *s, unsigned row);

#endif
