/* Per-address connection counts in shared memory. A slot's 64-bit word
 * holds generation | state | count and changes only by CAS, so a lookup
 * that read a key can never count into a slot reused for another address
 * meanwhile (the generation moved). Two workers inserting the same new
 * address at the same instant may get two slots: the limit then holds per
 * slot, a rare and bounded overshoot that never blocks anyone. */
#include "common/ipcount.h"

#include <netinet/in.h>
#include <string.h>

#include "common/shm.h"

enum { ST_FREE = 0, ST_CLAIM = 1, ST_USED = 2 };
#define COUNT_MASK 0x3fffffffull
#define W_GEN(w) ((uint32_t)((w) >> 32))
#define W_STATE(w) ((unsigned)(((w) >> 30) & 3u))
#define W_COUNT(w) ((uint32_t)((w)&COUNT_MASK))
#define W_MAKE(gen, st, n) (((uint64_t)(gen) << 32) | ((uint64_t)(st) << 30) | (uint64_t)(n))

int ipcount_key(struct ipcount_key *k, const struct sockaddr *sa, uint32_t scope)
{
    memset(k, 0, sizeof *k);
    uint8_t *a = (uint8_t *)k->w;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        a[10] = a[11] = 0xff; /* as ::ffff:a.b.c.d, same as a mapped one */
        memcpy(a + 12, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            memcpy(a, &in6->sin6_addr, 16);
        else
            memcpy(a, &in6->sin6_addr, 8); /* the /64 */
    } else {
        return -1;
    }
    k->w[4] = scope;
    return 0;
}

uint32_t ipcount_scope(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 16777619u;
    return h;
}

