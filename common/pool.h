/* Pool: a free list of equal-size objects that keeps what recent load
 * needed and gives back the rest. Get and put never call the allocator in
 * steady state; pool_trim (called a few times a second) frees spare objects
 * beyond the peak in use since the previous trim, so a burst's memory goes
 * back within two trims while steady traffic never churns. */
#ifndef PORTICO_POOL_H
#define PORTICO_POOL_H

#include <stddef.h>

struct pool {
    void *free;            /* singly linked through each object's first word */
    size_t size;           /* object size, >= sizeof(void *) */
    unsigned nfree, inuse; /* spare and handed out */
    unsigned peak;         /* most in use since the last trim */
    unsigned keep;         /* spares always kept */
};

/* Set up an empty pool of SIZE-byte objects keeping KEEP spares. */
void pool_init(struct pool *p, size_t size, unsigned keep);
/* An object (contents undefined), or NULL when out of memory. */
void *pool_get(struct pool *p);
/* Give OBJ back; NULL is fine. */
void pool_put(struct pool *p, void *obj);
/* Free spares beyond max(keep, peak) in all; returns how many were freed. */
unsigned pool_trim(struct pool *p);
/* Free every spare (at exit). Objects still in use are the caller's. */
void pool_drain(struct pool *p);

#endif
