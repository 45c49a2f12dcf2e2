/* Shared by the libFuzzer targets in t/fuzz: invariant checks that abort
 * (libFuzzer saves the input), the split of a stream into reads, and the
 * byte classes the checks use. Written from RFC 9110/9112, not from the
 * code under test, so that a check is an independent opinion. */
#ifndef PORTICO_FUZZ_HARNESS_H
#define PORTICO_FUZZ_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

/* An invariant of portico failed: say which, then abort so that libFuzzer
 * records the input as a crash. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* How a stream arrives: one read per call of split_next(). The mode comes
 * from a byte of the input so that libFuzzer can vary the split of a given
 * stream: 0 all at once, 1 a byte at a time, otherwise pseudo-random reads
 * of 1..2^k bytes. */
struct split {
    uint32_t state;
    uint32_t max;
};

static inline void split_init(struct split *s, uint8_t mode, uint32_t salt)
{
    s->state = 0x9e3779b9u ^ ((uint32_t)mode << 24) ^ salt;
    if (!s->state) s->state = 1;
    if ((mode & 7) == 0)
        s->max = 0; /* unlimited */
    else if ((mode & 7) == 1)
        s->max = 1;
    else
        s->max = 1u << (1 + ((mode >> 3) & 7)); /* 2..256 */
}

static inline uint32_t split_next(struct split *s)
{
    if (s->max == 0) return UINT32_MAX;
    if (s->max == 1) return 1;
    /* xorshift32 */
    uint32_t x = s->state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s->state = x;
    return 1 + x % s->max;
}

/* llhttp comes prebuilt, without coverage instrumentation: libFuzzer would
 * see only the callbacks. So the parser's state after each execute (and
 * the step from the previous one) becomes a coverage feature through
 * libFuzzer's extra counters; reads of a byte at a time then reveal every
 * transition. Only the harness looks inside llhttp_t. */
__attribute__((section("__libfuzzer_extra_counters"), used)) static uint8_t fz_counters[1 << 15];

static inline void fz_parser_feature(const void *parser, uint32_t *prev)
{
    const llhttp_t *p = parser;
    uint32_t key = (uint32_t)(uintptr_t)p->_current;
    key = key * 33 + (uint32_t)p->_index;
    key = key * 33 + p->header_state;
    key = key * 33 + (uint32_t)p->error;
    key = key * 33 + p->flags;
    key = key * 33 + p->finish;
    fz_counters[(key * 2654435761u) % sizeof(fz_counters)]++;
    fz_counters[((*prev * 31 + key) * 2246822519u) % sizeof(fz_counters)]++;
    *prev = key;
}

/* Findings reported but not fixed yet may be skipped by name, so that a
 * long run looks for new ones: FUZZ_KNOWN=certificate (see README.md).
 * Call from LLVMFuzzerInitialize. */
static inline bool fz_known(const char *name)
{
    const char *k = getenv("FUZZ_KNOWN");
    size_t n = strlen(name);
    for (const char *p = k; p && *p;) {
        size_t len = strcspn(p, ", ");
        if (len == n && memcmp(p, name, n) == 0) return true;
        p += len;
        p += strspn(p, ", ");
    }
    return false;
}

/* RFC 9110 5.6.2 tchar. */
static inline bool fz_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static inline bool fz_hex(unsigned char c, unsigned *v)
{
    if (c >= '0' && c <= '9')
        *v = c - '0';
    else if (c >= 'a' && c <= 'f')
        *v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        *v = c - 'A' + 10;
    else
        return false;
    return true;
}

/* A field value may hold no CR, LF or NUL (RFC 9110 5.5), and http1.c
 * promises no other control byte but HTAB either. */
static inline bool fz_clean_value(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    }
    return true;
}

/* Offset of the first CRLFCRLF at or after FROM in P[0, N), or N. */
static inline size_t fz_head_end(const char *p, size_t from, size_t n)
{
    for (size_t i = from; i + 4 <= n; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') return i + 4;
    return n;
}

#endif
