/* Configuration loader. inih splits "key = value" lines; conf_keys, one table,
 * says per section kind and key how a value is parsed, where it is stored,
 * its default and how -T prints it, so parsing and dumping cannot drift. Our
 * own line reader counts lines, opens sections (inih never sees headers) and
 * feeds inih lines longer than its buffer. Every error is reported. */
#include "common/config.h"

#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/log.h"
#include "common/net.h"
#include "common/ipcount.h"
#include "common/shm.h"
#include "common/str.h"
#include "worker/tls.h"
#include "worker/tls_upstream.h"

#define MAX_LINE 65536    /* longer lines are refused, not truncated */
#define MAX_NAME 63       /* section names: logs and metric labels */
#define DAY_MS 86400000LL /* upper bound of every duration */

_Static_assert(CONF_MAX_LISTENERS <= 64, "listener_mask is a uint64_t");
_Static_assert(sizeof(enum conf_log_format) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum conf_balance) == sizeof(int), "enums are stored as int");

enum sec_kind { SEC_NONE, SEC_MAIN, SEC_LISTENER, SEC_UPSTREAM, SEC_ROUTE, SEC_SKIP };
static const char *const sec_words[] = {"", "main", "listener", "upstream", "route", ""};

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

/* ---- errors and allocation ---- */

__attribute__((format(printf, 3, 4))) static void perr_at(struct parse *p, int line,
                                                          const char *fmt, ...)
{
    p->nerrors++;
    if (!p->validating && p->kind > SEC_MAIN && p->kind != SEC_SKIP && p->sec_line &&
        (!p->nbroken || p->broken[p->nbroken - 1] != p->sec_line)) {
        int *b = realloc(p->broken, (p->nbroken + 1) * sizeof(*b));
        if (b) {
            p->broken = b;
            p->broken[p->nbroken++] = p->sec_line;
        }
    }
    if (!p->errf) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(p->errf, "%s:%d: ", p->file, line);
    vfprintf(p->errf, fmt, ap);
    fputc('\n', p->errf);
    va_end(ap);
}
#define perr(p, ...) perr_at((p), (p)->lineno, __VA_ARGS__)

/* "invalid KEY "VALUE": reason"; returns -1 for the caller to pass up. */
__attribute__((format(printf, 4, 5))) static int bad(struct parse *p, const struct conf_key *k,
                                                     const char *v, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    perr(p, "invalid %s \"%s\": %s", k->key, v, why);
    return -1;
}

static void *palloc(struct parse *p, struct arena *a, size_t n)
{
    void *m = arena_alloc(a, n);
    if (!m && !p->oom) {
        p->oom = true;
        perr(p, "out of memory");
    }
    return m;
}

static char *pdup(struct parse *p, const char *s)
{
    char *d = palloc(p, p->c->arena, strlen(s) + 1);
    return d ? strcpy(d, s) : NULL;
}

/* Append a zeroed element to the array *SLOT (of type T *) holding *N. The
 * capacity follows from *N (4, 8, 16, ...), so no field has to store it and
 * a long server list costs linear, not quadratic, arena space. */
static void *vec_add(struct parse *p, struct arena *a, void *slot, unsigned *n, size_t sz)
{
    void *arr;
    memcpy(&arr, slot, sizeof(arr));
    if (*n == 0 || (*n >= 4 && !(*n & (*n - 1)))) {
        size_t cap = *n < 4 ? 4 : 2 * (size_t)*n;
        void *fresh = palloc(p, a, cap * sz);
        if (!fresh) return NULL;
        if (*n) memcpy(fresh, arr, *n * sz);
        memcpy(slot, &fresh, sizeof(fresh));
        arr = fresh;
    }
    return (char *)arr + (size_t)(*n)++ * sz;
}

static inline void *field(const void *base, const struct conf_key *k)
{
    return (char *)base + k->off;
}

static inline unsigned *count(const void *base, const struct conf_key *k)
{
    return (unsigned *)((char *)base + k->cnt);
}

/* ---- small helpers ---- */

static bool has_space_or_ctl(const char *s)
{
    return str_has_ctl(s) || strpbrk(s, " \t");
}

static char *scratch(struct parse *p, const char *v)
{
    char *d = palloc(p, p->tmp, strlen(v) + 1);
    return d ? strcpy(d, v) : NULL;
}

/* ---- value parsers (public, also used by tests) ---- */

static int digits_parse(const char *s, uint64_t *v, const char **end)
{
    uint64_t n = 0;
    if (*s < '0' || *s > '9') return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (n > (UINT64_MAX - 9) / 10) return -1;
        n = n * 10 + (uint64_t)(*s - '0');
    }
    *v = n;
    *end = s;
    return 0;
}

static int scaled_parse(const char *s, int64_t *out, const char *const units[],
                        const uint64_t mult[], size_t nunits)
{
    uint64_t n;
    const char *end;
    if (digits_parse(s, &n, &end) < 0) return -1;
    for (size_t i = 0; i < nunits; i++) {
        if (strcasecmp(end, units[i]) != 0) continue;
        if (n > (uint64_t)INT64_MAX / mult[i]) return -1;
        *out = (int64_t)(n * mult[i]);
        return 0;
    }
    return -1;
}

int config_parse_duration(const char *s, int64_t *ms)
{
    static const char *const units[] = {"", "ms", "s", "m", "h"};
    static const uint64_t mult[] = {1000, 1, 1000, 60000, 3600000};
    return scaled_parse(s, ms, units, mult, 5);
}

int config_parse_size(const char *s, int64_t *bytes)
{
    static const char *const units[] = {"", "k", "m", "g"};
    static const uint64_t mult[] = {1, 1024, 1024 * 1024, 1024 * 1024 * 1024};
    return scaled_parse(s, bytes, units, mult, 4);
}

int config_parse_bool(const char *s, bool *b)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *b = true, 0;
        if (strcasecmp(s, no[i]) == 0) return *b = false, 0;
    }
    return -1;
}

int config_parse_hostport(const char *s, struct conf_addr *a, int resolve)
{
    const char *why;
    if (strlen(s) >= sizeof(a->text)) return -1;
    if (net_addr_parse(s, resolve, &a->ss, &a->len, &why) < 0) return -1;
    strcpy(a->text, s);
    return 0;
}

static void fmt_duration(int64_t ms, char *buf, size_t cap)
{
    /* Seconds read best for timeouts ("60s", as SPEC writes them); hours for
     * the long ones. */
    if (ms && ms % 3600000 == 0)
        snprintf(buf, cap, "%lldh", (long long)(ms / 3600000));
    else if (ms % 1000 == 0)
        snprintf(buf, cap, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, cap, "%lldms", (long long)ms);
}

static void fmt_size(int64_t n, char *buf, size_t cap)
{
    static const char units[] = "gmk";
    for (int i = 0; i < 3; i++) {
        int64_t m = (int64_t)1 << (10 * (3 - i));
        if (n && n % m == 0) {
            snprintf(buf, cap, "%lld%c", (long long)(n / m), units[i]);
            return;
        }
    }
    snprintf(buf, cap, "%lld", (long long)n);
}

static void fmt_number(const struct conf_key *k, int64_t v, char *buf, size_t cap)
{
    if (k->type->num == NUM_DURATION)
        fmt_duration(v, buf, cap);
    else if (k->type->num == NUM_SIZE || k->type->num == NUM_SIZE64)
        fmt_size(v, buf, cap);
    else
        snprintf(buf, cap, "%lld", (long long)v);
}

/* ---- generic types ---- */

static int number_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    int64_t n;
    int rc;
    const char *expect = "expected a number";
    enum num_kind num = k->type->num;
    if (num == NUM_DURATION) {
        rc = config_parse_duration(v, &n);
        expect = "expected a duration like 250ms, 10s, 5m or 1h";
    } else if (num == NUM_SIZE || num == NUM_SIZE64) {
        rc = config_parse_size(v, &n);
        expect = "expected a size like 512, 16k, 8m or 1g";
    } else {
        const char *end;
        uint64_t u = 0;
        rc = digits_parse(v, &u, &end) < 0 || *end || u > INT64_MAX ? -1 : 0;
        n = (int64_t)u;
    }
    if (rc < 0) return bad(p, k, v, "%s", expect);
    if (n < k->min || n > k->max) {
        char lo[32], hi[32];
        fmt_number(k, k->min, lo, sizeof(lo));
        fmt_number(k, k->max, hi, sizeof(hi));
        return bad(p, k, v, "must be between %s and %s", lo, hi);
    }
    void *f = field(base, k);
    if (num == NUM_UINT) *(unsigned *)f = (unsigned)n;
    if (num == NUM_INT) *(int *)f = (int)n;
    if (num == NUM_SIZE) *(size_t *)f = (size_t)n;
    if (num == NUM_DURATION || num == NUM_SIZE64) *(int64_t *)f = n;
    return 0;
}

