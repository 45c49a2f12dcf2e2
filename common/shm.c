/* Shared memory: one memfd laid out as [header | pad to a page | conns rows
 * | address table | contributions | TLS ticket entries], each part starting
 * on a page.
 * The header is written once by shm_create and only read afterwards; every
 * count is touched with relaxed __atomic ops, each row by one writer (the
 * worker owning it, or its master once that worker is dead); owners change
 * only by CAS. Every accessor bounds-checks row and id against the header,
 * so a bad index is a no-op. */
#include "common/shm.h"

#include "common/ipcount.h"
#include "common/ticket_keys.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHM_PAGE 4096u

/* Rows start on a page so later header versions can grow in place. */
static uint64_t shm_conns_offset(void)
{
    return (sizeof(struct shm_header) + SHM_PAGE - 1) / SHM_PAGE * SHM_PAGE;
}

_Static_assert(sizeof(struct shm_header) <= SHM_PAGE, "the header fits its page");

static uint64_t shm_size_for(uint64_t conns_off, uint32_t rows, uint32_t servers)
{
    return conns_off + (uint64_t)rows * servers * sizeof(uint32_t);
}

/* The address table follows the connection rows, its contributions follow
 * it; both page-aligned. Untouched pages cost nothing. */
static uint64_t shm_page_up(uint64_t n)
{
    return (n + SHM_PAGE - 1) / SHM_PAGE * SHM_PAGE;
}

