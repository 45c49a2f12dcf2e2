/* TLS ticket keys: slot selection by key name, when a rotation is due, the
 * lifetime a ticket is given, long listener names; then the store in a
 * real shared-memory region: keys made once per listener name, kept by a
 * second sync (reload) and by a second view of the region (an upgraded
 * master), rotated prev <- cur <- next, renewed after two periods. */
#include "t/unit/tap.h"
#include "common/config.h"
#include "common/log.h"
#include "common/shm.h"
#include "common/ticket_keys.h"

#include <string.h>
#include <unistd.h>

static struct ticket_entry entry3(int64_t rotated, int64_t period)
{
    struct ticket_entry e;
    memset(&e, 0, sizeof(e));
    for (int i = 0; i < TICKET_SLOTS; i++) {
        memset(e.keys[i].name, 'a' + i, TICKET_NAME_LEN);
        e.keys[i].created_ms = rotated + i;
    }
    e.rotated_ms = rotated;
    e.rotation_ms = period;
    return e;
}

static void test_select(void)
{
    struct ticket_entry e = entry3(1000, 3600000);
    is_int(ticket_slot_select(&e, (const uint8_t *)"aaaa"), TICKET_PREV, "previous key found");
    is_int(ticket_slot_select(&e, (const uint8_t *)"bbbb"), TICKET_CUR, "current key found");
    is_int(ticket_slot_select(&e, (const uint8_t *)"cccc"), TICKET_NEXT, "next key found");
    is_int(ticket_slot_select(&e, (const uint8_t *)"dddd"), -1, "unknown name: none");
    is_int(ticket_slot_select(&e, (const uint8_t *)"aaab"), -1, "the whole name must match");
    e.keys[TICKET_PREV].created_ms = 0;
    is_int(ticket_slot_select(&e, (const uint8_t *)"aaaa"), -1, "an empty slot never matches");
    struct ticket_entry z;
    memset(&z, 0, sizeof(z));
    is_int(ticket_slot_select(&z, z.keys[0].name), -1, "all-zero names of empty slots never match");
}

static void test_due(void)
{
    int64_t r = 10000;
    struct ticket_entry e = entry3(50000, r);
    is_int(ticket_due(&e, r, 50000), 0, "just rotated: nothing due");
    is_int(ticket_due(&e, r, 59999), 0, "1 ms before the period: nothing");
    is_int(ticket_due(&e, r, 60000), 1, "one period: rotate");
    is_int(ticket_due(&e, r, 69999), 1, "still one rotation before two periods");
    is_int(ticket_due(&e, r, 70000), 2, "two periods: the current key is dead, renew");
    is_int(ticket_due(&e, 5000, 55000), 1, "a shorter period (reload) applies at once");
    is_int(ticket_due(&e, r, 49500), 0, "the clock a little behind: nothing");
    is_int(ticket_due(&e, r, 40000), 1, "the clock went back: rotate, not wait for it");
    e.keys[TICKET_NEXT].created_ms = 0;
    is_int(ticket_due(&e, r, 50000), 2, "no next key: renew");
    struct ticket_entry z;
    memset(&z, 0, sizeof(z));
    is_int(ticket_due(&z, r, 50000), 2, "an empty entry: renew");
}

static void test_lifetime(void)
{
    struct ticket_entry e = entry3(0, 3600000);
    is_int(ticket_lifetime(&e, 0), 7200, "issued at the rotation: two periods");
    is_int(ticket_lifetime(&e, 3599000), 3601, "issued late: until the key stops being previous");
    is_int(ticket_lifetime(&e, 7200000), 1, "never 0 (0 means unspecified)");
    e.rotation_ms = 3LL * 86400000;
    is_int(ticket_lifetime(&e, 0), 518400, "three days: six days of life");
    e.rotation_ms = 5LL * 86400000;
    is_int(ticket_lifetime(&e, 0), TICKET_MAX_LIFETIME, "at most seven days (RFC 8446)");
}

static void test_names(void)
{
    char a[TICKET_LISTENER_LEN], b[TICKET_LISTENER_LEN];
    ticket_listener_key("web", a);
    is_str(a, "web", "a short name is itself");
    char l1[100], l2[100];
    memset(l1, 'x', 99), l1[99] = 0;
    memcpy(l2, l1, sizeof(l2));
    l2[98] = 'y';
    ticket_listener_key(l1, a);
    ticket_listener_key(l2, b);
    ok(strlen(a) < TICKET_LISTENER_LEN, "a long name fits");
    ok(strcmp(a, b) != 0, "two long names differing at the end stay apart");
}