static int64_t number_get(const struct conf_key *k, const void *base)
{
    const void *f = field(base, k);
    switch (k->type->num) {
    case NUM_UINT:
        return *(const unsigned *)f;
    case NUM_INT:
        return *(const int *)f;
    case NUM_SIZE:
        return (int64_t) * (const size_t *)f;
    default:
        return *(const int64_t *)f;
    }
}

static void number_set(const struct conf_key *k, void *base, int64_t v)
{
    void *f = field(base, k);
    if (k->type->num == NUM_UINT) *(unsigned *)f = (unsigned)v;
    if (k->type->num == NUM_INT) *(int *)f = (int)v;
    if (k->type->num == NUM_SIZE) *(size_t *)f = (size_t)v;
    if (k->type->num == NUM_DURATION || k->type->num == NUM_SIZE64) *(int64_t *)f = v;
}

/* A number with no default prints only when set (0 or the type's unset). */
static void number_dump(FILE *out, const struct conf_key *k, const void *base,
                        const struct config *c)
{
    int64_t v = number_get(k, base);
    if (!k->def && v == k->type->unset) return;
    char buf[32];
    fmt_number(k, v, buf, sizeof(buf));
    fprintf(out, "%s = %s\n", k->key, buf);
}

static int bool_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    bool b;
    if (config_parse_bool(v, &b) < 0) return bad(p, k, v, "expected on or off");
    *(bool *)field(base, k) = b;
    return 0;
}

static void bool_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c)
{
    fprintf(out, "%s = %s\n", k->key, *(const bool *)field(base, k) ? "on" : "off");
}

/* Free text: anything but control characters. */
static int string_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    if (str_has_ctl(v)) return bad(p, k, v, "control characters are not allowed");
    char *s = pdup(p, v);
    if (!s) return -1;
    *(char **)field(base, k) = s;
    return 0;
}

static void string_dump(FILE *out, const struct conf_key *k, const void *base,
                        const struct config *c)
{
    const char *s = *(char *const *)field(base, k);
    if (s) fprintf(out, "%s = %s\n", k->key, s);
}

/* Enumerations: aux is a {name, value} list; value -1 = a later phase. */
struct enum_name {
    const char *name;
    int value;
};

static int enum_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    size_t wl = strcspn(v, " \t");
    for (const struct enum_name *e = k->aux; e->name; e++) {
        if (strlen(e->name) != wl || strncmp(e->name, v, wl) != 0) continue;
        if (e->value < 0) {
            perr(p, "\"%s = %s\" is not supported yet", k->key, e->name);
            return -1;
        }
        if (v[wl]) break; /* only phase-2 values take arguments */
        *(int *)field(base, k) = e->value;
        return 0;
    }
    char names[128] = "";
    for (const struct enum_name *e = k->aux; e->name; e++) {
        if (e->value < 0) continue;
        if (names[0]) strncat(names, ", ", sizeof(names) - strlen(names) - 1);
        strncat(names, e->name, sizeof(names) - strlen(names) - 1);
    }
    return bad(p, k, v, "expected one of %s", names);
}

static void enum_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c)
{
    int v = *(const int *)field(base, k);
    for (const struct enum_name *e = k->aux; e->name; e++)
        if (e->value == v) fprintf(out, "%s = %s\n", k->key, e->name);
}

/* Words from a fixed vocabulary, stored as one normalized string. aux lists
 * the accepted words, then NULL, then words of a later phase, then NULL. */
static int words_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    const char *const *ok = k->aux;
    char *cur = scratch(p, v), *w;
    char *norm = palloc(p, p->c->arena, strlen(v) + 1);
    if (!cur || !norm) return -1;
    while ((w = str_word_next(&cur, " \t,"))) {
        const char *const *i = ok;
        for (; *i && strcmp(*i, w) != 0; i++)
            ;
        if (!*i) {
            for (i++; *i && strcmp(*i, w) != 0; i++)
                ;
            if (*i) {
                perr(p, "\"%s = %s\" is not supported yet", k->key, w);
                return -1;
            }
            return bad(p, k, v, "unknown word \"%s\"", w);
        }
        if (norm[0]) strcat(norm, " ");
        strcat(norm, w);
    }
    if (!norm[0]) return bad(p, k, v, "expected at least one word");
    *(char **)field(base, k) = norm;
    return 0;
}

/* Paths, relative to the config file's directory. */
struct path_rule {
    const char *keep; /* a word kept as is: "stderr", "stdout" */
    bool off;         /* "off" stores NULL */
    bool readable;    /* the file must be readable now */
    bool writable;    /* it (or, when missing, its directory) must be writable now */
};

static char *path_resolve(struct parse *p, const char *v)
{
    if (v[0] == '/') return pdup(p, v);
    size_t n = strlen(p->dir) + strlen(v) + 2;
    char *s = palloc(p, p->c->arena, n);
    if (s) snprintf(s, n, "%s/%s", p->dir, v);
    return s;
}

static int path_check(struct parse *p, const char *path)
{
    if (access(path, R_OK) == 0) return 0;
    perr(p, "cannot read \"%s\": %s", path, strerror(errno));
    return -1;
}

/* A log or pid file portico will create or append to: -t must catch a
 * missing or read-only directory, not the start. */
static int path_check_writable(struct parse *p, const char *path)
{
    if (access(path, W_OK) == 0) return 0;
    if (errno == ENOENT) {
        char *copy = scratch(p, path);
        if (!copy) return -1;
        char *dir = dirname(copy);
        if (access(dir, W_OK | X_OK) == 0) return 0;
        perr(p, "cannot create \"%s\": directory \"%s\": %s", path, dir, strerror(errno));
        return -1;
    }
    perr(p, "cannot write \"%s\": %s", path, strerror(errno));
    return -1;
}

static int path_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    const struct path_rule *r = k->aux;
    char **f = field(base, k);
    if (r->off && strcmp(v, "off") == 0) return *f = NULL, 0;
    if (r->keep && strcmp(v, r->keep) == 0) return (*f = pdup(p, v)) ? 0 : -1;
    if (str_has_ctl(v)) return bad(p, k, v, "control characters are not allowed");
    if (!(*f = path_resolve(p, v))) return -1;
    if (r->writable) return path_check_writable(p, *f);
    return r->readable ? path_check(p, *f) : 0;
}

static void path_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c)
{
    const struct path_rule *r = k->aux;
    const char *s = *(char *const *)field(base, k);
    if (s || r->off) fprintf(out, "%s = %s\n", k->key, s ? s : "off");
}

static int unsupported_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    perr(p, "\"%s\" is not supported yet", k->key);
    return -1;
}

/* ---- [main] ---- */

static int workers_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    unsigned *w = field(base, k);
    if (strcmp(v, "auto") == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        *w = n < 1 ? 1 : n > k->max ? (unsigned)k->max : (unsigned)n;
        return 0;
    }
    const char *end;
    uint64_t n;
    if (digits_parse(v, &n, &end) < 0 || *end || n < (uint64_t)k->min || n > (uint64_t)k->max)
        return bad(p, k, v, "expected auto or a number from %lld to %lld", (long long)k->min,
                   (long long)k->max);
    *w = (unsigned)n;
    return 0;
}

static int user_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    if (has_space_or_ctl(v)) return bad(p, k, v, "expected a user name");
    if (!getpwnam(v)) {
        perr(p, "unknown user \"%s\"", v);
        return -1;
    }
    return string_parse(p, k, base, v);
}

/* ---- [listener] ---- */

static int listen_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    char *cur = scratch(p, v), *w;
    if (!cur) return -1;
    while ((w = str_word_next(&cur, " \t"))) {
        struct conf_addr a;
        const char *why = "too long";
        if (strlen(w) >= sizeof(a.text) || net_addr_parse(w, 0, &a.ss, &a.len, &why) < 0) {
            bad(p, k, w, "%s (use ADDR:PORT, [IPV6]:PORT or *:PORT)", why);
            continue;
        }
        strcpy(a.text, w);
        for (unsigned i = 0; i < p->naddrs; i++) {
            struct seen_addr *s = &p->addrs[i];
            if (s->len == a.len && memcmp(&s->ss, &a.ss, a.len) == 0) {
                perr(p, "listen address \"%s\" is already used at line %d", w, s->line);
                return -1;
            }
        }
        struct conf_addr *slot = vec_add(p, p->c->arena, field(base, k), count(base, k), sizeof(a));
        struct seen_addr *seen = vec_add(p, p->tmp, &p->addrs, &p->naddrs, sizeof(*seen));
        if (!slot || !seen) return -1;
        *slot = a;
        *seen = (struct seen_addr){a.ss, a.len, p->lineno};
    }
    return 0;
}

