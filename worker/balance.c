/* Balancer: per-worker peer state indexed by conf_server.id. A pick looks at
 * the primary tier, then the backup tier, with the upstream's method; only
 * usable servers (not down, not failed, not tried, under max_conns) count.
 * When nothing is usable and some servers are blocked only by passive
 * failure, their failure state is forgotten and the pick runs once more. */
#include "worker/balance.h"

#include "common/config.h"
#include "common/shm.h"

#include <stdlib.h>

/* ip_hash rehashes this often before it falls back to round robin. */
#define BALANCE_HASH_TRIES 20

enum avail { AVAIL_OK, AVAIL_NO, AVAIL_FAILED };

/* One pick attempt; `tie_*` restricts smooth WRR to least_conn's tied set. */
struct pick {
    struct balance *b;
    const struct conf_upstream *u;
    uint64_t tried;
    int64_t now;
    bool backup;
    bool tie;
    uint64_t tie_active, tie_weight;
};

static struct balance_peer *peer_of(const struct balance *b, const struct conf_server *s)
{
    return s->id < b->npeers ? &b->peers[s->id] : NULL;
}

static uint64_t active_of(const struct balance *b, const struct conf_server *s)
{
    return b->shm ? shm_server_active(b->shm, s->id) : 0;
}

/* AVAIL_FAILED only when passive failure is the sole reason: that is what
 * the all-failed reset may lift. max_conns is read last: it costs a column
 * sum in shared memory. */
static enum avail server_avail(const struct balance *b, const struct conf_server *s, int64_t now)
{
    const struct balance_peer *p = peer_of(b, s);
    if (!p || s->down) return AVAIL_NO;
    if (s->max_conns && active_of(b, s) >= s->max_conns) return AVAIL_NO;
    return now < p->down_until ? AVAIL_FAILED : AVAIL_OK;
}

/* config guarantees weight >= 1; a zero would break the cross-multiplication. */
static uint64_t weight_of(const struct conf_server *s)
{
    return s->weight ? s->weight : 1;
}

static bool was_tried(uint64_t tried, unsigned i)
{
    return (tried >> (i % 64)) & 1;
}

static bool in_tier(const struct pick *k, unsigned i)
{
    return k->u->servers[i].backup == k->backup;
}

static bool eligible(const struct pick *k, unsigned i)
{
    return in_tier(k, i) && !was_tried(k->tried, i) &&
           server_avail(k->b, &k->u->servers[i], k->now) == AVAIL_OK;
}

/* Cross-multiplied so that weights need no division: a/wa vs b/wb. */
static int load_cmp(uint64_t a_active, uint64_t a_weight, uint64_t b_active, uint64_t b_weight)
{
    uint64_t l = a_active * b_weight, r = b_active * a_weight;
    return l < r ? -1 : l > r;
}

static bool in_tie(const struct pick *k, unsigned i)
{
    if (!k->tie) return true;
    const struct conf_server *s = &k->u->servers[i];
    return load_cmp(active_of(k->b, s), weight_of(s), k->tie_active, k->tie_weight) == 0;
}

/* nginx's smooth weighted round robin: every candidate gains its weight, the
 * largest wins and pays back the sum. Ties go to the earlier server. */
static int pick_swrr(const struct pick *k)
{
    int best = -1;
    int64_t total = 0;
    struct balance_peer *bp = NULL;
    for (unsigned i = 0; i < k->u->nservers; i++) {
        if (!eligible(k, i) || !in_tie(k, i)) continue;
        const struct conf_server *s = &k->u->servers[i];
        struct balance_peer *p = peer_of(k->b, s);
        p->current_weight += (int64_t)weight_of(s);
        total += (int64_t)weight_of(s);
        if (!bp || p->current_weight > bp->current_weight) {
            best = (int)i;
            bp = p;
        }
    }
    if (bp) bp->current_weight -= total;
    return best;
}

static int pick_least_conn(struct pick *k)
{
    int best = -1;
    uint64_t best_active = 0, best_weight = 1;
    unsigned ties = 0;
    for (unsigned i = 0; i < k->u->nservers; i++) {
        if (!eligible(k, i)) continue;
        const struct conf_server *s = &k->u->servers[i];
        uint64_t a = active_of(k->b, s);
        int c = best < 0 ? -1 : load_cmp(a, weight_of(s), best_active, best_weight);
        if (c < 0) {
            best = (int)i;
            best_active = a;
            best_weight = weight_of(s);
            ties = 1;
        } else if (c == 0) {
            ties++;
        }
    }
    if (ties <= 1) return best;
    k->tie = true;
    k->tie_active = best_active;
    k->tie_weight = best_weight;
    int i = pick_swrr(k);
    /* Other workers may have moved the counts between the two passes. */
    return i >= 0 ? i : best;
}

