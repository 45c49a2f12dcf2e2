/* Per-address counts in shared memory: the limit, other addresses and
 * listeners apart, IPv6 by /64 and IPv4-mapped as IPv4, release, a dead
 * row's counts taken back (and only once), slot reuse after the last
 * release, and a full table admitting uncounted. */
#include "t/unit/tap.h"
#include "common/ipcount.h"
#include "common/shm.h"

#include <arpa/inet.h>
#include <string.h>

static struct ipcount_key key4(const char *ip, uint32_t scope)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &sin.sin_addr);
    struct ipcount_key k;
    ipcount_key(&k, (struct sockaddr *)&sin, scope);
    return k;
}

static struct ipcount_key key6(const char *ip, uint32_t scope)
{
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, ip, &sin6.sin6_addr);
    struct ipcount_key k;
    ipcount_key(&k, (struct sockaddr *)&sin6, scope);
    return k;
}

int main(void)
{
    struct shm s = {.fd = -1};
    if (shm_create(&s) < 0) return 1;
    struct ipcount_key a = key4("192.0.2.1", 1), b = key4("192.0.2.2", 1),
                       a2 = key4("192.0.2.1", 2);
    int slots[4];
    slots[0] = ipcount_acquire(&s, 0, &a, 3);
    slots[1] = ipcount_acquire(&s, 1, &a, 3);
    slots[2] = ipcount_acquire(&s, 1, &a, 3);
    ok(slots[0] >= 0 && slots[1] == slots[0] && slots[2] == slots[0],
       "three in one slot, two rows");
    is_int(ipcount_acquire(&s, 0, &a, 3), IPCOUNT_REFUSED, "the fourth is refused");
    is_int(ipcount_get(&s, &a), 3, "count 3");
    ok(ipcount_acquire(&s, 0, &b, 3) >= 0, "another address is counted apart");
    ok(ipcount_acquire(&s, 0, &a2, 1) >= 0, "another listener (scope) too");
    is_int(ipcount_acquire(&s, 0, &a2, 1), IPCOUNT_REFUSED, "with its own limit");

    struct ipcount_key m = key6("::ffff:192.0.2.1", 1);
    is_int(ipcount_get(&s, &m), 3, "an IPv4-mapped address counts as the IPv4 one");
    struct ipcount_key v1 = key6("2001:db8:1:2::1", 1), v2 = key6("2001:db8:1:2:ffff::9", 1),
                       v3 = key6("2001:db8:1:3::1", 1);
    ok(ipcount_acquire(&s, 0, &v1, 2) >= 0 && ipcount_acquire(&s, 0, &v2, 2) >= 0,
       "two addresses of one /64");
    is_int(ipcount_acquire(&s, 0, &v1, 2), IPCOUNT_REFUSED, "share the /64's limit");
    ok(ipcount_acquire(&s, 0, &v3, 2) >= 0, "another /64 is apart");

    /* Row 1 dies holding two of a's: its master takes them back. */
    ipcount_row_reconcile(&s, 1);
    is_int(ipcount_get(&s, &a), 1, "reconciling row 1 leaves row 0's one");
    ipcount_release(&s, 1, slots[1]);
    is_int(ipcount_get(&s, &a), 1, "a late release from the reconciled row changes nothing");
    ipcount_row_reconcile(&s, 1);
    is_int(ipcount_get(&s, &a), 1, "reconciling twice changes nothing");
    ipcount_release(&s, 0, slots[0]);
    is_int(ipcount_get(&s, &a), 0, "the last release frees the slot");
    int again = ipcount_acquire(&s, 0, &b, 3);
    ok(again >= 0, "b still counts after a's slot was freed");
    is_int(ipcount_get(&s, &b), 2, "b has 2");

    /* Fill every slot: new addresses are then admitted uncounted. */
    int full = 0, counted = 0;
    for (uint32_t i = 0; i < IPCOUNT_SLOTS + 1000; i++) {
        struct ipcount_key k = {{0, 0, 0xffff0000u, i, 77}};
        int r = ipcount_acquire(&s, 2, &k, 1);
        if (r == IPCOUNT_FULL) full++;
        if (r >= 0) counted++;
    }
    ok(full >= 1000 && counted > (int)IPCOUNT_SLOTS * 9 / 10,
       "a full table admits uncounted (counted %d, uncounted %d)", counted, full);
    ipcount_row_reconcile(&s, 2);
    struct ipcount_key k0 = {{0, 0, 0xffff0000u, 5, 77}};
    is_int(ipcount_get(&s, &k0), 0, "reconciling the row empties what it filled");
    ok(ipcount_acquire(&s, 2, &k0, 1) >= 0, "and there is room again");
    shm_detach(&s);
    return tap_done();
}