static void listen_dump(FILE *out, const struct conf_key *k, const void *base,
                        const struct config *c)
{
    const struct conf_addr *a = *(struct conf_addr *const *)field(base, k);
    for (unsigned i = 0; i < *count(base, k); i++)
        fprintf(out, "%s = %s\n", k->key, a[i].text);
}

/* Lists of strings: char ** at off, count at cnt. */
static int strv_add(struct parse *p, const struct conf_key *k, void *base, char *s)
{
    char **slot = vec_add(p, p->c->arena, field(base, k), count(base, k), sizeof(char *));
    if (!slot || !s) return -1;
    *slot = s;
    return 0;
}

static void strv_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c)
{
    char *const *v = *(char **const *)field(base, k);
    for (unsigned i = 0; i < *count(base, k); i++)
        fprintf(out, "%s = %s\n", k->key, v[i]);
}

/* "CERT.pem KEY.pem": both resolved and readable, then stored with its line;
 * the pair itself is parsed and checked by tls_server_new once the whole
 * listener is known (config_validate). */
static int certificate_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    char *cur = scratch(p, v);
    if (!cur) return -1;
    char *cert = str_word_next(&cur, " \t"), *key = str_word_next(&cur, " \t");
    if (!cert || !key || str_word_next(&cur, " \t"))
        return bad(p, k, v, "expected CERT.pem KEY.pem");
    char *cp = path_resolve(p, cert), *kp = path_resolve(p, key);
    if (!cp || !kp) return -1;
    int rc = path_check(p, cp); /* one error per line: the key is checked once the cert reads */
    if (rc == 0) rc = path_check(p, kp);
    size_t n = strlen(cp) + strlen(kp) + 2;
    char *both = palloc(p, p->c->arena, n);
    if (!both) return -1;
    snprintf(both, n, "%s %s", cp, kp);
    /* Keep certificates and certificate_lines the same length: an entry
     * with unreadable files is not added at all (found by fuzz_config). */
    if (rc < 0 || strv_add(p, k, base, both) < 0) return -1;
    struct conf_listener *l = base;
    unsigned nlines = l->ncertificates - 1;
    int *line = vec_add(p, p->c->arena, &l->certificate_lines, &nlines, sizeof(int));
    if (!line) return -1;
    *line = p->lineno;
    return 0;
}

/* ---- [upstream] ---- */

static int server_option(struct parse *p, const struct conf_key *k, const char *v,
                         struct conf_server *s, const char *opt)
{
    const char *eq = strchr(opt, '=');
    size_t nl = eq ? (size_t)(eq - opt) : strlen(opt);
    uint64_t n = 0;
    const char *end = "";
    if (eq && digits_parse(eq + 1, &n, &end) < 0) end = "x";
    if (!eq && nl == 6 && strncmp(opt, "backup", nl) == 0) return s->backup = true, 0;
    if (!eq && nl == 4 && strncmp(opt, "down", nl) == 0) return s->down = true, 0;
    if (eq && nl == 4 && strncmp(opt, "name", nl) == 0 && eq[1])
        return (s->name = pdup(p, eq + 1)) ? 0 : -1;
    if (eq && nl == 6 && strncmp(opt, "weight", nl) == 0) {
        if (*end || n < 1 || n > 1000) return bad(p, k, v, "weight must be from 1 to 1000");
        return s->weight = (unsigned)n, 0;
    }
    if (eq && nl == 9 && strncmp(opt, "max_conns", nl) == 0) {
        if (*end || n > 1000000) return bad(p, k, v, "max_conns must be from 0 to 1000000");
        return s->max_conns = (unsigned)n, 0;
    }
    return bad(p, k, v, "unknown option \"%s\"", opt);
}

static int server_resolve(struct parse *p, const struct conf_key *k, const char *v,
                          struct conf_server *s)
{
    const char *why = "\"*\" is for listen addresses";
    int rc = s->hostport[0] == '*'
                 ? -1
                 : net_addr_parse(s->hostport, 1, &s->addr.ss, &s->addr.len, &why);
    if (rc == -2) {
        const char *h = s->hostport, *colon = strrchr(h, ':');
        perr(p, "cannot resolve \"%.*s\": %s", (int)(colon - h), h, why);
    }
    if (rc == -1) bad(p, k, v, "%s (use HOST:PORT, [IPV6]:PORT)", why);
    if (rc < 0) return -1;
    /* text is the address as written; a long host name gives way to the IP. */
    if (strlen(s->hostport) < sizeof(s->addr.text))
        strcpy(s->addr.text, s->hostport);
    else
        net_addr_str((struct sockaddr *)&s->addr.ss, s->addr.text, sizeof(s->addr.text));
    return 0;
}

static int server_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    struct conf_server s = {.weight = 1};
    char *cur = scratch(p, v), *w;
    if (!cur) return -1;
    const char *hp = str_word_next(&cur, " \t");
    if (!hp) return bad(p, k, v, "expected HOST:PORT");
    if (!(s.hostport = pdup(p, hp))) return -1;
    while ((w = str_word_next(&cur, " \t")))
        if (server_option(p, k, v, &s, w) < 0) return -1;
    if (str_has_ctl(s.name ? s.name : "")) return bad(p, k, v, "control characters in name");
    if (server_resolve(p, k, v, &s) < 0) return -1;
    if (!s.name) s.name = s.hostport;
    if (++p->c->nservers == SHM_MAX_SERVERS + 1)
        perr(p, "too many servers (at most %d in all upstreams)", SHM_MAX_SERVERS);
    struct conf_server *slot = vec_add(p, p->c->arena, field(base, k), count(base, k), sizeof(s));
    if (!slot) return -1;
    *slot = s;
    return 0;
}

static void server_dump(FILE *out, const struct conf_key *k, const void *base,
                        const struct config *c)
{
    const struct conf_server *s = *(struct conf_server *const *)field(base, k);
    for (unsigned i = 0; i < *count(base, k); i++, s++) {
        fprintf(out, "%s = %s", k->key, s->hostport);
        if (s->weight != 1) fprintf(out, " weight=%u", s->weight);
        if (s->max_conns) fprintf(out, " max_conns=%u", s->max_conns);
        if (s->backup) fputs(" backup", out);
        if (s->down) fputs(" down", out);
        if (strcmp(s->name, s->hostport) != 0) fprintf(out, " name=%s", s->name);
        fputc('\n', out);
    }
}

/* tls, tls_ca and tls_sni remember their line: the client context is built
 * (and its problems reported) once the whole upstream is known. */
static int tls_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    ((struct conf_upstream *)base)->tls_line = p->lineno;
    return bool_parse(p, k, base, v);
}

static int tls_ca_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    ((struct conf_upstream *)base)->tls_ca_line = p->lineno;
    return path_parse(p, k, base, v);
}

/* A DNS name (RFC 1123 labels): SNI carries no IP addresses (RFC 6066), and
 * servers named by an IP are checked against the certificate's IP SANs. */
static int tls_sni_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    ((struct conf_upstream *)base)->tls_sni_line = p->lineno;
    size_t n = strlen(v), label = 0;
    bool alpha = false;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        if (ch == '.') {
            if (!label || v[i - 1] == '-') return bad(p, k, v, "expected a DNS host name");
            label = 0;
            continue;
        }
        bool letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (!letter && !(ch >= '0' && ch <= '9') && !(ch == '-' && label) && ch != '_')
            return bad(p, k, v, "expected a DNS host name");
        alpha = alpha || letter || ch == '-';
        if (++label > 63) return bad(p, k, v, "a label is longer than 63 characters");
    }
    if (!n || n > 253 || (n && v[n - 1] == '-'))
        return bad(p, k, v, "expected a DNS host name of 1 to 253 characters");
    if (!alpha)
        return bad(p, k, v,
                   "an IP address is not a name: leave tls_sni unset, the certificate's IP "
                   "addresses are then checked");
    return string_parse(p, k, base, v);
}

static int host_header_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    struct conf_upstream *u = base;
    u->host_literal = NULL;
    if (strcmp(v, "pass") == 0) return u->host_header = HOST_HEADER_PASS, 0;
    if (strcmp(v, "server") == 0) return u->host_header = HOST_HEADER_SERVER, 0;
    if (has_space_or_ctl(v)) return bad(p, k, v, "expected pass, server or a host name");
    u->host_header = HOST_HEADER_LITERAL;
    return (u->host_literal = pdup(p, v)) ? 0 : -1;
}

