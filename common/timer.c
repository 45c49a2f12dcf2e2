/* Timers: binary min-heap of struct timer*, ordered by `when`. Invariant:
 * heap[i]->pos == i + 1 for every i < n, and a timer not in the heap has
 * pos == 0. The array grows by doubling, so arming in steady state never
 * allocates. Equal deadlines pop in no particular order. */
#include "common/timer.h"

#include <limits.h>
#include <stdlib.h>

static void heap_place(struct timers *ts, uint32_t i, struct timer *t)
{
    ts->heap[i] = t;
    t->pos = i + 1;
}

static void sift_up(struct timers *ts, uint32_t i)
{
    struct timer *t = ts->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (ts->heap[parent]->when <= t->when) break;
        heap_place(ts, i, ts->heap[parent]);
        i = parent;
    }
    heap_place(ts, i, t);
}

static void sift_down(struct timers *ts, uint32_t i)
{
    struct timer *t = ts->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= ts->n) break;
        if (child + 1 < ts->n && ts->heap[child + 1]->when < ts->heap[child]->when) child++;
        if (t->when <= ts->heap[child]->when) break;
        heap_place(ts, i, ts->heap[child]);
        i = child;
    }
    heap_place(ts, i, t);
}

/* A moved or replaced entry may need to go either way; only one loop runs. */
static void heap_fix(struct timers *ts, uint32_t i)
{
    if (i > 0 && ts->heap[i]->when < ts->heap[(i - 1) / 2]->when)
        sift_up(ts, i);
    else
        sift_down(ts, i);
}

static int heap_reserve(struct timers *ts, uint32_t cap)
{
    if (cap <= ts->cap) return 0;
    struct timer **h = realloc(ts->heap, (size_t)cap * sizeof *h);
    if (!h) return -1;
    ts->heap = h;
    ts->cap = cap;
    return 0;
}

static int heap_grow(struct timers *ts)
{
    if (ts->cap >= UINT32_MAX / 2) return -1;
    return heap_reserve(ts, ts->cap ? ts->cap * 2 : 64);
}

/* Guards against a timer armed in another heap (or a stale pos). */
static int heap_owns(const struct timers *ts, const struct timer *t)
{
    return t->pos != 0 && t->pos <= ts->n && ts->heap[t->pos - 1] == t;
}

int timers_init(struct timers *ts, uint32_t cap)
{
    ts->heap = NULL;
    ts->n = ts->cap = 0;
    return heap_reserve(ts, cap);
}

void timers_free(struct timers *ts)
{
    /* Owners may outlive the heap: leave them disarmed, not dangling. */
    for (uint32_t i = 0; i < ts->n; i++)
        ts->heap[i]->pos = 0;
    free(ts->heap);
    ts->heap = NULL;
    ts->n = ts->cap = 0;
}

int timer_arm(struct timers *ts, struct timer *t, int64_t when)
{
    if (heap_owns(ts, t)) {
        t->when = when;
        heap_fix(ts, t->pos - 1);
        return 0;
    }
    if (ts->n == ts->cap && heap_grow(ts) < 0) return -1;
    t->when = when;
    heap_place(ts, ts->n++, t);
    sift_up(ts, ts->n - 1);
    return 0;
}

void timer_cancel(struct timers *ts, struct timer *t)
{
    if (!heap_owns(ts, t)) return;
    uint32_t i = t->pos - 1;
    t->pos = 0;
    struct timer *last = ts->heap[--ts->n];
    if (i == ts->n) return;
    heap_place(ts, i, last);
    heap_fix(ts, i);
}

struct timer *timers_pop_expired(struct timers *ts, int64_t now)
{
    if (ts->n == 0 || ts->heap[0]->when > now) return NULL;
    struct timer *t = ts->heap[0];
    timer_cancel(ts, t);
    return t;
}

int timers_next(const struct timers *ts, int64_t now)
{
    if (ts->n == 0) return -1;
    int64_t when = ts->heap[0]->when;
    if (when <= now) return 0;
    /* Computed without subtracting first: when - now may overflow. */
    if (now < 0 ? when > INT_MAX + now : when - now > INT_MAX) return INT_MAX;
    return (int)(when - now);
}
