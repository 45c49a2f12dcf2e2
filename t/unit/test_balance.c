/* Balancer: smooth weighted round robin, least_conn over shared counts,
 * ip_hash, backup tier, down/tried/max_conns, passive health. Upstreams are
 * built by hand; server ids are global, as config_load assigns them. */
#include "t/unit/tap.h"
#include "common/config.h"
#include "common/shm.h"
#include "worker/balance.h"

#define MAXS 8
#define FAIL_TIMEOUT 10000

struct fixture {
    struct config cfg;
    struct conf_upstream u;
    struct conf_server s[MAXS];
    struct balance b;
};

/* WEIGHTS is 0-terminated; server i gets id 10 + i so ids differ from indexes. */
static void setup(struct fixture *f, enum conf_balance how, const unsigned *weights,
                  const struct shm *shm)
{
    memset(f, 0, sizeof *f);
    f->u.name = "u";
    f->u.servers = f->s;
    f->u.balance = how;
    f->u.max_fails = 2;
    f->u.fail_timeout = FAIL_TIMEOUT;
    for (unsigned i = 0; weights[i] && i < MAXS; i++) {
        f->s[i].weight = weights[i];
        f->s[i].id = 10 + i;
        f->s[i].upstream = &f->u;
        f->u.nservers++;
    }
    f->cfg.upstreams = &f->u;
    f->cfg.nupstreams = 1;
    f->cfg.nservers = f->u.nservers;
    if (balance_init(&f->b, &f->cfg, shm) != 0) ok(0, "balance_init");
}

/* N picks as letters, a = server 0, '-' = none. */
static const char *picks(struct fixture *f, int n, uint64_t tried, int64_t now)
{
    static char out[64];
    for (int i = 0; i < n; i++) {
        int k = balance_pick(&f->b, &f->u, 0, tried, now);
        out[i] = k < 0 ? '-' : (char)('a' + k);
    }
    out[n] = 0;
    return out;
}

static void test_round_robin(void)
{
    struct fixture f;
    setup(&f, BALANCE_ROUND_ROBIN, (unsigned[]){5, 1, 1, 0}, NULL);
    is_str(picks(&f, 14, 0, 0), "aabacaaaabacaa", "5/1/1: nginx's smooth sequence, twice");
    balance_free(&f.b);
    setup(&f, BALANCE_ROUND_ROBIN, (unsigned[]){1, 1, 1, 0}, NULL);
    is_str(picks(&f, 6, 0, 0), "abcabc", "equal weights follow server order");
    f.s[1].down = true;
    is_str(picks(&f, 4, 0, 0), "acac", "a down server is skipped");
    is_str(picks(&f, 4, 1u << 0, 0), "cccc", "tried mask honoured");
    is_int(balance_pick(&f.b, &f.u, 0, 0x7, 0), -1, "-1 when every server was tried");
    f.s[0].down = f.s[2].down = true;
    is_int(balance_pick(&f.b, &f.u, 0, 0, 0), -1, "-1 when every server is down");
    ok(!balance_usable(&f.b, &f.s[0], 0), "down server is not usable");
    balance_free(&f.b);
}

static void test_backup(void)
{
    struct fixture f;
    setup(&f, BALANCE_ROUND_ROBIN, (unsigned[]){1, 1, 1, 1, 0}, NULL);
    f.s[2].backup = f.s[3].backup = true;
    is_str(picks(&f, 4, 0, 0), "abab", "backups idle while primaries are usable");
    f.s[0].down = true;
    is_str(picks(&f, 2, 0, 0), "bb", "one primary left still beats the backups");
    is_str(picks(&f, 4, 1u << 1, 0), "cdcd", "backups when no primary is usable");
    f.s[0].down = false;
    is_str(picks(&f, 2, 1u << 1, 0), "aa", "primary back: backups idle again");
    f.s[0].down = f.s[1].down = f.s[2].down = f.s[3].down = true;
    is_int(balance_pick(&f.b, &f.u, 0, 0, 0), -1, "-1 when primaries and backups are down");
    balance_free(&f.b);
}