static void host_header_dump(FILE *out, const struct conf_key *k, const void *base,
                             const struct config *c)
{
    const struct conf_upstream *u = base;
    const char *v = u->host_header == HOST_HEADER_PASS     ? "pass"
                    : u->host_header == HOST_HEADER_SERVER ? "server"
                                                           : u->host_literal;
    fprintf(out, "%s = %s\n", k->key, v);
}

/* ---- [route] ---- */

static int ref_add(struct parse *p, enum sec_kind kind, const char *name)
{
    struct ref *r = vec_add(p, p->tmp, &p->refs, &p->nrefs, sizeof(*r));
    if (!r) return -1;
    *r = (struct ref){kind, p->idx, pdup(p, name), p->lineno};
    return r->name ? 0 : -1;
}

static int listeners_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    char *cur = scratch(p, v), *w;
    if (!cur) return -1;
    while ((w = str_word_next(&cur, " \t,")))
        if (ref_add(p, SEC_LISTENER, w) < 0) return -1;
    return 0;
}

static void listeners_dump(FILE *out, const struct conf_key *k, const void *base,
                           const struct config *c)
{
    const struct conf_route *r = base;
    if (r->listener_mask == UINT64_MAX) return;
    for (unsigned i = 0; i < c->nlisteners; i++)
        if (r->listener_mask >> i & 1) fprintf(out, "%s = %s\n", k->key, c->listeners[i].name);
}

/* "api.example.com" or "*.example.com", stored lower-case. */
static int hosts_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    char *cur = scratch(p, v), *w;
    if (!cur) return -1;
    while ((w = str_word_next(&cur, " \t,"))) {
        const char *name = strncmp(w, "*.", 2) == 0 ? w + 2 : w;
        bool okay = *name && *name != '.';
        for (char *s = w; *s; s++) {
            *s = (char)(*s >= 'A' && *s <= 'Z' ? *s | 0x20 : *s);
            if (s >= name && !strchr("abcdefghijklmnopqrstuvwxyz0123456789-._", *s)) okay = false;
        }
        if (!okay) return bad(p, k, w, "expected a host name or *.suffix");
        if (strv_add(p, k, base, pdup(p, w)) < 0) return -1;
    }
    return 0;
}

/* Path: "/prefix" or "= /exact". */
static int path_match_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    struct conf_route *r = base;
    r->path_exact = v[0] == '=';
    const char *s = r->path_exact ? v + 1 + strspn(v + 1, " \t") : v;
    if (s[0] != '/' || has_space_or_ctl(s)) return bad(p, k, v, "expected /prefix or = /exact");
    if (!(r->path = pdup(p, s))) return -1;
    r->path_len = strlen(s);
    return 0;
}

static void path_match_dump(FILE *out, const struct conf_key *k, const void *base,
                            const struct config *c)
{
    const struct conf_route *r = base;
    fprintf(out, "%s = %s%s\n", k->key, r->path_exact ? "= " : "", r->path);
}

static int methods_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    struct conf_route *r = base;
    char *cur = scratch(p, v), *w;
    char *allow = palloc(p, p->c->arena, 2 * strlen(v) + 1);
    if (!cur || !allow) return -1;
    while ((w = str_word_next(&cur, " \t,"))) {
        for (const char *s = w; *s; s++)
            if (!(*s >= 'A' && *s <= 'Z') && *s != '-' && *s != '_')
                return bad(p, k, v, "method names are upper-case, like GET HEAD");
        bool dup = false;
        for (unsigned i = 0; i < r->nmethods; i++)
            dup |= strcmp(r->methods[i], w) == 0;
        if (dup) continue;
        if (strv_add(p, k, base, pdup(p, w)) < 0) return -1;
        if (allow[0]) strcat(allow, ", ");
        strcat(allow, w);
    }
    if (!r->nmethods) return bad(p, k, v, "expected method names, like GET HEAD");
    r->allow = allow;
    return 0;
}

static void methods_dump(FILE *out, const struct conf_key *k, const void *base,
                         const struct config *c)
{
    const struct conf_route *r = base;
    if (!r->nmethods) return;
    fprintf(out, "%s =", k->key);
    for (unsigned i = 0; i < r->nmethods; i++)
        fprintf(out, " %s", r->methods[i]);
    fputc('\n', out);
}

static const char *action_key(enum conf_action a)
{
    return a == ACTION_UPSTREAM ? "upstream" : a == ACTION_RETURN ? "return" : "redirect";
}

static int action_set(struct parse *p, const struct conf_key *k, struct conf_route *r,
                      enum conf_action a)
{
    if (r->action != ACTION_NONE) {
        perr(p, "more than one action in %s: \"%s\" after \"%s\"", p->label, k->key,
             action_key(r->action));
        return -1;
    }
    r->action = a;
    return 0;
}

static int upstream_ref_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    if (has_space_or_ctl(v)) return bad(p, k, v, "expected the name of an [upstream]");
    if (action_set(p, k, base, ACTION_UPSTREAM) < 0) return -1;
    return ref_add(p, SEC_UPSTREAM, v);
}

static void upstream_ref_dump(FILE *out, const struct conf_key *k, const void *base,
                              const struct config *c)
{
    const struct conf_route *r = base;
    if (r->action == ACTION_UPSTREAM && r->upstream)
        fprintf(out, "%s = %s\n", k->key, r->upstream->name);
}

/* A three-digit status code at the start of V; *REST is what follows. */
static int code_parse(const char *v, unsigned *code, const char **rest)
{
    uint64_t n;
    if (digits_parse(v, &n, rest) < 0 || *rest - v != 3) return -1;
    if (**rest && **rest != ' ' && **rest != '\t') return -1;
    *rest += strspn(*rest, " \t");
    *code = (unsigned)n;
    return 0;
}

static int return_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    struct conf_route *r = base;
    const char *body;
    unsigned code;
    if (code_parse(v, &code, &body) < 0 || code < 100 || code > 599)
        return bad(p, k, v, "expected CODE [BODY] with CODE from 100 to 599");
    if (str_has_ctl(body)) return bad(p, k, v, "control characters are not allowed");
    if (action_set(p, k, r, ACTION_RETURN) < 0) return -1;
    r->return_code = code;
    r->return_body = *body ? pdup(p, body) : NULL;
    return 0;
}

static void return_dump(FILE *out, const struct conf_key *k, const void *base,
                        const struct config *c)
{
    const struct conf_route *r = base;
    if (r->action != ACTION_RETURN) return;
    fprintf(out, "%s = %u%s%s\n", k->key, r->return_code, r->return_body ? " " : "",
            r->return_body ? r->return_body : "");
}

static int redirect_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    struct conf_route *r = base;
    const char *url;
    unsigned code;
    if (code_parse(v, &code, &url) < 0 ||
        (code != 301 && code != 302 && code != 303 && code != 307 && code != 308))
        return bad(p, k, v, "expected CODE URL with CODE 301, 302, 303, 307 or 308");
    if (!*url || has_space_or_ctl(url)) return bad(p, k, v, "expected one URL after the code");
    if (action_set(p, k, r, ACTION_REDIRECT) < 0) return -1;
    r->redirect_code = code;
    return (r->redirect_url = pdup(p, url)) ? 0 : -1;
}

static void redirect_dump(FILE *out, const struct conf_key *k, const void *base,
                          const struct config *c)
{
    const struct conf_route *r = base;
    if (r->action == ACTION_REDIRECT)
        fprintf(out, "%s = %u %s\n", k->key, r->redirect_code, r->redirect_url);
}

static int prefix_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    if (v[0] != '/' || has_space_or_ctl(v)) return bad(p, k, v, "expected a path starting with /");
    return string_parse(p, k, base, v);
}

/* "Name: value" sets, "-Name" removes. */
static int header_op_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    struct conf_header_op op = {.remove = v[0] == '-'};
    const char *name = op.remove ? v + 1 : v;
    size_t nl = 0;
    while (str_is_tchar((unsigned char)name[nl]))
        nl++;
    const char *rest = name + nl;
    if (!nl || (op.remove ? *rest != '\0' : *rest != ':'))
        return bad(p, k, v, "expected \"NAME: VALUE\" or \"-NAME\"");
    if (str_has_ctl(rest)) return bad(p, k, v, "control characters are not allowed");
    op.name = arena_strndup(p->c->arena, name, nl);
    op.name_len = nl;
    if (!op.remove) {
        const char *val = rest + 1 + strspn(rest + 1, " \t");
        op.value = pdup(p, val);
        op.value_len = strlen(val);
        if (!op.value) return -1;
    }
    struct conf_header_op *slot =
        vec_add(p, p->c->arena, field(base, k), count(base, k), sizeof(op));
    if (!slot || !op.name) return -1;
    *slot = op;
    return 0;
}

