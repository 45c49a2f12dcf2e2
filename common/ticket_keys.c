/* Ticket keys in the shared memory. Writers are masters only (the running
 * one, and during a binary upgrade the old one too): they take the region's
 * ticket lock (a pid, by CAS; a dead holder's lock is taken over), then
 * write each entry inside its seqlock and bump the region's generation.
 * Rotation is decided from wall-clock times stored in the entry, so two
 * masters rotating the same entry do it once: the second finds it done. */
#include "common/ticket_keys.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/shm.h"

#define LOCK_TRIES 200 /* x 1 ms: a writer holds the lock for microseconds */

/* ---- pure pieces ---- */

int ticket_slot_select(const struct ticket_entry *e, const uint8_t name[TICKET_NAME_LEN])
{
    for (int i = 0; i < TICKET_SLOTS; i++)
        if (e->keys[i].created_ms && memcmp(e->keys[i].name, name, TICKET_NAME_LEN) == 0) return i;
    return -1;
}

int ticket_due(const struct ticket_entry *e, int64_t rotation_ms, int64_t now_ms)
{
    if (!e->keys[TICKET_CUR].created_ms || !e->keys[TICKET_NEXT].created_ms) return 2;
    int64_t age = now_ms - e->rotated_ms;
    if (age < -1000) return 1; /* the clock went back: rotate now rather than wait for it */
    if (age >= 2 * rotation_ms) return 2;
    return age >= rotation_ms ? 1 : 0;
}

uint32_t ticket_lifetime(const struct ticket_entry *e, int64_t now_ms)
{
    int64_t left = (e->rotated_ms + 2 * e->rotation_ms - now_ms) / 1000;
    if (left < 1) return 1;
    return left > TICKET_MAX_LIFETIME ? TICKET_MAX_LIFETIME : (uint32_t)left;
}

void ticket_listener_key(const char *name, char out[TICKET_LISTENER_LEN])
{
    size_t n = strlen(name);
    memset(out, 0, TICKET_LISTENER_LEN);
    if (n < TICKET_LISTENER_LEN) {
        memcpy(out, name, n);
        return;
    }
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)name[i]) * 1099511628211ULL;
    memcpy(out, name, 40);
    snprintf(out + 40, TICKET_LISTENER_LEN - 40, "~%016llx", (unsigned long long)h);
}

/* ---- shared state ---- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned entries(const struct shm *s)
{
    return s->hdr && s->tickets ? s->hdr->tickets_max : 0;
}

uint32_t ticket_generation(const struct shm *s)
{
    return s->hdr ? __atomic_load_n(&s->hdr->tickets_gen, __ATOMIC_ACQUIRE) : 0;
}

/* A seqlock read: copy while the sequence is even and unchanged. */
static void entry_copy(const struct ticket_entry *e, struct ticket_entry *out)
{
    for (;;) {
        uint32_t a = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
        if (a & 1) continue; /* a master is writing: a few hundred ns */
        memcpy(out, (const void *)e, sizeof(*out));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) == a) return;
    }
}

int ticket_entry_find(const struct shm *s, const char *name)
{
    char key[TICKET_LISTENER_LEN];
    ticket_listener_key(name, key);
    struct ticket_entry copy;
    for (unsigned i = 0; i < entries(s); i++) {
        entry_copy(&s->tickets[i], &copy);
        if (memcmp(copy.listener, key, sizeof(key)) == 0) {
            memset(&copy, 0, sizeof(copy)); /* keys stay where they belong */
            return (int)i;
        }
    }
    return -1;
}

int ticket_entry_read(const struct shm *s, unsigned idx, const char *name, struct ticket_entry *out)
{
    if (idx >= entries(s)) return -1;
    char key[TICKET_LISTENER_LEN];
    ticket_listener_key(name, key);
    entry_copy(&s->tickets[idx], out);
    return memcmp(out->listener, key, sizeof(key)) == 0 ? 0 : -1;
}

/* ---- writing (masters) ---- */