static uint64_t key_hash(uint64_t seed, const struct ipcount_key *k)
{
    uint64_t h = seed;
    for (int i = 0; i < 5; i++) {
        h = (h ^ k->w[i]) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static int key_equal(const struct shm_ipslot *sl, const struct ipcount_key *k)
{
    for (int i = 0; i < 5; i++)
        if (__atomic_load_n(&sl->key[i], __ATOMIC_RELAXED) != k->w[i]) return 0;
    return 1;
}

static int table_ok(const struct shm *s, unsigned row)
{
    return s->hdr && s->ip && row < s->hdr->max_rows;
}

static uint16_t *contrib(const struct shm *s, unsigned row, unsigned slot)
{
    return &s->ipc[(size_t)row * s->hdr->ip_slots + slot];
}

/* One more for K in the slot at IDX whose word was W (USED, key equal).
 * Returns the slot, IPCOUNT_REFUSED, or -3 when the slot changed owner. The
 * contribution is counted first: a crash between the two then undercounts
 * (admits one more), never leaks a count forever. */
static int count_in(struct shm *s, unsigned row, unsigned idx, uint64_t w, uint32_t limit)
{
    struct shm_ipslot *sl = &s->ip[idx];
    uint32_t gen = W_GEN(w);
    uint16_t *cp = contrib(s, row, idx);
    for (;;) {
        if (W_STATE(w) != ST_USED || W_GEN(w) != gen) return -3;
        if (W_COUNT(w) >= limit) return IPCOUNT_REFUSED;
        __atomic_fetch_add(cp, 1, __ATOMIC_RELAXED);
        if (__atomic_compare_exchange_n(&sl->word, &w, w + 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return (int)idx;
        __atomic_fetch_sub(cp, 1, __ATOMIC_RELAXED);
    }
}

/* Take the free slot IDX (word W) for K with a count of one. */
static int claim(struct shm *s, unsigned row, unsigned idx, uint64_t w, const struct ipcount_key *k)
{
    struct shm_ipslot *sl = &s->ip[idx];
    uint32_t gen = W_GEN(w) + 1;
    if (!__atomic_compare_exchange_n(&sl->word, &w, W_MAKE(gen, ST_CLAIM, 0), 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return -3;
    __atomic_store_n(&sl->claimer, row + 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(contrib(s, row, idx), 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 5; i++)
        __atomic_store_n(&sl->key[i], k->w[i], __ATOMIC_RELAXED);
    __atomic_store_n(&sl->word, W_MAKE(gen, ST_USED, 1), __ATOMIC_RELEASE);
    return (int)idx;
}

int ipcount_acquire(struct shm *s, unsigned row, const struct ipcount_key *k, uint32_t limit)
{
    if (!table_ok(s, row) || limit == 0) return IPCOUNT_FULL;
    if (!__atomic_load_n(&s->hdr->ip_used[row], __ATOMIC_RELAXED))
        __atomic_store_n(&s->hdr->ip_used[row], 1, __ATOMIC_RELEASE);
    unsigned mask = s->hdr->ip_slots - 1;
    unsigned base = (unsigned)key_hash(s->hdr->ip_seed, k) & mask;
    /* A lost race (slot taken or reused under us) rescans; a few rounds
     * are plenty, after that the connection is admitted uncounted. */
    for (int round = 0; round < 4; round++) {
        int free_idx = -1;
        uint64_t free_w = 0;
        int r = -3;
        for (unsigned i = 0; i < IPCOUNT_PROBE && r == -3; i++) {
            unsigned idx = (base + i) & mask;
            uint64_t w = __atomic_load_n(&s->ip[idx].word, __ATOMIC_ACQUIRE);
            if (W_STATE(w) == ST_FREE) {
                if (free_idx < 0) free_idx = (int)idx, free_w = w;
            } else if (W_STATE(w) == ST_USED && key_equal(&s->ip[idx], k)) {
                r = count_in(s, row, idx, w, limit);
            }
        }
        if (r != -3) return r;
        if (free_idx < 0) return IPCOUNT_FULL;
        r = claim(s, row, (unsigned)free_idx, free_w, k);
        if (r != -3) return r;
    }
    return IPCOUNT_FULL;
}

/* Take N off the slot at IDX; the last one frees it. */
static void slot_sub(struct shm *s, unsigned idx, uint32_t n)
{
    struct shm_ipslot *sl = &s->ip[idx];
    uint64_t w = __atomic_load_n(&sl->word, __ATOMIC_ACQUIRE), nw;
    do {
        if (W_STATE(w) != ST_USED || W_COUNT(w) == 0) return;
        uint32_t left = W_COUNT(w) > n ? W_COUNT(w) - n : 0;
        nw = left ? W_MAKE(W_GEN(w), ST_USED, left) : W_MAKE(W_GEN(w), ST_FREE, 0);
    } while (
        !__atomic_compare_exchange_n(&sl->word, &w, nw, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
}

void ipcount_release(struct shm *s, unsigned row, int slot)
{
    if (!table_ok(s, row) || slot < 0 || (unsigned)slot >= s->hdr->ip_slots) return;
    uint16_t *cp = contrib(s, row, (unsigned)slot);
    uint16_t v = __atomic_load_n(cp, __ATOMIC_RELAXED);
    /* Zero means the row was reconciled already: the count went with it. */
    do {
        if (v == 0) return;
    } while (!__atomic_compare_exchange_n(cp, &v, v - 1, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    slot_sub(s, (unsigned)slot, 1);
}

uint32_t ipcount_get(const struct shm *s, const struct ipcount_key *k)
{
    if (!s->hdr || !s->ip) return 0;
    unsigned mask = s->hdr->ip_slots - 1;
    unsigned base = (unsigned)key_hash(s->hdr->ip_seed, k) & mask;
    uint32_t sum = 0;
    for (unsigned i = 0; i < IPCOUNT_PROBE; i++) {
        const struct shm_ipslot *sl = &s->ip[(base + i) & mask];
        uint64_t w = __atomic_load_n(&sl->word, __ATOMIC_ACQUIRE);
        if (W_STATE(w) == ST_USED && key_equal(sl, k)) sum += W_COUNT(w);
    }
    return sum;
}

void ipcount_row_reconcile(struct shm *s, unsigned row)
{
    if (!table_ok(s, row) || !__atomic_load_n(&s->hdr->ip_used[row], __ATOMIC_ACQUIRE)) return;
    for (unsigned idx = 0; idx < s->hdr->ip_slots; idx++) {
        uint16_t n = __atomic_exchange_n(contrib(s, row, idx), 0, __ATOMIC_ACQ_REL);
        if (!n) continue;
        struct shm_ipslot *sl = &s->ip[idx];
        uint64_t w = __atomic_load_n(&sl->word, __ATOMIC_ACQUIRE);
        /* Died between claiming and publishing: nobody else counts there. */
        if (W_STATE(w) == ST_CLAIM && __atomic_load_n(&sl->claimer, __ATOMIC_RELAXED) == row + 1)
            __atomic_compare_exchange_n(&sl->word, &w, W_MAKE(W_GEN(w), ST_FREE, 0), 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
        else
            slot_sub(s, idx, n);
    }
    __atomic_store_n(&s->hdr->ip_used[row], 0, __ATOMIC_RELEASE);
}