static void header_op_dump(FILE *out, const struct conf_key *k, const void *base,
                           const struct config *c)
{
    const struct conf_header_op *op = *(struct conf_header_op *const *)field(base, k);
    for (unsigned i = 0; i < *count(base, k); i++, op++) {
        if (op->remove)
            fprintf(out, "%s = -%s\n", k->key, op->name);
        else
            fprintf(out, "%s = %s: %s\n", k->key, op->name, op->value);
    }
}

static int protocol_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    if (strcmp(v, "http") == 0) return 0;
    if (strcmp(v, "fastcgi") == 0 || strcmp(v, "grpc") == 0) {
        perr(p, "\"%s = %s\" is not supported yet", k->key, v);
        return -1;
    }
    return bad(p, k, v, "expected http");
}

static void protocol_dump(FILE *out, const struct conf_key *k, const void *base,
                          const struct config *c)
{
    fprintf(out, "%s = http\n", k->key);
}

/* ---- the table ---- */

static const struct conf_type t_uint = {number_parse, number_dump, NUM_UINT, 0};
static const struct conf_type t_int = {number_parse, number_dump, NUM_INT, 0};
static const struct conf_type t_duration = {number_parse, number_dump, NUM_DURATION, 0};
static const struct conf_type t_size = {number_parse, number_dump, NUM_SIZE, 0};
static const struct conf_type t_size64 = {number_parse, number_dump, NUM_SIZE64, 0};
static const struct conf_type t_size64_opt = {number_parse, number_dump, NUM_SIZE64, -1};
static const struct conf_type t_bool = {bool_parse, bool_dump, NUM_NONE, 0};
static const struct conf_type t_string = {string_parse, string_dump, NUM_NONE, 0};
static const struct conf_type t_enum = {enum_parse, enum_dump, NUM_NONE, 0};
static const struct conf_type t_words = {words_parse, string_dump, NUM_NONE, 0};
static const struct conf_type t_path = {path_parse, path_dump, NUM_NONE, 0};
static const struct conf_type t_unsupported = {unsupported_parse, NULL, NUM_NONE, 0};
static const struct conf_type t_workers = {workers_parse, number_dump, NUM_UINT, 0};
static const struct conf_type t_user = {user_parse, string_dump, NUM_NONE, 0};
static const struct conf_type t_listen = {listen_parse, listen_dump, NUM_NONE, 0};
static const struct conf_type t_certificate = {certificate_parse, strv_dump, NUM_NONE, 0};
static const struct conf_type t_server = {server_parse, server_dump, NUM_NONE, 0};
static const struct conf_type t_tls = {tls_parse, bool_dump, NUM_NONE, 0};
static const struct conf_type t_tls_ca = {tls_ca_parse, path_dump, NUM_NONE, 0};
static const struct conf_type t_tls_sni = {tls_sni_parse, string_dump, NUM_NONE, 0};
static const struct conf_type t_host_header = {host_header_parse, host_header_dump, NUM_NONE, 0};
static const struct conf_type t_protocol = {protocol_parse, protocol_dump, NUM_NONE, 0};
static const struct conf_type t_listeners = {listeners_parse, listeners_dump, NUM_NONE, 0};
static const struct conf_type t_hosts = {hosts_parse, strv_dump, NUM_NONE, 0};
static const struct conf_type t_path_match = {path_match_parse, path_match_dump, NUM_NONE, 0};
static const struct conf_type t_methods = {methods_parse, methods_dump, NUM_NONE, 0};
static const struct conf_type t_upstream_ref = {upstream_ref_parse, upstream_ref_dump, NUM_NONE, 0};
static const struct conf_type t_return = {return_parse, return_dump, NUM_NONE, 0};
static const struct conf_type t_redirect = {redirect_parse, redirect_dump, NUM_NONE, 0};
static const struct conf_type t_prefix = {prefix_parse, string_dump, NUM_NONE, 0};
static const struct conf_type t_header_op = {header_op_parse, header_op_dump, NUM_NONE, 0};

static const struct enum_name log_levels[] = {{"debug", LL_DEBUG},   {"info", LL_INFO},
                                              {"notice", LL_NOTICE}, {"warn", LL_WARN},
                                              {"error", LL_ERROR},   {NULL, 0}};
static const struct enum_name log_formats[] = {
    {"combined", LOG_FORMAT_COMBINED}, {"json", LOG_FORMAT_JSON}, {NULL, 0}};
static const struct enum_name balances[] = {{"round_robin", BALANCE_ROUND_ROBIN},
                                            {"least_conn", BALANCE_LEAST_CONN},
                                            {"ip_hash", BALANCE_IP_HASH},
                                            {"hash", -1},
                                            {"random2", -1},
                                            {NULL, 0}};
static const char *const tls_protocol_words[] = {"TLSv1.2", "TLSv1.3", NULL, NULL};
static const char *const tls_group_words[] = {"secp256r1", "x25519", "secp384r1", NULL, NULL};
static const char *const alpn_words[] = {"http/1.1", NULL, "h2", NULL};
static const struct path_rule path_pid_file = {NULL, false, false, true};
static const struct path_rule path_error_log = {"stderr", false, false, true};
static const struct path_rule path_access_log = {"stdout", true, false, true};
static const struct path_rule path_readable = {NULL, false, true, false};

#define M(f) offsetof(struct config, f)
#define L(f) offsetof(struct conf_listener, f)
#define U(f) offsetof(struct conf_upstream, f)
#define R(f) offsetof(struct conf_route, f)
#define NOPE(sec, key)                                                                             \
    {                                                                                              \
        sec, key, &t_unsupported, 0, 0, NULL, 0, 0, false, NULL                                    \
    }
#define TIMEOUT(sec, key, off, def)                                                                \
    {                                                                                              \
        sec, key, &t_duration, off, 0, def, 1, DAY_MS, false, NULL                                 \
    }