static int lock_take(struct shm *s)
{
    int32_t me = (int32_t)getpid();
    for (int tries = 0; tries < LOCK_TRIES; tries++) {
        int32_t held = 0;
        if (__atomic_compare_exchange_n(&s->hdr->tickets_lock, &held, me, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return 0;
        if (held == me) return 0;
        /* A master that died holding it: take it over. */
        if (kill(held, 0) < 0 && errno == ESRCH &&
            __atomic_compare_exchange_n(&s->hdr->tickets_lock, &held, me, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return 0;
        usleep(1000);
    }
    return -1;
}

static void lock_give(struct shm *s)
{
    __atomic_store_n(&s->hdr->tickets_lock, 0, __ATOMIC_RELEASE);
}

static int key_fresh(struct ticket_entry *e, int slot, int64_t now)
{
    struct ticket_key *k = &e->keys[slot];
    for (;;) {
        if (getrandom(k->name, sizeof(k->name), 0) != sizeof(k->name)) return -1;
        bool clash = false; /* names must tell the three keys apart */
        for (int i = 0; i < TICKET_SLOTS; i++)
            clash = clash || (i != slot && e->keys[i].created_ms &&
                              memcmp(e->keys[i].name, k->name, sizeof(k->name)) == 0);
        if (!clash) break;
    }
    if (getrandom(k->key, sizeof(k->key), 0) != sizeof(k->key)) return -1;
    k->created_ms = now;
    return 0;
}

/* Compute the new state of E in a private copy; the caller publishes it. */
static int entry_update(struct ticket_entry *e, int how, int64_t rotation_ms, int64_t now)
{
    e->rotation_ms = rotation_ms;
    if (how == 2) {
        memset(e->keys, 0, sizeof(e->keys));
        if (key_fresh(e, TICKET_CUR, now) < 0 || key_fresh(e, TICKET_NEXT, now) < 0) return -1;
    } else {
        e->keys[TICKET_PREV] = e->keys[TICKET_CUR];
        e->keys[TICKET_CUR] = e->keys[TICKET_NEXT];
        memset(&e->keys[TICKET_NEXT], 0, sizeof(e->keys[TICKET_NEXT]));
        if (key_fresh(e, TICKET_NEXT, now) < 0) return -1;
    }
    e->rotated_ms = now;
    return 0;
}

static void entry_publish(struct shm *s, struct ticket_entry *dst, const struct ticket_entry *src)
{
    uint32_t seq = __atomic_load_n(&dst->seq, __ATOMIC_RELAXED);
    seq |= 1; /* odd: also repairs one left odd by a writer that died */
    __atomic_store_n(&dst->seq, seq, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy((char *)dst + sizeof(dst->seq), (const char *)src + sizeof(src->seq),
           sizeof(*dst) - sizeof(dst->seq));
    __atomic_store_n(&dst->seq, seq + 1, __ATOMIC_RELEASE);
    __atomic_fetch_add(&s->hdr->tickets_gen, 1, __ATOMIC_RELEASE);
}

static void log_rotation(const char *listener, const struct ticket_entry *e, int how)
{
    const uint8_t *n = e->keys[TICKET_CUR].name;
    log_msg(how == 2 ? LL_NOTICE : LL_INFO,
            "TLS ticket keys of listener %s: %s, current key %02x%02x%02x%02x", listener,
            how == 2 ? "new keys" : "rotated", n[0], n[1], n[2], n[3]);
}

/* Find NAME's entry, or claim a free one, or one nobody rotated for two
 * periods (its listener is gone). Under the lock. */
static int entry_slot(struct shm *s, const char *key, int64_t now)
{
    int free_at = -1, stale_at = -1;
    for (unsigned i = 0; i < entries(s); i++) {
        const struct ticket_entry *e = &s->tickets[i];
        if (memcmp(e->listener, key, TICKET_LISTENER_LEN) == 0) return (int)i;
        if (!e->listener[0] && free_at < 0) free_at = (int)i;
        if (e->listener[0] && stale_at < 0 && now - e->rotated_ms >= 2 * e->rotation_ms)
            stale_at = (int)i;
    }
    return free_at >= 0 ? free_at : stale_at;
}

/* Bring L's entry up to date. Returns ms until its next rotation, or -1
 * when it cannot have one. Under the lock. */
static int64_t listener_update(struct shm *s, const struct conf_listener *l, int64_t now)
{
    char key[TICKET_LISTENER_LEN];
    ticket_listener_key(l->name, key);
    int i = entry_slot(s, key, now);
    if (i < 0) {
        log_error("TLS ticket keys of listener %s: no room left in the shared memory (%u "
                  "listeners); its tickets will not resume",
                  l->name, entries(s));
        return -1;
    }
    struct ticket_entry copy = s->tickets[i];
    int64_t period = l->tls_ticket_rotation;
    bool mine = memcmp(copy.listener, key, sizeof(key)) == 0;
    int how = mine ? ticket_due(&copy, period, now) : 2;
    if (how) {
        memcpy(copy.listener, key, sizeof(key));
        if (entry_update(&copy, how, period, now) < 0) {
            log_error("TLS ticket keys of listener %s: getrandom: %s", l->name, strerror(errno));
            memset(&copy, 0, sizeof(copy));
            return -1;
        }
        entry_publish(s, &s->tickets[i], &copy);
        log_rotation(l->name, &copy, how);
    } else if (copy.rotation_ms != period) {
        copy.rotation_ms = period; /* a reload changed it: lifetimes follow */
        entry_publish(s, &s->tickets[i], &copy);
    }
    int64_t left = copy.rotated_ms + period - now;
    memset(&copy, 0, sizeof(copy));
    return left > 0 ? left : 1;
}

static int64_t update_all(struct shm *s, const struct config *cfg, int *failed)
{
    int64_t next = -1, now = wall_ms();
    for (unsigned i = 0; i < cfg->nlisteners; i++) {
        const struct conf_listener *l = &cfg->listeners[i];
        if (!l->tls || !l->tls_session_tickets) continue;
        int64_t left = listener_update(s, l, now);
        if (left < 0) {
            (*failed)++;
            continue;
        }
        if (next < 0 || left < next) next = left;
    }
    return next;
}

static bool any_tickets(const struct config *cfg)
{
    for (unsigned i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].tls && cfg->listeners[i].tls_session_tickets) return true;
    return false;
}

int ticket_keys_sync(struct shm *s, const struct config *cfg)
{
    if (!cfg || !any_tickets(cfg)) return 0;
    if (!entries(s)) return -1;
    if (lock_take(s) < 0) {
        log_error("TLS ticket keys: the shared memory stays locked by pid %d",
                  (int)__atomic_load_n(&s->hdr->tickets_lock, __ATOMIC_RELAXED));
        return -1;
    }
    int failed = 0;
    update_all(s, cfg, &failed);
    lock_give(s);
    return failed ? -1 : 0;
}

int ticket_keys_tick(struct shm *s, const struct config *cfg)
{
    if (!cfg || !entries(s) || !any_tickets(cfg)) return -1;
    int32_t me = (int32_t)getpid(), held = 0;
    /* Never wait in the master's loop: another master writing now means
     * try again shortly. */
    if (!__atomic_compare_exchange_n(&s->hdr->tickets_lock, &held, me, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
        if (kill(held, 0) == 0 || errno != ESRCH) return 10;
        if (!__atomic_compare_exchange_n(&s->hdr->tickets_lock, &held, me, 0, __ATOMIC_ACQUIRE,
                                         __ATOMIC_RELAXED))
            return 10;
    }
    int failed = 0;
    int64_t next = update_all(s, cfg, &failed);
    lock_give(s);
    if (next < 0) return failed ? 1000 : -1;
    /* A few ms late rather than early: early would find nothing due. */
    next += 5;
    return next > 1000000000 ? 1000000000 : (int)next;
}