static void test_max_conns(struct shm *shm)
{
    struct fixture f;
    setup(&f, BALANCE_ROUND_ROBIN, (unsigned[]){1, 1, 0}, shm);
    f.s[0].max_conns = 2;
    shm_conn_inc(shm, 0, f.s[0].id);
    ok(balance_usable(&f.b, &f.s[0], 0), "under max_conns: usable");
    shm_conn_inc(shm, 1, f.s[0].id);
    ok(!balance_usable(&f.b, &f.s[0], 0), "at max_conns over all slots: not usable");
    is_str(picks(&f, 3, 0, 0), "bbb", "full server skipped");
    is_int(balance_pick(&f.b, &f.u, 0, 1u << 1, 0), -1, "-1 when the other was tried");
    shm_conn_dec(shm, 1, f.s[0].id);
    is_str(picks(&f, 2, 0, 0), "ab", "a freed connection makes it usable again");
    shm_slot_clear(shm, 0);
    balance_free(&f.b);
}

static void test_least_conn(struct shm *shm)
{
    struct fixture f;
    setup(&f, BALANCE_LEAST_CONN, (unsigned[]){1, 1, 1, 0}, shm);
    unsigned a = f.s[0].id, b = f.s[1].id, c = f.s[2].id;
    shm_conn_inc(shm, 0, a);
    shm_conn_inc(shm, 0, a);
    shm_conn_inc(shm, 1, a); /* a: 3 over two slots */
    shm_conn_inc(shm, 0, b);
    shm_conn_inc(shm, 1, b); /* b: 2 */
    for (int i = 0; i < 4; i++)
        shm_conn_inc(shm, 1, c); /* c: 4, all in slot 1 */
    is_str(picks(&f, 3, 0, 0), "bbb", "fewest active summed over slots");
    is_str(picks(&f, 1, 1u << 1, 0), "a", "next fewest when the best was tried");
    f.s[0].weight = 3; /* a: 3/3 = 1 < b: 2/1 */
    is_str(picks(&f, 2, 0, 0), "aa", "active/weight, not raw active");
    shm_slot_clear(shm, 0);
    shm_slot_clear(shm, 1);
    balance_free(&f.b);

    setup(&f, BALANCE_LEAST_CONN, (unsigned[]){1, 1, 1, 0}, shm);
    is_str(picks(&f, 6, 0, 0), "abcabc", "equal load: ties alternate");
    shm_conn_inc(shm, 0, f.s[2].id);
    is_str(picks(&f, 4, 0, 0), "abab", "ties among the least loaded only");
    shm_slot_clear(shm, 0);
    balance_free(&f.b);

    setup(&f, BALANCE_LEAST_CONN, (unsigned[]){2, 1, 0}, shm);
    is_str(picks(&f, 6, 0, 0), "abaaba", "ties follow weights (smooth WRR)");
    balance_free(&f.b);
}

static void test_ip_hash(void)
{
    struct fixture f;
    int count[3] = {0}, before[1000], moved = 0, stable = 1;
    setup(&f, BALANCE_IP_HASH, (unsigned[]){1, 1, 1, 0}, NULL);
    for (uint32_t h = 0; h < 1000; h++) {
        before[h] = balance_pick(&f.b, &f.u, h * 2654435761u, 0, 0);
        for (int r = 0; r < 3; r++)
            if (balance_pick(&f.b, &f.u, h * 2654435761u, 0, 0) != before[h]) stable = 0;
        count[before[h]]++;
    }
    ok(stable, "same hash, same server");
    ok(count[0] > 250 && count[1] > 250 && count[2] > 250, "spread: %d/%d/%d", count[0], count[1],
       count[2]);
    f.s[0].down = true;
    for (uint32_t h = 0; h < 1000; h++) {
        int k = balance_pick(&f.b, &f.u, h * 2654435761u, 0, 0);
        if (k == 0 || (before[h] != 0 && k != before[h])) moved++;
    }
    is_int(moved, 0, "a down server moves only its own clients");
    is_int(balance_pick(&f.b, &f.u, 5, 0x6, 0), -1, "-1 when the rest were tried");
    balance_free(&f.b);

    setup(&f, BALANCE_IP_HASH, (unsigned[]){2, 1, 1, 0}, NULL);
    count[0] = count[1] = count[2] = 0;
    for (uint32_t h = 0; h < 4000; h++)
        count[balance_pick(&f.b, &f.u, h, 0, 0)]++;
    ok(count[0] > 1700 && count[0] < 2300, "weight 2 of 4 gets about half: %d", count[0]);
    balance_free(&f.b);
}