static const struct conf_key conf_keys[] = {
    {SEC_MAIN, "workers", &t_workers, M(workers), 0, "auto", 1, SHM_MAX_SLOTS, false, NULL},
    {SEC_MAIN, "user", &t_user, M(user), 0, NULL, 0, 0, false, NULL},
    {SEC_MAIN, "pid_file", &t_path, M(pid_file), 0, NULL, 0, 0, false, &path_pid_file},
    {SEC_MAIN, "error_log", &t_path, M(error_log), 0, "stderr", 0, 0, false, &path_error_log},
    {SEC_MAIN, "log_level", &t_enum, M(log_level), 0, "info", 0, 0, false, log_levels},
    {SEC_MAIN, "access_log", &t_path, M(access_log), 0, "off", 0, 0, false, &path_access_log},
    {SEC_MAIN, "access_log_format", &t_enum, M(access_log_format), 0, "combined", 0, 0, false,
     log_formats},
    {SEC_MAIN, "max_connections", &t_uint, M(max_connections), 0, "16384", 1, 1 << 24, false, NULL},
    {SEC_MAIN, "shutdown_timeout", &t_duration, M(shutdown_timeout), 0, "30s", 0, DAY_MS, false,
     NULL},
    {SEC_MAIN, "reuseport", &t_bool, M(reuseport), 0, "on", 0, 0, false, NULL},
    NOPE(SEC_MAIN, "include"),

    {SEC_LISTENER, "listen", &t_listen, L(addrs), L(naddrs), NULL, 0, 0, true, NULL},
    {SEC_LISTENER, "backlog", &t_int, L(backlog), 0, "4096", 1, 1 << 20, false, NULL},
    TIMEOUT(SEC_LISTENER, "header_timeout", L(header_timeout), "10s"),
    TIMEOUT(SEC_LISTENER, "body_timeout", L(body_timeout), "30s"),
    TIMEOUT(SEC_LISTENER, "idle_timeout", L(idle_timeout), "60s"),
    TIMEOUT(SEC_LISTENER, "send_timeout", L(send_timeout), "30s"),
    {SEC_LISTENER, "max_header_size", &t_size, L(max_header_size), 0, "16k", 1024, 1 << 20, false,
     NULL},
    {SEC_LISTENER, "max_headers", &t_uint, L(max_headers), 0, "100", 1, 10000, false, NULL},
    {SEC_LISTENER, "max_body_size", &t_size64, L(max_body_size), 0, "8m", 0, 1LL << 40, false,
     NULL},
    {SEC_LISTENER, "max_requests", &t_uint, L(max_requests), 0, "10000", 1, 1000000000, false,
     NULL},
    {SEC_LISTENER, "max_connections_per_ip", &t_uint, L(max_connections_per_ip), 0, "0", 0,
     IPCOUNT_MAX_LIMIT, false, NULL},
    {SEC_LISTENER, "body_min_rate", &t_size, L(body_min_rate), 0, "512", 0, 1 << 30, false, NULL},
    {SEC_LISTENER, "certificate", &t_certificate, L(certificates), L(ncertificates), NULL, 0, 0,
     true, NULL},
    {SEC_LISTENER, "tls_protocols", &t_words, L(tls_protocols), 0, "TLSv1.2 TLSv1.3", 0, 0, false,
     tls_protocol_words},
    {SEC_LISTENER, "tls_ciphers", &t_string, L(tls_ciphers), 0, NULL, 0, 0, false, NULL},
    {SEC_LISTENER, "tls_groups", &t_words, L(tls_groups), 0, "secp256r1 x25519 secp384r1", 0, 0,
     false, tls_group_words},
    {SEC_LISTENER, "tls_session_tickets", &t_bool, L(tls_session_tickets), 0, "on", 0, 0, false,
     NULL},
    /* A ticket lives up to two periods (RFC 8446: at most 7 days). */
    {SEC_LISTENER, "tls_ticket_rotation", &t_duration, L(tls_ticket_rotation), 0, "1h", 1000,
     3 * DAY_MS, false, NULL},
    {SEC_LISTENER, "alpn", &t_words, L(alpn), 0, "http/1.1", 0, 0, false, alpn_words},
    {SEC_LISTENER, "redirect_to_https", &t_uint, L(redirect_to_https), 0, NULL, 1, 65535, false,
     NULL},
    NOPE(SEC_LISTENER, "proxy_protocol"),
    NOPE(SEC_LISTENER, "trusted_proxies"),

    {SEC_UPSTREAM, "server", &t_server, U(servers), U(nservers), NULL, 0, 0, true, NULL},
    {SEC_UPSTREAM, "balance", &t_enum, U(balance), 0, "round_robin", 0, 0, false, balances},
    {SEC_UPSTREAM, "keepalive", &t_uint, U(keepalive), 0, "32", 0, 100000, false, NULL},
    TIMEOUT(SEC_UPSTREAM, "keepalive_timeout", U(keepalive_timeout), "60s"),
    TIMEOUT(SEC_UPSTREAM, "connect_timeout", U(connect_timeout), "3s"),
    TIMEOUT(SEC_UPSTREAM, "read_timeout", U(read_timeout), "60s"),
    TIMEOUT(SEC_UPSTREAM, "send_timeout", U(send_timeout), "60s"),
    {SEC_UPSTREAM, "retries", &t_uint, U(retries), 0, "1", 0, 100, false, NULL},
    {SEC_UPSTREAM, "max_fails", &t_uint, U(max_fails), 0, "1", 0, 100000, false, NULL},
    TIMEOUT(SEC_UPSTREAM, "fail_timeout", U(fail_timeout), "10s"),
    NOPE(SEC_UPSTREAM, "health_check"),
    {SEC_UPSTREAM, "tls", &t_tls, U(tls), 0, "off", 0, 0, false, NULL},
    {SEC_UPSTREAM, "tls_verify", &t_bool, U(tls_verify), 0, "on", 0, 0, false, NULL},
    {SEC_UPSTREAM, "tls_ca", &t_tls_ca, U(tls_ca), 0, NULL, 0, 0, false, &path_readable},
    {SEC_UPSTREAM, "tls_sni", &t_tls_sni, U(tls_sni), 0, NULL, 0, 0, false, NULL},
    {SEC_UPSTREAM, "host_header", &t_host_header, U(host_header), 0, "pass", 0, 0, false, NULL},
    {SEC_UPSTREAM, "protocol", &t_protocol, 0, 0, "http", 0, 0, false, NULL},

    {SEC_ROUTE, "listener", &t_listeners, R(listener_mask), 0, NULL, 0, 0, true, NULL},
    {SEC_ROUTE, "host", &t_hosts, R(hosts), R(nhosts), NULL, 0, 0, true, NULL},
    {SEC_ROUTE, "path", &t_path_match, R(path), 0, "/", 0, 0, false, NULL},
    {SEC_ROUTE, "methods", &t_methods, R(methods), R(nmethods), NULL, 0, 0, false, NULL},
    {SEC_ROUTE, "upstream", &t_upstream_ref, R(upstream), 0, NULL, 0, 0, false, NULL},
    {SEC_ROUTE, "return", &t_return, R(return_code), 0, NULL, 0, 0, false, NULL},
    {SEC_ROUTE, "redirect", &t_redirect, R(redirect_code), 0, NULL, 0, 0, false, NULL},
    {SEC_ROUTE, "strip_prefix", &t_prefix, R(strip_prefix), 0, NULL, 0, 0, false, NULL},
    {SEC_ROUTE, "add_prefix", &t_prefix, R(add_prefix), 0, NULL, 0, 0, false, NULL},
    {SEC_ROUTE, "request_header", &t_header_op, R(request_headers), R(nrequest_headers), NULL, 0, 0,
     true, NULL},
    {SEC_ROUTE, "response_header", &t_header_op, R(response_headers), R(nresponse_headers), NULL, 0,
     0, true, NULL},
    {SEC_ROUTE, "max_body_size", &t_size64_opt, R(max_body_size), 0, NULL, 0, 1LL << 40, false,
     NULL},
    {SEC_ROUTE, "access_log", &t_bool, R(access_log), 0, "on", 0, 0, false, NULL},
    {SEC_ROUTE, "expose_upstream", &t_bool, R(expose_upstream), 0, "off", 0, 0, false, NULL},
    NOPE(SEC_ROUTE, "header"),
    NOPE(SEC_ROUTE, "root"),
    NOPE(SEC_ROUTE, "canary"),
    NOPE(SEC_ROUTE, "canary_header"),
    NOPE(SEC_ROUTE, "auth"),
    NOPE(SEC_ROUTE, "rate_limit"),
    NOPE(SEC_ROUTE, "cache"),
    NOPE(SEC_ROUTE, "cors"),
    NOPE(SEC_ROUTE, "cors_methods"),
    NOPE(SEC_ROUTE, "cors_headers"),
    NOPE(SEC_ROUTE, "cors_credentials"),
    NOPE(SEC_ROUTE, "cors_max_age"),
    NOPE(SEC_ROUTE, "validate"),
    NOPE(SEC_ROUTE, "content_types"),
};
#define NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

/* Sections of a later phase: refused by name rather than "unknown". */
static const char *const later_sections[] = {"auth", "limit", "cache", "admin", NULL};

static const struct conf_key *key_find(enum sec_kind kind, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (conf_keys[i].sec == kind && strcmp(conf_keys[i].key, name) == 0) return &conf_keys[i];
    return NULL;
}

static void defaults_apply(struct parse *p, enum sec_kind kind, void *base)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->sec != kind) continue;
        if (k->def)
            k->type->parse(p, k, base, k->def);
        else if (k->type->num != NUM_NONE)
            number_set(k, base, k->type->unset);
    }
}

/* ---- sections ---- */

static void *section_base(struct parse *p)
{
    struct config *c = p->c;
    switch (p->kind) {
    case SEC_MAIN:
        return c;
    case SEC_LISTENER:
        return &c->listeners[p->idx];
    case SEC_UPSTREAM:
        return &c->upstreams[p->idx];
    case SEC_ROUTE:
        return &c->routes[p->idx];
    default:
        return NULL;
    }
}

static bool name_valid(const char *s)
{
    if (!*s || strlen(s) > MAX_NAME) return false;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", *s))
            return false;
    return true;
}

/* Where a named section of KIND called NAME was opened, or 0. */
static int section_find(const struct config *c, enum sec_kind kind, const char *name)
{
    unsigned n = kind == SEC_LISTENER   ? c->nlisteners
                 : kind == SEC_UPSTREAM ? c->nupstreams
                                        : c->nroutes;
    for (unsigned i = 0; i < n; i++) {
        const char *nm = kind == SEC_LISTENER   ? c->listeners[i].name
                         : kind == SEC_UPSTREAM ? c->upstreams[i].name
                                                : c->routes[i].name;
        int line = kind == SEC_LISTENER   ? c->listeners[i].line
                   : kind == SEC_UPSTREAM ? c->upstreams[i].line
                                          : c->routes[i].line;
        if (strcmp(nm, name) == 0) return line;
    }
    return 0;
}

