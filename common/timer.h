/* Timers: a binary min-heap of deadlines, one per worker. Arming, moving and
 * cancelling are O(log n) with no syscall; the loop asks for the next
 * deadline to bound epoll_wait and pops what has expired. Timers are
 * embedded in their owners (container_of), so the heap owns no timer. */
#ifndef PORTICO_TIMER_H
#define PORTICO_TIMER_H

#include <stdint.h>

struct timer {
    int64_t when; /* monotonic ms */
    uint32_t pos; /* heap index + 1; 0 = not armed */
};

struct timers {
    struct timer **heap;
    uint32_t n, cap;
};

/* Returns 0, or -1 when out of memory. */
int timers_init(struct timers *ts, uint32_t cap);
void timers_free(struct timers *ts);
/* Arm or move T to fire at WHEN. Returns 0, or -1 when the heap cannot grow. */
int timer_arm(struct timers *ts, struct timer *t, int64_t when);
/* Disarm T; a no-op when it is not armed. */
void timer_cancel(struct timers *ts, struct timer *t);
static inline int timer_armed(const struct timer *t)
{
    return t->pos != 0;
}
/* Pop and return one timer whose deadline is <= NOW, or NULL. */
struct timer *timers_pop_expired(struct timers *ts, int64_t now);
/* Milliseconds until the earliest deadline (0 if already due), -1 if none. */
int timers_next(const struct timers *ts, int64_t now);

#endif
