/* Configuration loader. inih splits "key = value" lines; conf_keys, one table
 * (config_keys.c), says per section kind and key how a value is parsed, where
 * it is stored, its default and how -T prints it. Our own line reader counts
 * lines, opens sections (inih never sees headers) and feeds inih lines longer
 * than its buffer. Every error is reported. */
#include "common/config.h"

#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/arena.h"
#include "common/config_int.h"
#include "worker/tls.h"
#include "worker/tls_upstream.h"

#define MAX_LINE 65536 /* longer lines are refused, not truncated */

_Static_assert(CONF_MAX_LISTENERS <= 64, "listener_mask is a uint64_t");

static const char *const sec_words[] = {"", "main", "listener", "upstream", "route", ""};

/* ---- errors and allocation ---- */

void conf_perr_at(struct parse *p, int line, const char *fmt, ...)
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

int conf_bad(struct parse *p, const struct conf_key *k, const char *v, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    perr(p, "invalid %s \"%s\": %s", k->key, v, why);
    return -1;
}

void *conf_palloc(struct parse *p, struct arena *a, size_t n)
{
    void *m = arena_alloc(a, n);
    if (!m && !p->oom) {
        p->oom = true;
        perr(p, "out of memory");
    }
    return m;
}

char *conf_pdup(struct parse *p, const char *s)
{
    char *d = conf_palloc(p, p->c->arena, strlen(s) + 1);
    return d ? strcpy(d, s) : NULL;
}

/* Append a zeroed element to the array *SLOT (of type T *) holding *N. The
 * capacity follows from *N (4, 8, 16, ...), so no field has to store it and
 * a long server list costs linear, not quadratic, arena space. */
void *conf_vec_add(struct parse *p, struct arena *a, void *slot, unsigned *n, size_t sz)
{
    void *arr;
    memcpy(&arr, slot, sizeof(arr));
    if (*n == 0 || (*n >= 4 && !(*n & (*n - 1)))) {
        size_t cap = *n < 4 ? 4 : 2 * (size_t)*n;
        void *fresh = conf_palloc(p, a, cap * sz);
        if (!fresh) return NULL;
        if (*n) memcpy(fresh, arr, *n * sz);
        memcpy(slot, &fresh, sizeof(fresh));
        arr = fresh;
    }
    return (char *)arr + (size_t)(*n)++ * sz;
}

char *conf_scratch(struct parse *p, const char *v)
{
    char *d = conf_palloc(p, p->tmp, strlen(v) + 1);
    return d ? strcpy(d, v) : NULL;
}

/* ---- the table: lookups and defaults ---- */

/* Sections of a later phase: refused by name rather than "unknown". */
static const char *const later_sections[] = {"auth", "limit", "cache", "admin", NULL};

static const struct conf_key *key_find(enum sec_kind kind, const char *name)
{
    for (size_t i = 0; i < conf_nkeys; i++)
        if (conf_keys[i].sec == kind && strcmp(conf_keys[i].key, name) == 0) return &conf_keys[i];
    return NULL;
}

static void defaults_apply(struct parse *p, enum sec_kind kind, void *base)
{
    for (size_t i = 0; i < conf_nkeys; i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->sec != kind) continue;
        if (k->def)
            k->type->parse(p, k, base, k->def);
        else if (k->type->num != NUM_NONE)
            conf_number_set(k, base, k->type->unset);
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
    char *nm = conf_pdup(p, name);
    if (kind == SEC_LISTENER) {
        struct conf_listener *l = conf_vec_add(p, a, &c->listeners, &c->nlisteners, sizeof(*l));
        if (!l || !nm) return NULL;
        l->name = nm, l->line = p->lineno, p->idx = c->nlisteners - 1;
        return l;
    }
    if (kind == SEC_UPSTREAM) {
        struct conf_upstream *u = conf_vec_add(p, a, &c->upstreams, &c->nupstreams, sizeof(*u));
        if (!u || !nm) return NULL;
        u->name = nm, u->line = p->lineno, p->idx = c->nupstreams - 1;
        return u;
    }
    struct conf_route *r = conf_vec_add(p, a, &c->routes, &c->nroutes, sizeof(*r));
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
    memset(p->seen, 0, conf_nkeys * sizeof(*p->seen));
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
    if (!*value && k->type->parse != conf_unsupported_parse) {
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
            conf_perr_at(p, r->line, "unknown %s \"%s\" in [route %s]", sec_words[r->kind], r->name,
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
        conf_perr_at(p, line, "%s", msg);
        return;
    }
    if (p->errf) fprintf(p->errf, "%s:%d: warning: %s\n", p->file, line, msg);
}

static void tls_build(struct parse *p, struct conf_listener *l)
{
    if (!l->ncertificates) return;
    if (l->redirect_to_https) {
        conf_perr_at(p, l->certificate_lines[0],
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
        conf_perr_at(p, p->lineno ? p->lineno : 1, "no [listener] section");
    for (unsigned i = 0; i < c->nlisteners; i++) {
        struct conf_listener *l = &c->listeners[i];
        l->index = i;
        if (!l->naddrs && !section_broken(p, l->line))
            conf_perr_at(p, l->line, "[listener %s] has no \"listen\"", l->name);
        if (!p->nerrors) tls_build(p, l);
    }
    unsigned id = 0;
    for (unsigned i = 0; i < c->nupstreams; i++) {
        struct conf_upstream *u = &c->upstreams[i];
        u->index = i;
        if (!u->nservers && !section_broken(p, u->line))
            conf_perr_at(p, u->line, "[upstream %s] has no \"server\"", u->name);
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
            conf_perr_at(p, r->line, "[route %s] has no action (upstream, return or redirect)",
                         r->name);
    }
}

/* ---- public ---- */

static char *config_dir(struct parse *p, const char *file)
{
    char *copy = strdup(file);
    char *dir = copy ? realpath(dirname(copy), NULL) : NULL;
    free(copy);
    char *kept = dir ? conf_pdup(p, dir) : NULL;
    if (!dir) conf_perr_at(p, 0, "cannot resolve the directory of the file: %s", strerror(errno));
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
    p->seen = conf_palloc(p, p->tmp, conf_nkeys * sizeof(*p->seen));
    c->path = conf_pdup(p, file);
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
        conf_perr_at(&p, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct config *c = config_new(&p, file);
    if (!c) {
        conf_perr_at(&p, 0, "out of memory");
        arena_free(p.tmp);
        fclose(p.f);
        return NULL;
    }
    if (!p.nerrors) {
        int rc = ini_parse_stream(conf_reader, &p, on_key, &p);
        line_finish(&p);
        if (rc != 0 && !p.nerrors) conf_perr_at(&p, rc > 0 ? rc : p.lineno, "syntax error");
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
    for (size_t i = 0; i < conf_nkeys; i++)
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
