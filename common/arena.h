/* Arena: bump allocation from chunks, freed all at once. Used for the
 * configuration (one arena per loaded config). Not thread-safe. */
#ifndef PORTICO_ARENA_H
#define PORTICO_ARENA_H

#include <stddef.h>

struct arena;

/* Returns a new arena or NULL when out of memory. */
struct arena *arena_new(void);
/* Free the arena and every allocation from it. NULL is fine. */
void arena_free(struct arena *a);
/* Zeroed, 16-byte aligned memory owned by A; NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t n);
/* Copies owned by A; NULL when out of memory. */
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Grow an array: returns a copy of OLD (n elements of size sz) with room
 * for n+1; the old copy stays in the arena until it is freed. */
void *arena_grow(struct arena *a, void *old, size_t n, size_t sz);

#endif