/* Add the struct of a named section; returns its base or NULL. */
static void *section_add(struct parse *p, enum sec_kind kind, const char *name)
{
    struct config *c = p->c;
    struct arena *a = c->arena;
    char *nm = pdup(p, name);
    if (kind == SEC_LISTENER) {
        struct conf_listener *l = vec_add(p, a, &c->listeners, &c->nlisteners, sizeof(*l));
        if (!l || !nm) return NULL;
        l->name = nm, l->line = p->lineno, p->idx = c->nlisteners - 1;
        return l;
    }
    if (kind == SEC_UPSTREAM) {
        struct conf_upstream *u = vec_add(p, a, &c->upstreams, &c->nupstreams, sizeof(*u));
        if (!u || !nm) return NULL;
        u->name = nm, u->line = p->lineno, p->idx = c->nupstreams - 1;
        return u;
    }
    struct conf_route *r = vec_add(p, a, &c->routes, &c->nroutes, sizeof(*r));
    if (!r || !nm) return NULL;
    r->name = nm, r->line = p->lineno, p->idx = c->nroutes - 1;
    r->listener_mask = UINT64_MAX;
    return r;
}

static enum sec_kind section_kind(const char *word)
{
    for (int k = SEC_MAIN; k <= SEC_ROUTE; k++)
        if (strcmp(sec_words[k], word) == 0) return (enum sec_kind)k;
    return SEC_NONE;
}

/* Check "[KIND NAME]"; returns the kind, or SEC_SKIP after reporting. */
static enum sec_kind section_check(struct parse *p, const char *word, const char *name,
                                   const char *whole)
{
    enum sec_kind kind = section_kind(word);
    for (const char *const *w = later_sections; kind == SEC_NONE && *w; w++)
        if (strcmp(*w, word) == 0) {
            perr(p, "\"[%s]\" is not supported yet", word);
            return SEC_SKIP;
        }
    if (kind == SEC_NONE) {
        perr(p, "unknown section \"[%s]\"", whole);
        return SEC_SKIP;
    }
    if (kind == SEC_MAIN) {
        if (*name) perr(p, "[main] takes no name");
        if (p->main_line) perr(p, "duplicate section [main], first at line %d", p->main_line);
        return *name || p->main_line ? SEC_SKIP : SEC_MAIN;
    }
    if (!*name) {
        perr(p, "[%s] needs a name, e.g. [%s NAME]", word, word);
        return SEC_SKIP;
    }
    if (!name_valid(name)) {
        perr(p, "invalid section name \"%s\" in [%s]: use 1 to %d of A-Z a-z 0-9 - _ .", name,
             whole, MAX_NAME);
        return SEC_SKIP;
    }
    int first = section_find(p->c, kind, name);
    if (first) {
        perr(p, "duplicate section [%s %s], first at line %d", word, name, first);
        return SEC_SKIP;
    }
    if (kind == SEC_LISTENER && p->c->nlisteners == CONF_MAX_LISTENERS) {
        perr(p, "too many listeners (at most %d)", CONF_MAX_LISTENERS);
        return SEC_SKIP;
    }
    return kind;
}

static bool section_broken(const struct parse *p, int line)
{
    for (unsigned i = 0; i < p->nbroken; i++)
        if (p->broken[i] == line) return true;
    return false;
}

static void section_head(struct parse *p, char *s);

/* S is a trimmed line starting with '['. Keys that follow belong to it. */
static void section_open(struct parse *p, char *s)
{
    int before = p->nerrors;
    p->sec_line = p->lineno;
    section_head(p, s);
    if (p->nerrors > before) p->bad_headers++;
}

static void section_head(struct parse *p, char *s)
{
    char *close = strchr(s, ']');
    p->kind = SEC_SKIP;
    memset(p->seen, 0, NKEYS * sizeof(*p->seen));
    if (!close) {
        perr(p, "missing ']' in section header");
        return;
    }
    char *after = close + 1 + strspn(close + 1, " \t");
    if (*after && *after != ';' && *after != '#') {
        perr(p, "unexpected text after section header");
        return;
    }
    *close = '\0';
    char *whole = s + 1 + strspn(s + 1, " \t");
    for (char *e = close; e > whole && (e[-1] == ' ' || e[-1] == '\t');)
        *--e = '\0';
    size_t wl = strcspn(whole, " \t");
    char word[32] = "";
    if (wl < sizeof(word)) memcpy(word, whole, wl);
    const char *name = whole + wl + strspn(whole + wl, " \t");
    enum sec_kind kind = section_check(p, word, name, whole);
    if (kind == SEC_SKIP) return;
    if (kind == SEC_MAIN) {
        p->main_line = p->lineno;
        snprintf(p->label, sizeof(p->label), "[main]");
        p->kind = SEC_MAIN;
        return;
    }
    void *base = section_add(p, kind, name);
    if (!base) return;
    snprintf(p->label, sizeof(p->label), "[%s %s]", word, name);
    p->kind = kind;
    defaults_apply(p, kind, base);
}

/* ---- inih glue: the reader and the key handler ---- */

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse *p = user;
    p->called = true;
    if (p->long_value) value = p->long_value;
    if (p->kind == SEC_SKIP) return 1; /* its header was reported already */
    if (!*name) {
        perr(p, "missing key before '='");
        return 1;
    }
    if (p->kind == SEC_NONE) {
        perr(p, "\"%s\" outside any section; start with [main] or [listener NAME]", name);
        return 1;
    }
    const struct conf_key *k = key_find(p->kind, name);
    if (!k) {
        perr(p, "unknown key \"%s\" in %s", name, p->label);
        return 1;
    }
    int *seen = &p->seen[k - conf_keys];
    if (*seen && !k->list) {
        perr(p, "\"%s\" given twice in %s, first at line %d", name, p->label, *seen);
        return 1;
    }
    *seen = p->lineno;
    if (!*value && k->type != &t_unsupported) {
        perr(p, "\"%s\" needs a value", name);
        return 1;
    }
    k->type->parse(p, k, section_base(p), value);
    return 1; /* errors are ours to report; inih's first-error line is not used */
}

/* A key line that inih did not hand to on_key had no '=' or ':'. */
static void line_finish(struct parse *p)
{
    if (p->expect_call && !p->called)
        perr(p, "syntax error: expected \"KEY = VALUE\" or \"[SECTION]\"");
    p->expect_call = false;
}

static char *blank(char *buf)
{
    buf[0] = '\n';
    buf[1] = '\0';
    return buf;
}

/* Where inih would split S: the first '=' or ':' before an inline comment. */
static char *split_point(char *s)
{
    for (char *c = s; *c; c++) {
        if (*c == '=' || *c == ':') return c;
        if (*c == ';' && c > s && (c[-1] == ' ' || c[-1] == '\t')) return NULL;
    }
    return NULL;
}

