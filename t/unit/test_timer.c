/* Timer heap: ordering, moving, cancelling, next deadline, and a random
 * workload checked against a brute-force reference. */
#include "t/unit/tap.h"
#include "common/timer.h"

#include <limits.h>
#include <stdlib.h>

#define NRAND 2000

static int heap_valid(const struct timers *ts)
{
    for (uint32_t i = 0; i < ts->n; i++) {
        if (ts->heap[i]->pos != i + 1) return 0;
        if (i > 0 && ts->heap[(i - 1) / 2]->when > ts->heap[i]->when) return 0;
    }
    return 1;
}

static void test_order(void)
{
    struct timers ts;
    struct timer t[5] = {{0}};
    int64_t when[5] = {50, 10, 40, 20, 30};
    is_int(timers_init(&ts, 0), 0, "init with no capacity");
    is_int(timers_next(&ts, 0), -1, "empty heap: no deadline");
    ok(timers_pop_expired(&ts, 1000) == NULL, "empty heap: nothing expires");
    for (int i = 0; i < 5; i++)
        timer_arm(&ts, &t[i], when[i]);
    ok(heap_valid(&ts), "heap invariant after arming");
    ok(timer_armed(&t[0]) && timer_armed(&t[4]), "armed timers report it");
    is_int(timers_next(&ts, 0), 10, "next deadline is the earliest");
    is_int(timers_next(&ts, 15), 0, "an overdue deadline is 0");
    ok(timers_pop_expired(&ts, 9) == NULL, "nothing expires before the earliest");
    ok(timers_pop_expired(&ts, 10) == &t[1], "deadline equal to now expires");
    ok(!timer_armed(&t[1]), "a popped timer is disarmed");
    ok(timers_pop_expired(&ts, 35) == &t[3], "then 20");
    ok(timers_pop_expired(&ts, 35) == &t[4], "then 30");
    ok(timers_pop_expired(&ts, 35) == NULL, "40 not yet");
    is_int(timers_next(&ts, 35), 5, "5 ms to 40");
    timers_free(&ts);
    ok(!timer_armed(&t[0]) && !timer_armed(&t[2]), "free disarms what was left");
}

static void test_move_cancel(void)
{
    struct timers ts;
    struct timer a = {0}, b = {0}, c = {0};
    timers_init(&ts, 2);
    timer_arm(&ts, &a, 100);
    timer_arm(&ts, &b, 200);
    timer_arm(&ts, &c, 300);
    is_int(ts.n, 3, "grew past the initial capacity");
    timer_arm(&ts, &c, 50);
    is_int(ts.n, 3, "re-arming moves, does not duplicate");
    ok(timers_pop_expired(&ts, 60) == &c, "moved earlier fires first");
    timer_arm(&ts, &a, 250);
    ok(heap_valid(&ts), "heap invariant after moving later");
    ok(timers_pop_expired(&ts, 210) == &b, "moved later lets the other go first");
    timer_arm(&ts, &b, 10);
    timer_cancel(&ts, &b);
    ok(!timer_armed(&b), "cancelled timer is disarmed");
    timer_cancel(&ts, &b);
    is_int(ts.n, 1, "cancelling twice is a no-op");
    ok(timers_pop_expired(&ts, 1000) == &a, "the other still fires");
    ok(timers_pop_expired(&ts, 1000) == NULL, "then nothing");
    timers_free(&ts);
}

static void test_next_clamp(void)
{
    struct timers ts;
    struct timer t = {0};
    timers_init(&ts, 1);
    timer_arm(&ts, &t, INT64_MAX);
    is_int(timers_next(&ts, 0), INT_MAX, "far deadline clamps to INT_MAX");
    is_int(timers_next(&ts, -INT64_MAX), INT_MAX, "no overflow with a very negative now");
    timer_arm(&ts, &t, (int64_t)INT_MAX + 7);
    is_int(timers_next(&ts, 7), INT_MAX, "exactly INT_MAX away");
    timers_free(&ts);
}

/* Expected pop order: the armed timers sorted by deadline. */
static int64_t min_armed(struct timer *t, int n)
{
    int64_t m = INT64_MAX;
    for (int i = 0; i < n; i++)
        if (timer_armed(&t[i]) && t[i].when < m) m = t[i].when;
    return m;
}

static void test_random(void)
{
    static struct timer t[NRAND];
    struct timers ts;
    int bad = 0, popped = 0;
    timers_init(&ts, 0);
    srand(42);
    for (int round = 0; round < 20000; round++) {
        struct timer *x = &t[rand() % NRAND];
        if (rand() % 4 == 0)
            timer_cancel(&ts, x);
        else
            timer_arm(&ts, x, rand() % 100000);
    }
    if (!heap_valid(&ts)) bad++;
    int64_t now = 0, last = -1;
    while (ts.n) {
        int64_t want = min_armed(t, NRAND);
        if (timers_next(&ts, now) != (want <= now ? 0 : want - now)) bad++;
        struct timer *x = timers_pop_expired(&ts, want);
        if (!x || x->when != want || x->when < last) bad++;
        if (!x) break;
        last = x->when;
        now = want;
        popped++;
        if (popped % 97 == 0 && !heap_valid(&ts)) bad++;
    }
    is_int(bad, 0, "random arms/moves/cancels pop in deadline order");
    ok(popped > 0, "popped %d timers", popped);
    timers_free(&ts);
}

int main(void)
{
    test_order();
    test_move_cancel();
    test_next_clamp();
    test_random();
    return tap_done();
}
