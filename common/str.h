/* Byte-string helpers on (pointer, length) slices; no allocation. */
#ifndef PORTICO_STR_H
#define PORTICO_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct slice {
    const char *p;
    size_t n;
};

/* Case-insensitive ASCII equality of a slice and a C string. */
bool str_ieq(const char *a, size_t an, const char *b);
/* Case-insensitive ASCII equality of two slices. */
bool str_ieqn(const char *a, size_t an, const char *b, size_t bn);
/* Does the comma-separated token list [p, p+n) contain TOKEN (case-insensitive)? */
bool str_list_has(const char *p, size_t n, const char *token);
/* Trim spaces and tabs at both ends. */
struct slice str_trim(const char *p, size_t n);

#endif