/* Spreads caller hashes whose low bits are weak (raw addresses) before the
 * modulo; murmur3's finalizer. */
static uint32_t hash_mix(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* The mapping covers every server of the tier, down or not, so marking one
 * down (or a failure) moves only its own clients elsewhere. */
static int hash_to_server(const struct pick *k, uint64_t point)
{
    for (unsigned i = 0; i < k->u->nservers; i++) {
        if (!in_tier(k, i)) continue;
        uint64_t w = weight_of(&k->u->servers[i]);
        if (point < w) return (int)i;
        point -= w;
    }
    return -1;
}

static int pick_ip_hash(const struct pick *k, uint32_t hash)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < k->u->nservers; i++)
        if (in_tier(k, i)) total += weight_of(&k->u->servers[i]);
    if (total == 0) return -1;
    for (uint32_t n = 0; n < BALANCE_HASH_TRIES; n++) {
        int i = hash_to_server(k, hash_mix(hash) % total);
        if (i >= 0 && eligible(k, (unsigned)i)) return i;
        hash = hash * 31 + n + 1;
    }
    return pick_swrr(k);
}

static int pick_tier(struct pick *k, uint32_t hash)
{
    k->tie = false;
    switch (k->u->balance) {
    case BALANCE_LEAST_CONN:
        return pick_least_conn(k);
    case BALANCE_IP_HASH:
        return pick_ip_hash(k, hash);
    case BALANCE_ROUND_ROBIN:
    default:
        return pick_swrr(k);
    }
}

static int pick_tiers(struct pick *k, uint32_t hash)
{
    k->backup = false;
    int i = pick_tier(k, hash);
    if (i >= 0) return i;
    k->backup = true;
    return pick_tier(k, hash);
}

/* As nginx resets its peers when all have failed: with nothing else left, a
 * 503 for the whole fail_timeout helps nobody, and a try may find the
 * server back. Returns how many servers were reset. */
static unsigned reset_failed(const struct pick *k)
{
    unsigned n = 0;
    for (unsigned i = 0; i < k->u->nservers; i++) {
        const struct conf_server *s = &k->u->servers[i];
        if (was_tried(k->tried, i) || server_avail(k->b, s, k->now) != AVAIL_FAILED) continue;
        struct balance_peer *p = peer_of(k->b, s);
        p->fails = 0;
        p->fail_start = 0;
        p->down_until = 0;
        n++;
    }
    return n;
}

int balance_pick(struct balance *b, const struct conf_upstream *u, uint32_t hash, uint64_t tried,
                 int64_t now)
{
    struct pick k = {.b = b, .u = u, .tried = tried, .now = now};
    int i = pick_tiers(&k, hash);
    if (i < 0 && reset_failed(&k)) i = pick_tiers(&k, hash);
    return i;
}

bool balance_any_left(const struct balance *b, const struct conf_upstream *u, uint64_t tried,
                      int64_t now)
{
    for (unsigned i = 0; i < u->nservers; i++)
        if (!was_tried(tried, i) && server_avail(b, &u->servers[i], now) != AVAIL_NO) return true;
    return false;
}

void balance_report(struct balance *b, const struct conf_server *s, bool ok, int64_t now)
{
    struct balance_peer *p = peer_of(b, s);
    if (!p) return;
    if (ok) {
        p->fails = 0;
        return;
    }
    const struct conf_upstream *u = s->upstream;
    if (!u || u->max_fails == 0) return;
    if (p->fails == 0 || now - p->fail_start >= u->fail_timeout) {
        p->fails = 0;
        p->fail_start = now;
    }
    if (++p->fails >= u->max_fails) {
        p->down_until = now + u->fail_timeout;
        p->fails = 0;
    }
}

bool balance_usable(const struct balance *b, const struct conf_server *s, int64_t now)
{
    return server_avail(b, s, now) == AVAIL_OK;
}

/* Sized by the largest id seen as well as nservers, so a config built by
 * hand (tests) with a stale count cannot index past the array. */
static unsigned peers_needed(const struct config *cfg)
{
    unsigned n = cfg->nservers;
    for (unsigned u = 0; u < cfg->nupstreams; u++)
        for (unsigned i = 0; i < cfg->upstreams[u].nservers; i++)
            if (cfg->upstreams[u].servers[i].id >= n) n = cfg->upstreams[u].servers[i].id + 1;
    return n;
}

int balance_init(struct balance *b, const struct config *cfg, const struct shm *shm)
{
    b->shm = shm;
    b->npeers = peers_needed(cfg);
    b->peers = NULL;
    if (b->npeers == 0) return 0;
    b->peers = calloc(b->npeers, sizeof *b->peers);
    if (!b->peers) {
        b->npeers = 0;
        return -1;
    }
    return 0;
}

void balance_free(struct balance *b)
{
    free(b->peers);
    b->peers = NULL;
    b->npeers = 0;
}