static struct config *cfg_one(const char *name, int64_t period, bool tickets)
{
    static struct conf_listener l[2];
    static struct config c;
    memset(l, 0, sizeof(l));
    memset(&c, 0, sizeof(c));
    l[0].name = (char *)name;
    l[0].tls = (struct tls_server *)1; /* only tested for NULL */
    l[0].tls_session_tickets = tickets;
    l[0].tls_ticket_rotation = period;
    l[1].name = "plain"; /* no TLS: no entry */
    c.listeners = l;
    c.nlisteners = 2;
    return &c;
}

static void test_store(void)
{
    struct shm s = {.fd = -1};
    if (shm_create(&s) < 0) {
        ok(0, "shm_create");
        return;
    }
    uint32_t g0 = ticket_generation(&s);
    is_int(ticket_keys_tick(&s, cfg_one("web", 1000, false)), -1,
           "tickets off: nothing to rotate, no timer");
    is_int(ticket_entry_find(&s, "web"), -1, "tickets off: no entry");
    is_int(ticket_keys_sync(&s, cfg_one("web", 1000, true)), 0, "sync makes keys");
    ok(ticket_generation(&s) != g0, "the generation moved");
    int i = ticket_entry_find(&s, "web");
    ok(i >= 0, "entry found by listener name");
    is_int(ticket_entry_find(&s, "plain"), -1, "no entry for a plaintext listener");
    struct ticket_entry a, b;
    is_int(ticket_entry_read(&s, (unsigned)i, "web", &a), 0, "read it");
    ok(a.keys[TICKET_CUR].created_ms && a.keys[TICKET_NEXT].created_ms, "current and next keys");
    ok(!a.keys[TICKET_PREV].created_ms, "no previous key yet");
    ok(memcmp(a.keys[TICKET_CUR].key, a.keys[TICKET_NEXT].key, TICKET_KEY_LEN) != 0,
       "two different keys");
    ok(memcmp(a.keys[TICKET_CUR].name, a.keys[TICKET_NEXT].name, TICKET_NAME_LEN) != 0,
       "with different names");
    is_int(ticket_entry_read(&s, (unsigned)i, "other", &b), -1, "read under another name: refused");

    /* Reload (same name) and an upgraded master (another view): same keys. */
    uint32_t g1 = ticket_generation(&s);
    ticket_keys_sync(&s, cfg_one("web", 1000, true));
    struct shm v = {.fd = -1};
    is_int(shm_attach(&v, dup(s.fd)), 0, "a second master attaches");
    ticket_keys_sync(&v, cfg_one("web", 1000, true));
    is_int(ticket_generation(&s), g1, "nothing due: nothing written");
    ticket_entry_read(&v, (unsigned)ticket_entry_find(&v, "web"), "web", &b);
    ok(memcmp(&a, &b, sizeof(a)) == 0, "the same keys seen by the second master");
    int left = ticket_keys_tick(&v, cfg_one("web", 1000, true));
    ok(left > 0 && left <= 1005, "the tick asks to be called at the next rotation (%d ms)", left);

    /* One period later: one rotation, whichever master ticks first. */
    usleep(1100 * 1000);
    ticket_keys_tick(&s, cfg_one("web", 1000, true));
    ticket_keys_tick(&v, cfg_one("web", 1000, true));
    ticket_entry_read(&s, (unsigned)i, "web", &b);
    ok(memcmp(&b.keys[TICKET_PREV], &a.keys[TICKET_CUR], sizeof(b.keys[0])) == 0,
       "rotated: the current key became previous");
    ok(memcmp(&b.keys[TICKET_CUR], &a.keys[TICKET_NEXT], sizeof(b.keys[0])) == 0,
       "the next key became current (once: two masters ticked)");
    ok(b.keys[TICKET_NEXT].created_ms > a.keys[TICKET_NEXT].created_ms, "a fresh next key");

    /* Two periods without a master: every key renewed. */
    usleep(2100 * 1000);
    ticket_keys_sync(&s, cfg_one("web", 1000, true));
    ticket_entry_read(&s, (unsigned)i, "web", &a);
    ok(!a.keys[TICKET_PREV].created_ms, "renewed: no previous key");
    ok(ticket_slot_select(&a, b.keys[TICKET_CUR].name) < 0 &&
           ticket_slot_select(&a, b.keys[TICKET_PREV].name) < 0,
       "the old keys are gone");

    /* A lock left by a dead master is taken over. */
    __atomic_store_n(&s.hdr->tickets_lock, 999999999, __ATOMIC_RELAXED);
    is_int(ticket_keys_sync(&s, cfg_one("api", 1000, true)), 0, "a dead holder's lock is taken");
    ok(ticket_entry_find(&s, "api") >= 0 && ticket_entry_find(&s, "api") != i,
       "a second listener, a second entry");
    shm_detach(&v);
    shm_detach(&s);
}

int main(void)
{
    log_open("stderr", LL_ERROR);
    test_select();
    test_due();
    test_lifetime();
    test_names();
    test_store();
    return tap_done();
}