static void *shm_mmap(int fd, uint64_t size, int prot)
{
    void *p = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void shm_bind(struct shm *s, int fd, struct shm_header *h)
{
    s->fd = fd;
    s->hdr = h;
    s->conns = (uint32_t *)((char *)h + h->conns_off);
    s->ip = (struct shm_ipslot *)((char *)h + h->ip_off);
    s->ipc = (uint16_t *)((char *)h + h->ipc_off);
    s->tickets = (struct ticket_entry *)((char *)h + h->tickets_off);
}

static int shm_fail(int fd)
{
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

int shm_create(struct shm *s)
{
    /* No MFD_CLOEXEC: on binary upgrade the master execs the new binary and
     * hands it this fd by number, so it must stay open across exec. Workers
     * never exec, and the master execs nothing else. */
    int fd = memfd_create("portico", 0);
    if (fd < 0) return -1;
    uint64_t off = shm_conns_offset();
    uint64_t ip_off = shm_page_up(shm_size_for(off, SHM_MAX_ROWS, SHM_MAX_SERVERS));
    uint64_t ipc_off = shm_page_up(ip_off + (uint64_t)IPCOUNT_SLOTS * sizeof(struct shm_ipslot));
    uint64_t toff =
        shm_page_up(ipc_off + (uint64_t)SHM_MAX_ROWS * IPCOUNT_SLOTS * sizeof(uint16_t));
    uint64_t size = shm_page_up(toff + (uint64_t)SHM_TICKET_ENTRIES * sizeof(struct ticket_entry));
    if (ftruncate(fd, (off_t)size) < 0) return shm_fail(fd);
    struct shm_header *h = shm_mmap(fd, size, PROT_READ | PROT_WRITE);
    if (!h) return shm_fail(fd);
    h->magic = SHM_MAGIC;
    h->version = SHM_VERSION;
    h->max_rows = SHM_MAX_ROWS;
    h->max_servers = SHM_MAX_SERVERS;
    h->size = size;
    h->conns_off = off;
    h->ip_off = ip_off;
    h->ipc_off = ipc_off;
    h->tickets_off = toff;
    h->tickets_max = SHM_TICKET_ENTRIES;
    h->ip_slots = IPCOUNT_SLOTS;
    if (getrandom(&h->ip_seed, sizeof h->ip_seed, 0) != sizeof h->ip_seed)
        h->ip_seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)h;
    shm_bind(s, fd, h);
    return 0;
}

/* A region is ours when its header describes exactly the file we were given. */
static int shm_header_ok(const struct shm_header *h, uint64_t file_size)
{
    if (h->magic != SHM_MAGIC || h->version != SHM_VERSION) return 0;
    if (h->size != file_size) return 0;
    if (h->conns_off < sizeof *h || h->conns_off % sizeof(uint32_t)) return 0;
    if (h->conns_off < SHM_PAGE) return 0; /* the owner table lives below it */
    if (h->max_rows == 0 || h->max_rows > SHM_MAX_ROWS || h->max_servers == 0) return 0;
    uint64_t conns_end = shm_size_for(h->conns_off, h->max_rows, h->max_servers);
    if (h->ip_slots == 0 || (h->ip_slots & (h->ip_slots - 1)) || conns_end > h->ip_off) return 0;
    if (h->ip_off % SHM_PAGE || h->ipc_off % SHM_PAGE) return 0;
    if (h->ip_off + (uint64_t)h->ip_slots * sizeof(struct shm_ipslot) > h->ipc_off) return 0;
    uint64_t ipc_end = h->ipc_off + (uint64_t)h->max_rows * h->ip_slots * sizeof(uint16_t);
    if (ipc_end > h->size || h->tickets_off < ipc_end || h->tickets_off % 8) return 0;
    if (h->tickets_max > SHM_TICKET_ENTRIES) return 0;
    return h->tickets_off + (uint64_t)h->tickets_max * sizeof(struct ticket_entry) <= h->size;
}

/* FD stays the caller's on failure; on success the shm owns it. */
int shm_attach(struct shm *s, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return -1;
    if (st.st_size < (off_t)sizeof(struct shm_header)) {
        errno = EINVAL;
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size;
    struct shm_header *h = shm_mmap(fd, size, PROT_READ | PROT_WRITE);
    if (!h) return -1;
    if (!shm_header_ok(h, size)) {
        /* Another layout of ours (an older or newer binary): the caller
         * can say so, and start afresh. */
        bool other = h->magic == SHM_MAGIC && h->version != SHM_VERSION;
        munmap(h, size);
        errno = other ? EPROTO : EINVAL;
        return -1;
    }
    shm_bind(s, fd, h);
    return 0;
}

/* Unmaps and closes the fd, whether created or attached. */
void shm_detach(struct shm *s)
{
    if (s->hdr) munmap(s->hdr, s->hdr->size);
    if (s->fd >= 0) close(s->fd);
    s->hdr = NULL;
    s->conns = NULL;
    s->ip = NULL;
    s->ipc = NULL;
    s->tickets = NULL;
    s->fd = -1;
}

static uint32_t *shm_cell(const struct shm *s, unsigned row, unsigned id)
{
    const struct shm_header *h = s->hdr;
    if (!h || row >= h->max_rows || id >= h->max_servers) return NULL;
    return &s->conns[(size_t)row * h->max_servers + id];
}

/* Sums every row up to the high-water mark, owned or not (a free row is
 * zero). That touches one page per row, once. */
uint32_t shm_server_active(const struct shm *s, unsigned id)
{
    if (!s->hdr || id >= s->hdr->max_servers) return 0;
    uint64_t sum = 0;
    unsigned used = __atomic_load_n(&s->hdr->rows_used, __ATOMIC_RELAXED);
    if (used > s->hdr->max_rows) used = s->hdr->max_rows;
    for (unsigned row = 0; row < used; row++)
        sum += __atomic_load_n(shm_cell(s, row, id), __ATOMIC_RELAXED);
    return sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
}

void shm_conn_inc(struct shm *s, unsigned row, unsigned id)
{
    uint32_t *c = shm_cell(s, row, id);
    if (!c) return;
    /* Raise the high-water mark first, so a reader summing up to it never
     * misses this row's count. Rare: once per row. */
    uint32_t used = __atomic_load_n(&s->hdr->rows_used, __ATOMIC_RELAXED);
    while (used <= row && !__atomic_compare_exchange_n(&s->hdr->rows_used, &used, row + 1, 1,
                                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

/* A dec after shm_slot_clear (a row whose counts were already forgotten)
 * must not wrap to 4 billion. */
void shm_conn_dec(struct shm *s, unsigned row, unsigned id)
{
    uint32_t *c = shm_cell(s, row, id);
    if (!c) return;
    uint32_t v = __atomic_load_n(c, __ATOMIC_RELAXED);
    while (v > 0 &&
           !__atomic_compare_exchange_n(c, &v, v - 1, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

void shm_slot_clear(struct shm *s, unsigned row)
{
    if (!s->hdr || row >= s->hdr->max_rows) return;
    for (unsigned id = 0; id < s->hdr->max_servers; id++)
        __atomic_store_n(shm_cell(s, row, id), 0, __ATOMIC_RELAXED);
}

int shm_row_claim(struct shm *s, int32_t owner)
{
    if (!s->hdr || owner <= 0) return -1;
    for (unsigned row = 0; row < s->hdr->max_rows; row++) {
        int32_t free_row = 0;
        if (__atomic_load_n(&s->hdr->owner[row], __ATOMIC_RELAXED) != 0) continue;
        if (!__atomic_compare_exchange_n(&s->hdr->owner[row], &free_row, owner, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_RELAXED))
            continue;
        shm_slot_clear(s, row);
        ipcount_row_reconcile(s, row);
        return (int)row;
    }
    return -1;
}

void shm_row_set_owner(struct shm *s, unsigned row, int32_t new_owner)
{
    if (!s->hdr || row >= s->hdr->max_rows) return;
    __atomic_store_n(&s->hdr->owner[row], new_owner, __ATOMIC_RELEASE);
}

int32_t shm_row_owner(const struct shm *s, unsigned row)
{
    if (!s->hdr || row >= s->hdr->max_rows) return 0;
    return __atomic_load_n(&s->hdr->owner[row], __ATOMIC_ACQUIRE);
}

/* Counts first, owner last: a claimer never sees a free row still counting. */
void shm_row_release(struct shm *s, unsigned row)
{
    if (!s->hdr || row >= s->hdr->max_rows) return;
    shm_slot_clear(s, row);
    ipcount_row_reconcile(s, row);
    __atomic_store_n(&s->hdr->owner[row], 0, __ATOMIC_RELEASE);
}
