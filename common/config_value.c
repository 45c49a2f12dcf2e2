/* Value forms of portico.ini (durations, sizes, booleans, addresses) and the
 * generic key types built on them: numbers with limits, booleans, strings,
 * enumerations, word lists and paths. Each parser stores into the section
 * struct at the key's offset or reports "invalid KEY ..."; each dumper
 * prints what -T shows, so a dump parses back to the same config. */
#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/config_int.h"
#include "common/net.h"
#include "common/str.h"

/* ---- value parsers (public, also used by tests) ---- */

int conf_digits_parse(const char *s, uint64_t *v, const char **end)
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
    if (conf_digits_parse(s, &n, &end) < 0) return -1;
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

int conf_number_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
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
        rc = conf_digits_parse(v, &u, &end) < 0 || *end || u > INT64_MAX ? -1 : 0;
        n = (int64_t)u;
    }
    if (rc < 0) return conf_bad(p, k, v, "%s", expect);
    if (n < k->min || n > k->max) {
        char lo[32], hi[32];
        fmt_number(k, k->min, lo, sizeof(lo));
        fmt_number(k, k->max, hi, sizeof(hi));
        return conf_bad(p, k, v, "must be between %s and %s", lo, hi);
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

void conf_number_set(const struct conf_key *k, void *base, int64_t v)
{
    void *f = field(base, k);
    if (k->type->num == NUM_UINT) *(unsigned *)f = (unsigned)v;
    if (k->type->num == NUM_INT) *(int *)f = (int)v;
    if (k->type->num == NUM_SIZE) *(size_t *)f = (size_t)v;
    if (k->type->num == NUM_DURATION || k->type->num == NUM_SIZE64) *(int64_t *)f = v;
}

/* A number with no default prints only when set (0 or the type's unset). */
void conf_number_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c)
{
    int64_t v = number_get(k, base);
    if (!k->def && v == k->type->unset) return;
    char buf[32];
    fmt_number(k, v, buf, sizeof(buf));
    fprintf(out, "%s = %s\n", k->key, buf);
}

int conf_bool_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    bool b;
    if (config_parse_bool(v, &b) < 0) return conf_bad(p, k, v, "expected on or off");
    *(bool *)field(base, k) = b;
    return 0;
}

void conf_bool_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c)
{
    fprintf(out, "%s = %s\n", k->key, *(const bool *)field(base, k) ? "on" : "off");
}

/* Free text: anything but control characters. */
int conf_string_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    if (str_has_ctl(v)) return conf_bad(p, k, v, "control characters are not allowed");
    char *s = conf_pdup(p, v);
    if (!s) return -1;
    *(char **)field(base, k) = s;
    return 0;
}

void conf_string_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c)
{
    const char *s = *(char *const *)field(base, k);
    if (s) fprintf(out, "%s = %s\n", k->key, s);
}

/* Enumerations: aux is a struct enum_name list; value -1 = a later phase. */
int conf_enum_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
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
    return conf_bad(p, k, v, "expected one of %s", names);
}

void conf_enum_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c)
{
    int v = *(const int *)field(base, k);
    for (const struct enum_name *e = k->aux; e->name; e++)
        if (e->value == v) fprintf(out, "%s = %s\n", k->key, e->name);
}

/* Words from a fixed vocabulary, stored as one normalized string. aux lists
 * the accepted words, then NULL, then words of a later phase, then NULL. */
int conf_words_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    const char *const *ok = k->aux;
    char *cur = conf_scratch(p, v), *w;
    char *norm = conf_palloc(p, p->c->arena, strlen(v) + 1);
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
            return conf_bad(p, k, v, "unknown word \"%s\"", w);
        }
        if (norm[0]) strcat(norm, " ");
        strcat(norm, w);
    }
    if (!norm[0]) return conf_bad(p, k, v, "expected at least one word");
    *(char **)field(base, k) = norm;
    return 0;
}

/* Paths, relative to the config file's directory; aux is a struct path_rule. */
char *conf_path_resolve(struct parse *p, const char *v)
{
    if (v[0] == '/') return conf_pdup(p, v);
    size_t n = strlen(p->dir) + strlen(v) + 2;
    char *s = conf_palloc(p, p->c->arena, n);
    if (s) snprintf(s, n, "%s/%s", p->dir, v);
    return s;
}

int conf_path_check(struct parse *p, const char *path)
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
        char *copy = conf_scratch(p, path);
        if (!copy) return -1;
        char *dir = dirname(copy);
        if (access(dir, W_OK | X_OK) == 0) return 0;
        perr(p, "cannot create \"%s\": directory \"%s\": %s", path, dir, strerror(errno));
        return -1;
    }
    perr(p, "cannot write \"%s\": %s", path, strerror(errno));
    return -1;
}

int conf_path_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    const struct path_rule *r = k->aux;
    char **f = field(base, k);
    if (r->off && strcmp(v, "off") == 0) return *f = NULL, 0;
    if (r->keep && strcmp(v, r->keep) == 0) return (*f = conf_pdup(p, v)) ? 0 : -1;
    if (str_has_ctl(v)) return conf_bad(p, k, v, "control characters are not allowed");
    if (!(*f = conf_path_resolve(p, v))) return -1;
    if (r->writable) return path_check_writable(p, *f);
    return r->readable ? conf_path_check(p, *f) : 0;
}

void conf_path_dump(FILE *out, const struct conf_key *k, const void *base, const struct config *c)
{
    const struct path_rule *r = k->aux;
    const char *s = *(char *const *)field(base, k);
    if (s || r->off) fprintf(out, "%s = %s\n", k->key, s ? s : "off");
}

int conf_unsupported_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    perr(p, "\"%s\" is not supported yet", k->key);
    return -1;
}
