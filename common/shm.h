/* The shared-memory region: one memfd, MAP_SHARED, created by the master
 * before the first fork and inherited by every worker (and, later, by a new
 * master on binary upgrade). It holds offsets, never pointers. Each worker
 * slot owns one row of per-server active-connection counts and is its only
 * writer (relaxed atomics); least_conn and max_conns read the column sums. */
#ifndef PORTICO_SHM_H
#define PORTICO_SHM_H

#include <stdint.h>

#define SHM_MAGIC 0x70727463u /* "prtc" */
#define SHM_VERSION 1u
#define SHM_MAX_SLOTS 128
#define SHM_MAX_SERVERS 4096

struct shm_header {
    uint32_t magic, version;
    uint32_t max_slots, max_servers;
    uint64_t size;
    uint64_t conns_off; /* uint32_t [max_slots][max_servers] */
    uint32_t slots_used; /* high-water mark of slots that counted: sums stop there */
    uint32_t reserved;
};

struct shm {
    int fd;
    struct shm_header *hdr;
    uint32_t *conns;
};

/* Create a fresh region. Returns 0, or -1 with errno. Untouched pages cost
 * no memory, so the fixed maximum size is free until used. */
int shm_create(struct shm *s);
/* Map an inherited region from FD, checking magic, version and size.
 * Returns 0, or -1 (errno EINVAL when the region is not ours). */
int shm_attach(struct shm *s, int fd);
void shm_detach(struct shm *s);

/* Active upstream connections of server ID, summed over every slot. */
uint32_t shm_server_active(const struct shm *s, unsigned id);
/* Count one more / one fewer connection of SLOT to server ID. */
void shm_conn_inc(struct shm *s, unsigned slot, unsigned id);
void shm_conn_dec(struct shm *s, unsigned slot, unsigned id);
/* Zero a slot's row: the master calls it when the slot's worker died. */
void shm_slot_clear(struct shm *s, unsigned slot);

#endif
