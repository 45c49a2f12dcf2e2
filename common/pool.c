/* Free-list pool with peak-based trimming; see pool.h. */
#include "common/pool.h"

#include <stdlib.h>

void pool_init(struct pool *p, size_t size, unsigned keep)
{
    p->free = NULL;
    p->size = size < sizeof(void *) ? sizeof(void *) : size;
    p->nfree = p->inuse = p->peak = 0;
    p->keep = keep;
}

void *pool_get(struct pool *p)
{
    void *o = p->free;
    if (o) {
        p->free = *(void **)o;
        p->nfree--;
    } else if (!(o = malloc(p->size))) {
        return NULL;
    }
    if (++p->inuse > p->peak) p->peak = p->inuse;
    return o;
}

void pool_put(struct pool *p, void *obj)
{
    if (!obj) return;
    *(void **)obj = p->free;
    p->free = obj;
    p->nfree++;
    p->inuse--;
}

unsigned pool_trim(struct pool *p)
{
    unsigned want = p->peak > p->keep ? p->peak : p->keep, freed = 0;
    while (p->nfree && p->nfree + p->inuse > want) {
        void *o = p->free;
        p->free = *(void **)o;
        p->nfree--;
        free(o);
        freed++;
    }
    p->peak = p->inuse;
    return freed;
}

void pool_drain(struct pool *p)
{
    unsigned keep = p->keep;
    p->keep = 0;
    p->peak = 0;
    pool_trim(p);
    p->keep = keep;
}