static void test_passive_health(void)
{
    struct fixture f;
    setup(&f, BALANCE_ROUND_ROBIN, (unsigned[]){1, 1, 0}, NULL);
    balance_report(&f.b, &f.s[0], false, 0);
    ok(balance_usable(&f.b, &f.s[0], 1), "one failure of max_fails=2: still usable");
    balance_report(&f.b, &f.s[0], false, 100);
    ok(!balance_usable(&f.b, &f.s[0], 101), "second failure in the window: failed");
    is_str(picks(&f, 3, 0, 200), "bbb", "failed server skipped");
    balance_report(&f.b, &f.s[0], true, 300);
    ok(!balance_usable(&f.b, &f.s[0], 301), "a success does not lift an active failure");
    ok(!balance_usable(&f.b, &f.s[0], 100 + FAIL_TIMEOUT - 1), "failed until fail_timeout");
    ok(balance_usable(&f.b, &f.s[0], 100 + FAIL_TIMEOUT), "recovers after fail_timeout");

    balance_report(&f.b, &f.s[1], false, 20000);
    balance_report(&f.b, &f.s[1], false, 20000 + FAIL_TIMEOUT);
    ok(balance_usable(&f.b, &f.s[1], 20000 + FAIL_TIMEOUT), "failures in two windows: usable");
    balance_report(&f.b, &f.s[1], true, 40000);
    balance_report(&f.b, &f.s[1], false, 40001);
    ok(balance_usable(&f.b, &f.s[1], 40002), "a success resets the count");

    f.u.max_fails = 0;
    for (int i = 0; i < 5; i++)
        balance_report(&f.b, &f.s[1], false, 50000);
    ok(balance_usable(&f.b, &f.s[1], 50000), "max_fails=0 disables passive health");
    balance_free(&f.b);
}

static void test_all_failed(void)
{
    struct fixture f;
    setup(&f, BALANCE_ROUND_ROBIN, (unsigned[]){1, 1, 1, 0}, NULL);
    f.u.max_fails = 1;
    f.s[2].down = true;
    balance_report(&f.b, &f.s[0], false, 0);
    ok(!balance_usable(&f.b, &f.s[0], 1), "a failed");
    is_str(picks(&f, 1, 0, 1), "b", "b still there");
    is_int(balance_pick(&f.b, &f.u, 0, 1u << 1, 1), 0, "b tried, a failed: a is reset and picked");
    ok(balance_usable(&f.b, &f.s[0], 1), "a's failure was forgotten");
    balance_report(&f.b, &f.s[0], false, 2);
    balance_report(&f.b, &f.s[1], false, 2);
    ok(!balance_usable(&f.b, &f.s[0], 3) && !balance_usable(&f.b, &f.s[1], 3), "both failed");
    is_str(picks(&f, 2, 0, 3), "ab", "all failed: reset and pick normally");
    ok(balance_usable(&f.b, &f.s[1], 3), "every failed server was reset");
    ok(!balance_usable(&f.b, &f.s[2], 3), "a down server stays down");
    balance_free(&f.b);
}

static void test_any_left(void)
{
    struct fixture f;
    setup(&f, BALANCE_ROUND_ROBIN, (unsigned[]){1, 1, 1, 0}, NULL);
    f.u.max_fails = 1;
    ok(balance_any_left(&f.b, &f.u, 1u << 0, 0), "two untried servers left");
    ok(!balance_any_left(&f.b, &f.u, 0x7, 0), "none left when all were tried");
    f.s[2].down = true;
    ok(!balance_any_left(&f.b, &f.u, 0x3, 0), "a down server does not count");
    balance_report(&f.b, &f.s[1], false, 0);
    ok(balance_any_left(&f.b, &f.u, 1u << 0, 1), "a failed one counts: a pick may reset it");
    is_str(picks(&f, 1, 1u << 0, 1), "b", "and a pick does find it");
    balance_free(&f.b);
}

int main(void)
{
    struct shm shm = {.fd = -1};
    if (shm_create(&shm) != 0) {
        printf("Bail out! shm_create\n");
        return 1;
    }
    test_round_robin();
    test_backup();
    test_max_conns(&shm);
    test_least_conn(&shm);
    test_ip_hash();
    test_passive_health();
    test_all_failed();
    test_any_left();
    shm_detach(&shm);
    return tap_done();
}