/* Hand inih "KEY=" and keep the value for on_key, split the way inih does. */
static char *long_line(struct parse *p, char *s, char *buf, int cap)
{
    char *sep = split_point(s);
    if (!sep) {
        p->expect_call = true;
        return blank(buf);
    }
    char *v = sep + 1;
    for (char *c = v; *c; c++)
        if (*c == ';' && (c[-1] == ' ' || c[-1] == '\t')) *c = '\0';
    v += strspn(v, " \t");
    for (char *e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t');)
        *--e = '\0';
    size_t nl = (size_t)(sep - s);
    if (nl + 3 > (size_t)cap) {
        perr(p, "line too long");
        return blank(buf);
    }
    memcpy(buf, s, nl);
    memcpy(buf + nl, "=\n", 3);
    p->long_value = v;
    p->expect_call = true;
    return buf;
}

/* Trim the physical line; NULL when it cannot be parsed (reported). */
static char *line_clean(struct parse *p, size_t n)
{
    char *s = p->line;
    if (memchr(s, '\0', n)) {
        perr(p, "NUL byte in line");
        return NULL;
    }
    if (n > MAX_LINE) {
        perr(p, "line too long (more than %d bytes)", MAX_LINE);
        return NULL;
    }
    if (p->lineno == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3, n -= 3;
    while (n && strchr("\r\n \t", s[n - 1]))
        s[--n] = '\0';
    /* Leading blanks are stripped so inih never takes a line for a
     * continuation of the previous value. */
    return s + strspn(s, " \t");
}

static char *conf_reader(char *buf, int cap, void *arg)
{
    struct parse *p = arg;
    line_finish(p);
    ssize_t n = getline(&p->line, &p->linecap, p->f);
    if (n < 0) {
        if (ferror(p->f)) perr(p, "read error: %s", strerror(errno));
        return NULL;
    }
    p->lineno++;
    p->long_value = NULL;
    p->called = false;
    if (cap < 4) return NULL;
    char *s = line_clean(p, (size_t)n);
    if (!s || !*s || *s == ';' || *s == '#') return blank(buf);
    if (*s == '[') {
        section_open(p, s);
        return blank(buf);
    }
    size_t len = strlen(s);
    if (len + 2 > (size_t)cap) return long_line(p, s, buf, cap);
    memcpy(buf, s, len);
    memcpy(buf + len, "\n", 2);
    p->expect_call = true;
    return buf;
}

/* ---- after the whole file: references and whole-config rules ---- */

static void refs_resolve(struct parse *p)
{
    struct config *c = p->c;
    unsigned last = UINT_MAX;
    for (unsigned i = 0; i < p->nrefs; i++) {
        struct ref *r = &p->refs[i];
        struct conf_route *rt = &c->routes[r->route];
        unsigned j, n = r->kind == SEC_UPSTREAM ? c->nupstreams : c->nlisteners;
        for (j = 0; j < n; j++) {
            const char *nm = r->kind == SEC_UPSTREAM ? c->upstreams[j].name : c->listeners[j].name;
            if (strcmp(nm, r->name) == 0) break;
        }
        if (j == n) {
            perr_at(p, r->line, "unknown %s \"%s\" in [route %s]", sec_words[r->kind], r->name,
                    rt->name);
            continue;
        }
        if (r->kind == SEC_UPSTREAM) {
            rt->upstream = &c->upstreams[j];
            continue;
        }
        /* The first listener named by a route replaces the default "all". */
        if (last != r->route) rt->listener_mask = 0;
        last = r->route;
        rt->listener_mask |= UINT64_C(1) << j;
    }
}

/* tls_server_new's reports: errors count, warnings only print. */
static void tls_report(void *arg, int line, bool warning, const char *msg)
{
    struct parse *p = arg;
    if (!warning) {
        perr_at(p, line, "%s", msg);
        return;
    }
    if (p->errf) fprintf(p->errf, "%s:%d: warning: %s\n", p->file, line, msg);
}

static void tls_build(struct parse *p, struct conf_listener *l)
{
    if (!l->ncertificates) return;
    if (l->redirect_to_https) {
        perr_at(p, l->certificate_lines[0],
                "[listener %s]: redirect_to_https is for plaintext listeners, not with "
                "\"certificate\"",
                l->name);
        return;
    }
    l->tls = tls_server_new(l, l->certificate_lines, tls_report, p);
}

/* tls = on: the client context (CA chain, names) is built now, in the
 * master, so -t and reload report a bad CA file. TLS keys without tls = on
 * are most likely a forgotten line: warned, not refused. */
static void tls_client_build(struct parse *p, struct conf_upstream *u)
{
    if (!u->tls) {
        if (u->tls_ca && p->errf)
            fprintf(p->errf,
                    "%s:%d: warning: [upstream %s]: tls_ca has no effect without tls = on\n",
                    p->file, u->tls_ca_line, u->name);
        if (u->tls_sni && p->errf)
            fprintf(p->errf,
                    "%s:%d: warning: [upstream %s]: tls_sni has no effect without tls = on\n",
                    p->file, u->tls_sni_line, u->name);
        return;
    }
    u->tls_client = tls_client_new(p->c, u, tls_report, p);
}

static void config_validate(struct parse *p)
{
    struct config *c = p->c;
    /* Whole-file checks skip what a reported error explains already: a
     * section with a bad line may lack its listen, server or action
     * because of it; a refused section header may be the listener or the
     * upstream that seems missing. */
    p->validating = true;
    if (!c->nlisteners && !p->bad_headers)
        perr_at(p, p->lineno ? p->lineno : 1, "no [listener] section");
    for (unsigned i = 0; i < c->nlisteners; i++) {
        struct conf_listener *l = &c->listeners[i];
        l->index = i;
        if (!l->naddrs && !section_broken(p, l->line))
            perr_at(p, l->line, "[listener %s] has no \"listen\"", l->name);
        if (!p->nerrors) tls_build(p, l);
    }
    unsigned id = 0;
    for (unsigned i = 0; i < c->nupstreams; i++) {
        struct conf_upstream *u = &c->upstreams[i];
        u->index = i;
        if (!u->nservers && !section_broken(p, u->line))
            perr_at(p, u->line, "[upstream %s] has no \"server\"", u->name);
        for (unsigned j = 0; j < u->nservers; j++) {
            u->servers[j].id = id++;
            u->servers[j].upstream = u;
        }
    }
    for (unsigned i = 0; i < c->nupstreams && !p->nerrors; i++)
        tls_client_build(p, &c->upstreams[i]);
    if (!p->bad_headers) refs_resolve(p);
    for (unsigned i = 0; i < c->nroutes; i++) {
        struct conf_route *r = &c->routes[i];
        if (r->action == ACTION_NONE && !section_broken(p, r->line))
            perr_at(p, r->line, "[route %s] has no action (upstream, return or redirect)", r->name);
    }
}

/* ---- public ---- */

static char *config_dir(struct parse *p, const char *file)
{
    char *copy = strdup(file);
    char *dir = copy ? realpath(dirname(copy), NULL) : NULL;
    free(copy);
    char *kept = dir ? pdup(p, dir) : NULL;
    if (!dir) perr_at(p, 0, "cannot resolve the directory of the file: %s", strerror(errno));
    free(dir);
    return kept;
}

static struct config *config_new(struct parse *p, const char *file)
{
    struct arena *a = arena_new();
    p->tmp = arena_new();
    struct config *c = a ? arena_alloc(a, sizeof(*c)) : NULL;
    if (!c || !p->tmp) {
        arena_free(a);
        return NULL;
    }
    c->arena = a;
    p->c = c;
    p->seen = palloc(p, p->tmp, NKEYS * sizeof(*p->seen));
    c->path = pdup(p, file);
    if (!p->seen || !c->path) return c;
    p->dir = config_dir(p, file);
    if (p->dir) defaults_apply(p, SEC_MAIN, c);
    return c;
}

struct config *config_load(const char *file, FILE *errf)
{
    struct parse p = {.file = file, .errf = errf};
    p.f = fopen(file, "r");
    if (!p.f) {
        perr_at(&p, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct config *c = config_new(&p, file);
    if (!c) {
        perr_at(&p, 0, "out of memory");
        arena_free(p.tmp);
        fclose(p.f);
        return NULL;
    }
    if (!p.nerrors) {
        int rc = ini_parse_stream(conf_reader, &p, on_key, &p);
        line_finish(&p);
        if (rc != 0 && !p.nerrors) perr_at(&p, rc > 0 ? rc : p.lineno, "syntax error");
        config_validate(&p);
    }
    free(p.line);
    free(p.broken);
    fclose(p.f);
    arena_free(p.tmp);
    if (p.nerrors) {
        config_free(c);
        return NULL;
    }
    return c;
}

static void section_dump(FILE *out, enum sec_kind kind, const void *base, const struct config *c)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (conf_keys[i].sec == kind && conf_keys[i].type->dump)
            conf_keys[i].type->dump(out, &conf_keys[i], base, c);
}

void config_dump(const struct config *c, FILE *out)
{
    fprintf(out, "# portico: effective configuration of %s\n\n[main]\n", c->path);
    section_dump(out, SEC_MAIN, c, c);
    for (unsigned i = 0; i < c->nlisteners; i++) {
        fprintf(out, "\n[listener %s]\n", c->listeners[i].name);
        section_dump(out, SEC_LISTENER, &c->listeners[i], c);
    }
    for (unsigned i = 0; i < c->nupstreams; i++) {
        fprintf(out, "\n[upstream %s]\n", c->upstreams[i].name);
        section_dump(out, SEC_UPSTREAM, &c->upstreams[i], c);
    }
    for (unsigned i = 0; i < c->nroutes; i++) {
        fprintf(out, "\n[route %s]\n", c->routes[i].name);
        section_dump(out, SEC_ROUTE, &c->routes[i], c);
    }
}

void config_free(struct config *c)
{
    if (!c) return;
    for (unsigned i = 0; i < c->nlisteners; i++)
        tls_server_free(c->listeners[i].tls);
    for (unsigned i = 0; i < c->nupstreams; i++)
        tls_client_free(c->upstreams[i].tls_client);
    arena_free(c->arena);
}

const char *config_library_version(void)
{
    return INIH_VERSION;
}
