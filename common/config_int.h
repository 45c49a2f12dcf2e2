/* The configuration loader's internals, shared by common/config*.c only:
 * config.c reads the file and owns the parse state, config_value.c parses
 * and prints the generic value forms, config_keys.c holds the per-section
 * keys and the one table (conf_keys) that drives parsing, defaults and -T.
 * Memory from conf_palloc/conf_pdup belongs to an arena; nothing is freed. */
#ifndef PORTICO_CONFIG_INT_H
#define PORTICO_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"

struct arena;

#define MAX_NAME 63 /* section names: logs and metric labels */

enum sec_kind { SEC_NONE, SEC_MAIN, SEC_LISTENER, SEC_UPSTREAM, SEC_ROUTE, SEC_SKIP };

struct parse;
struct conf_key;

enum num_kind { NUM_NONE, NUM_UINT, NUM_INT, NUM_DURATION, NUM_SIZE, NUM_SIZE64 };

/* How one type of value is parsed (into the section struct BASE) and printed. */
struct conf_type {
    int (*parse)(struct parse *p, const struct conf_key *k, void *base, const char *v);
    void (*dump)(FILE *out, const struct conf_key *k, const void *base, const struct config *c);
    enum num_kind num;
    int64_t unset; /* initial value of a number field that has no default */
};

struct conf_key {
    enum sec_kind sec;
    const char *key;
    const struct conf_type *type;
    size_t off;      /* field in struct config / conf_listener / ... */
    size_t cnt;      /* list types: the unsigned element count beside it */
    const char *def; /* default, parsed like a value; NULL = none */
    int64_t min, max;
    bool list; /* may repeat */
    const void *aux;
};

/* A name used before its section may be defined, resolved after the file. */
struct ref {
    enum sec_kind kind; /* SEC_LISTENER or SEC_UPSTREAM */
    unsigned route;
    const char *name;
    int line;
};

struct seen_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int line;
};

struct parse {
    const char *file;
    FILE *errf, *f;
    char *dir; /* the config file's directory, absolute */
    struct config *c;
    struct arena *tmp; /* scratch, freed when loading ends */
    int lineno, nerrors;
    bool oom;
    char *line;
    size_t linecap;
    const char *long_value; /* the value of a line too long for inih */
    bool expect_call, called;
    int main_line;
    enum sec_kind kind; /* current section */
    unsigned idx;
    char label[MAX_NAME + 16]; /* "[listener public]" for messages */
    int *seen;                 /* per conf_keys entry: line it was set in this section */
    struct ref *refs;
    unsigned nrefs;
    struct seen_addr *addrs;
    unsigned naddrs;
    /* For whole-file checks not to repeat an error in other words: header
     * lines of sections with a bad line, and refused section headers. */
    int sec_line; /* header line of the current section */
    int *broken;
    unsigned nbroken;
    unsigned bad_headers;
    bool validating;
};

/* Enumerations: aux is a {name, value} list; value -1 = a later phase. */
struct enum_name {
    const char *name;
    int value;
};

/* Paths, relative to the config file's directory. */
struct path_rule {
    const char *keep; /* a word kept as is: "stderr", "stdout" */
    bool off;         /* "off" stores NULL */
    bool readable;    /* the file must be readable now */
    bool writable;    /* it (or, when missing, its directory) must be writable now */
};

/* ---- config.c: errors and allocation ---- */

/* Count an error and print "FILE:LINE: message" to p->errf (if any); a bad
 * line also marks its section, for whole-file checks to stay quiet about it. */
__attribute__((format(printf, 3, 4))) void conf_perr_at(struct parse *p, int line, const char *fmt,
                                                        ...);
#define perr(p, ...) conf_perr_at((p), (p)->lineno, __VA_ARGS__)

/* "invalid KEY "VALUE": reason"; returns -1 for the caller to pass up. */
__attribute__((format(printf, 4, 5))) int conf_bad(struct parse *p, const struct conf_key *k,
                                                   const char *v, const char *fmt, ...);

/* N bytes from arena A, or NULL after reporting "out of memory" once. */
void *conf_palloc(struct parse *p, struct arena *a, size_t n);
/* S copied into the config's arena; NULL when out of memory (reported). */
char *conf_pdup(struct parse *p, const char *s);
/* A copy of V in the scratch arena, to cut into words; NULL when out of memory. */
char *conf_scratch(struct parse *p, const char *v);
/* Append a zeroed element of SZ bytes to the array at *SLOT holding *N
 * elements (growing it in arena A); returns it, or NULL when out of memory. */
void *conf_vec_add(struct parse *p, struct arena *a, void *slot, unsigned *n, size_t sz);

static inline void *field(const void *base, const struct conf_key *k)
{
    return (char *)base + k->off;
}

static inline unsigned *count(const void *base, const struct conf_key *k)
{
    return (unsigned *)((char *)base + k->cnt);
}

/* ---- config_value.c: value forms and generic types ---- */

/* Decimal digits at S, up to the first non-digit (*END); -1 when there are
 * none or on overflow. */
int conf_digits_parse(const char *s, uint64_t *v, const char **end);

/* Parsers store V into BASE at k->off and return 0, or -1 after reporting.
 * Dumpers print "KEY = VALUE" lines, or nothing when unset. */
int conf_number_parse(struct parse *p, const struct conf_key *k, void *base, const char *v);
void conf_number_dump(FILE *out, const struct conf_key *k, const void *base,
                      const struct config *c);
/* Store V into a number field of the width k->type->num says. */
void conf_number_set(const struct conf_key *k, void *base, int64_t v);
int conf_bool_parse(struct parse *p, const struct conf_key *k, void *base, const char *v);
void conf_bool_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c);
int conf_string_parse(struct parse *p, const struct conf_key *k, void *base, const char *v);
void conf_string_dump(FILE *out, const struct conf_key *k, const void *base,
                      const struct config *c);
int conf_enum_parse(struct parse *p, const struct conf_key *k, void *base, const char *v);
void conf_enum_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c);
int conf_words_parse(struct parse *p, const struct conf_key *k, void *base, const char *v);
int conf_path_parse(struct parse *p, const struct conf_key *k, void *base, const char *v);
void conf_path_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c);
/* Refuses every value: keys of a later phase. on_key knows these keys by
 * this function, so that one without a value is still "not supported yet". */
int conf_unsupported_parse(struct parse *p, const struct conf_key *k, void *base, const char *v);

/* V made absolute against the config file's directory, in the config's
 * arena; NULL when out of memory (reported). */
char *conf_path_resolve(struct parse *p, const char *v);
/* 0 when PATH is readable now, else -1 after reporting. */
int conf_path_check(struct parse *p, const char *path);

/* ---- config_keys.c: the table ---- */

extern const struct conf_key conf_keys[];
extern const size_t conf_nkeys;

#endif
