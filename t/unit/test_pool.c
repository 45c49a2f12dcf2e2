/* Pool: reuse without allocation, trimming to the recent peak. */
#include "common/pool.h"
#include "t/unit/tap.h"

int main(void)
{
    struct pool p;
    pool_init(&p, 64, 2);
    void *a = pool_get(&p), *b = pool_get(&p);
    ok(a && b && a != b, "two distinct objects");
    pool_put(&p, a);
    is_int(p.nfree, 1, "one spare after a put");
    ok(pool_get(&p) == a, "a spare is reused first");
    pool_put(&p, a);
    pool_put(&p, b);

    /* A burst of 100, then quiet: the first trim keeps the peak, the next frees. */
    void *v[100];
    for (int i = 0; i < 100; i++)
        v[i] = pool_get(&p);
    is_int(p.peak, 100, "peak follows the burst");
    for (int i = 0; i < 100; i++)
        pool_put(&p, v[i]);
    is_int(pool_trim(&p), 0, "first trim after the burst keeps its peak");
    is_int(pool_trim(&p), 98, "second trim frees down to keep");
    is_int(p.nfree, 2, "keep spares remain");

    /* Steady load of 10 in use: trims never free what it needs. */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 10; i++)
            v[i] = pool_get(&p);
        for (int i = 0; i < 10; i++)
            pool_put(&p, v[i]);
        pool_trim(&p);
    }
    is_int(p.nfree, 10, "steady load keeps its working set");
    pool_drain(&p);
    is_int(p.nfree, 0, "drain frees every spare");
    pool_put(&p, pool_get(&p));
    pool_drain(&p);
    return tap_done();
}
