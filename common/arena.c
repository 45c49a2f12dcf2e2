/* Arena: bump allocation from a list of chunks, all freed together. The head
 * chunk is the one being filled; an allocation too big for a normal chunk gets
 * a chunk of its own, linked behind the head so the head's free space is kept. */
#include "common/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK 16384
#define ARENA_ALIGN 16

struct chunk {
    struct chunk *next;
    size_t size, used;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena {
    struct chunk *head;
};

static struct chunk *chunk_new(size_t size)
{
    struct chunk *c = malloc(sizeof(*c) + size);
    if (!c) return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

struct arena *arena_new(void)
{
    struct arena *a = malloc(sizeof(*a));
    if (!a) return NULL;
    a->head = NULL;
    return a;
}

void arena_free(struct arena *a)
{
    if (!a) return;
    struct chunk *c = a->head;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

/* Round N up to the alignment; SIZE_MAX when that would overflow. */
static size_t align_up(size_t n)
{
    if (n > SIZE_MAX - (ARENA_ALIGN - 1)) return SIZE_MAX;
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

void *arena_alloc(struct arena *a, size_t n)
{
    size_t need = align_up(n ? n : 1);
    if (need == SIZE_MAX || need > SIZE_MAX / 2) return NULL;
    struct chunk *c = a->head;
    if (c && c->size - c->used >= need) {
        void *p = c->data + c->used;
        c->used += need;
        return memset(p, 0, need);
    }
    if (need > ARENA_CHUNK / 4) {
        /* A large block gets its own chunk; the head keeps its free space. */
        struct chunk *big = chunk_new(need);
        if (!big) return NULL;
        big->used = need;
        if (c) {
            big->next = c->next;
            c->next = big;
        } else {
            a->head = big;
        }
        return memset(big->data, 0, need);
    }
    struct chunk *fresh = chunk_new(ARENA_CHUNK);
    if (!fresh) return NULL;
    fresh->next = c;
    a->head = fresh;
    fresh->used = need;
    return memset(fresh->data, 0, need);
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = arena_alloc(a, len + 1);
    if (!p) return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

void *arena_grow(struct arena *a, void *old, size_t n, size_t sz)
{
    if (sz && n + 1 > SIZE_MAX / sz) return NULL;
    void *p = arena_alloc(a, (n + 1) * sz);
    if (p && old && n) memcpy(p, old, n * sz);
    return p;
}
