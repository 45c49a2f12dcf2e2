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
/* Is CH an RFC 9110 token character (header names, methods)? */
bool str_is_tchar(unsigned char ch);
/* Does C string S hold a control character other than tab (or DEL)? */
bool str_has_ctl(const char *s);
/* Split a writable string in place: returns the next word of *CURSOR
 * delimited by any byte of SEP and advances *CURSOR; NULL when none is left. */
char *str_word_next(char **cursor, const char *sep);

#endif
