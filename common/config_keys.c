/* The keys of each section: their own parsers and dumpers where the generic
 * types of config_value.c do not fit (addresses, certificates, servers,
 * route matches and actions), and conf_keys, the one table that says per
 * section and key how a value is parsed, where it is stored, its default
 * and how -T prints it, so that parsing and dumping cannot drift apart. */
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/config_int.h"
#include "common/ipcount.h"
#include "common/log.h"
#include "common/net.h"
#include "common/shm.h"
#include "common/str.h"

#define DAY_MS 86400000LL /* upper bound of every duration */

_Static_assert(sizeof(enum conf_log_format) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum conf_balance) == sizeof(int), "enums are stored as int");

static bool has_space_or_ctl(const char *s)
{
    return str_has_ctl(s) || strpbrk(s, " \t");
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
    if (conf_digits_parse(v, &n, &end) < 0 || *end || n < (uint64_t)k->min || n > (uint64_t)k->max)
        return conf_bad(p, k, v, "expected auto or a number from %lld to %lld", (long long)k->min,
                        (long long)k->max);
    *w = (unsigned)n;
    return 0;
}

static int user_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    if (has_space_or_ctl(v)) return conf_bad(p, k, v, "expected a user name");
    if (!getpwnam(v)) {
        perr(p, "unknown user \"%s\"", v);
        return -1;
    }
    return conf_string_parse(p, k, base, v);
}

/* ---- [listener] ---- */

static int listen_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    char *cur = conf_scratch(p, v), *w;
    if (!cur) return -1;
    while ((w = str_word_next(&cur, " \t"))) {
        struct conf_addr a;
        const char *why = "too long";
        if (strlen(w) >= sizeof(a.text) || net_addr_parse(w, 0, &a.ss, &a.len, &why) < 0) {
            conf_bad(p, k, w, "%s (use ADDR:PORT, [IPV6]:PORT or *:PORT)", why);
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
        struct conf_addr *slot =
            conf_vec_add(p, p->c->arena, field(base, k), count(base, k), sizeof(a));
        struct seen_addr *seen = conf_vec_add(p, p->tmp, &p->addrs, &p->naddrs, sizeof(*seen));
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
    char **slot = conf_vec_add(p, p->c->arena, field(base, k), count(base, k), sizeof(char *));
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
    char *cur = conf_scratch(p, v);
    if (!cur) return -1;
    char *cert = str_word_next(&cur, " \t"), *key = str_word_next(&cur, " \t");
    if (!cert || !key || str_word_next(&cur, " \t"))
        return conf_bad(p, k, v, "expected CERT.pem KEY.pem");
    char *cp = conf_path_resolve(p, cert), *kp = conf_path_resolve(p, key);
    if (!cp || !kp) return -1;
    int rc =
        conf_path_check(p, cp); /* one error per line: the key is checked once the cert reads */
    if (rc == 0) rc = conf_path_check(p, kp);
    size_t n = strlen(cp) + strlen(kp) + 2;
    char *both = conf_palloc(p, p->c->arena, n);
    if (!both) return -1;
    snprintf(both, n, "%s %s", cp, kp);
    /* Keep certificates and certificate_lines the same length: an entry
     * with unreadable files is not added at all (found by fuzz_config). */
    if (rc < 0 || strv_add(p, k, base, both) < 0) return -1;
    struct conf_listener *l = base;
    unsigned nlines = l->ncertificates - 1;
    int *line = conf_vec_add(p, p->c->arena, &l->certificate_lines, &nlines, sizeof(int));
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
    if (eq && conf_digits_parse(eq + 1, &n, &end) < 0) end = "x";
    if (!eq && nl == 6 && strncmp(opt, "backup", nl) == 0) return s->backup = true, 0;
    if (!eq && nl == 4 && strncmp(opt, "down", nl) == 0) return s->down = true, 0;
    if (eq && nl == 4 && strncmp(opt, "name", nl) == 0 && eq[1])
        return (s->name = conf_pdup(p, eq + 1)) ? 0 : -1;
    if (eq && nl == 6 && strncmp(opt, "weight", nl) == 0) {
        if (*end || n < 1 || n > 1000) return conf_bad(p, k, v, "weight must be from 1 to 1000");
        return s->weight = (unsigned)n, 0;
    }
    if (eq && nl == 9 && strncmp(opt, "max_conns", nl) == 0) {
        if (*end || n > 1000000) return conf_bad(p, k, v, "max_conns must be from 0 to 1000000");
        return s->max_conns = (unsigned)n, 0;
    }
    return conf_bad(p, k, v, "unknown option \"%s\"", opt);
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
    if (rc == -1) conf_bad(p, k, v, "%s (use HOST:PORT, [IPV6]:PORT)", why);
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
    char *cur = conf_scratch(p, v), *w;
    if (!cur) return -1;
    const char *hp = str_word_next(&cur, " \t");
    if (!hp) return conf_bad(p, k, v, "expected HOST:PORT");
    if (!(s.hostport = conf_pdup(p, hp))) return -1;
    while ((w = str_word_next(&cur, " \t")))
        if (server_option(p, k, v, &s, w) < 0) return -1;
    if (str_has_ctl(s.name ? s.name : "")) return conf_bad(p, k, v, "control characters in name");
    if (server_resolve(p, k, v, &s) < 0) return -1;
    if (!s.name) s.name = s.hostport;
    if (++p->c->nservers == SHM_MAX_SERVERS + 1)
        perr(p, "too many servers (at most %d in all upstreams)", SHM_MAX_SERVERS);
    struct conf_server *slot =
        conf_vec_add(p, p->c->arena, field(base, k), count(base, k), sizeof(s));
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
    return conf_bool_parse(p, k, base, v);
}

static int tls_ca_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    ((struct conf_upstream *)base)->tls_ca_line = p->lineno;
    return conf_path_parse(p, k, base, v);
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
            if (!label || v[i - 1] == '-') return conf_bad(p, k, v, "expected a DNS host name");
            label = 0;
            continue;
        }
        bool letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (!letter && !(ch >= '0' && ch <= '9') && !(ch == '-' && label) && ch != '_')
            return conf_bad(p, k, v, "expected a DNS host name");
        alpha = alpha || letter || ch == '-';
        if (++label > 63) return conf_bad(p, k, v, "a label is longer than 63 characters");
    }
    if (!n || n > 253 || (n && v[n - 1] == '-'))
        return conf_bad(p, k, v, "expected a DNS host name of 1 to 253 characters");
    if (!alpha)
        return conf_bad(p, k, v,
                        "an IP address is not a name: leave tls_sni unset, the certificate's IP "
                        "addresses are then checked");
    return conf_string_parse(p, k, base, v);
}

static int host_header_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    struct conf_upstream *u = base;
    u->host_literal = NULL;
    if (strcmp(v, "pass") == 0) return u->host_header = HOST_HEADER_PASS, 0;
    if (strcmp(v, "server") == 0) return u->host_header = HOST_HEADER_SERVER, 0;
    if (has_space_or_ctl(v)) return conf_bad(p, k, v, "expected pass, server or a host name");
    u->host_header = HOST_HEADER_LITERAL;
    return (u->host_literal = conf_pdup(p, v)) ? 0 : -1;
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
    struct ref *r = conf_vec_add(p, p->tmp, &p->refs, &p->nrefs, sizeof(*r));
    if (!r) return -1;
    *r = (struct ref){kind, p->idx, conf_pdup(p, name), p->lineno};
    return r->name ? 0 : -1;
}

static int listeners_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    char *cur = conf_scratch(p, v), *w;
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
    char *cur = conf_scratch(p, v), *w;
    if (!cur) return -1;
    while ((w = str_word_next(&cur, " \t,"))) {
        const char *name = strncmp(w, "*.", 2) == 0 ? w + 2 : w;
        bool okay = *name && *name != '.';
        for (char *s = w; *s; s++) {
            *s = (char)(*s >= 'A' && *s <= 'Z' ? *s | 0x20 : *s);
            if (s >= name && !strchr("abcdefghijklmnopqrstuvwxyz0123456789-._", *s)) okay = false;
        }
        if (!okay) return conf_bad(p, k, w, "expected a host name or *.suffix");
        if (strv_add(p, k, base, conf_pdup(p, w)) < 0) return -1;
    }
    return 0;
}

/* Path: "/prefix" or "= /exact". */
static int path_match_parse(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
    struct conf_route *r = base;
    r->path_exact = v[0] == '=';
    const char *s = r->path_exact ? v + 1 + strspn(v + 1, " \t") : v;
    if (s[0] != '/' || has_space_or_ctl(s))
        return conf_bad(p, k, v, "expected /prefix or = /exact");
    if (!(r->path = conf_pdup(p, s))) return -1;
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
    char *cur = conf_scratch(p, v), *w;
    char *allow = conf_palloc(p, p->c->arena, 2 * strlen(v) + 1);
    if (!cur || !allow) return -1;
    while ((w = str_word_next(&cur, " \t,"))) {
        for (const char *s = w; *s; s++)
            if (!(*s >= 'A' && *s <= 'Z') && *s != '-' && *s != '_')
                return conf_bad(p, k, v, "method names are upper-case, like GET HEAD");
        bool dup = false;
        for (unsigned i = 0; i < r->nmethods; i++)
            dup |= strcmp(r->methods[i], w) == 0;
        if (dup) continue;
        if (strv_add(p, k, base, conf_pdup(p, w)) < 0) return -1;
        if (allow[0]) strcat(allow, ", ");
        strcat(allow, w);
    }
    if (!r->nmethods) return conf_bad(p, k, v, "expected method names, like GET HEAD");
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
    if (has_space_or_ctl(v)) return conf_bad(p, k, v, "expected the name of an [upstream]");
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
    if (conf_digits_parse(v, &n, rest) < 0 || *rest - v != 3) return -1;
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
        return conf_bad(p, k, v, "expected CODE [BODY] with CODE from 100 to 599");
    if (str_has_ctl(body)) return conf_bad(p, k, v, "control characters are not allowed");
    if (action_set(p, k, r, ACTION_RETURN) < 0) return -1;
    r->return_code = code;
    r->return_body = *body ? conf_pdup(p, body) : NULL;
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
        return conf_bad(p, k, v, "expected CODE URL with CODE 301, 302, 303, 307 or 308");
    if (!*url || has_space_or_ctl(url)) return conf_bad(p, k, v, "expected one URL after the code");
    if (action_set(p, k, r, ACTION_REDIRECT) < 0) return -1;
    r->redirect_code = code;
    return (r->redirect_url = conf_pdup(p, url)) ? 0 : -1;
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
    if (v[0] != '/' || has_space_or_ctl(v))
        return conf_bad(p, k, v, "expected a path starting with /");
    return conf_string_parse(p, k, base, v);
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
        return conf_bad(p, k, v, "expected \"NAME: VALUE\" or \"-NAME\"");
    if (str_has_ctl(rest)) return conf_bad(p, k, v, "control characters are not allowed");
    op.name = arena_strndup(p->c->arena, name, nl);
    op.name_len = nl;
    if (!op.remove) {
        const char *val = rest + 1 + strspn(rest + 1, " \t");
        op.value = conf_pdup(p, val);
        op.value_len = strlen(val);
        if (!op.value) return -1;
    }
    struct conf_header_op *slot =
        conf_vec_add(p, p->c->arena, field(base, k), count(base, k), sizeof(op));
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
    return conf_bad(p, k, v, "expected http");
}

static void protocol_dump(FILE *out, const struct conf_key *k, const void *base,
                          const struct config *c)
{
    fprintf(out, "%s = http\n", k->key);
}

/* ---- the table ---- */

static const struct conf_type t_uint = {conf_number_parse, conf_number_dump, NUM_UINT, 0};
static const struct conf_type t_int = {conf_number_parse, conf_number_dump, NUM_INT, 0};
static const struct conf_type t_duration = {conf_number_parse, conf_number_dump, NUM_DURATION, 0};
static const struct conf_type t_size = {conf_number_parse, conf_number_dump, NUM_SIZE, 0};
static const struct conf_type t_size64 = {conf_number_parse, conf_number_dump, NUM_SIZE64, 0};
static const struct conf_type t_size64_opt = {conf_number_parse, conf_number_dump, NUM_SIZE64, -1};
static const struct conf_type t_bool = {conf_bool_parse, conf_bool_dump, NUM_NONE, 0};
static const struct conf_type t_string = {conf_string_parse, conf_string_dump, NUM_NONE, 0};
static const struct conf_type t_enum = {conf_enum_parse, conf_enum_dump, NUM_NONE, 0};
static const struct conf_type t_words = {conf_words_parse, conf_string_dump, NUM_NONE, 0};
static const struct conf_type t_path = {conf_path_parse, conf_path_dump, NUM_NONE, 0};
static const struct conf_type t_unsupported = {conf_unsupported_parse, NULL, NUM_NONE, 0};
static const struct conf_type t_workers = {workers_parse, conf_number_dump, NUM_UINT, 0};
static const struct conf_type t_user = {user_parse, conf_string_dump, NUM_NONE, 0};
static const struct conf_type t_listen = {listen_parse, listen_dump, NUM_NONE, 0};
static const struct conf_type t_certificate = {certificate_parse, strv_dump, NUM_NONE, 0};
static const struct conf_type t_server = {server_parse, server_dump, NUM_NONE, 0};
static const struct conf_type t_tls = {tls_parse, conf_bool_dump, NUM_NONE, 0};
static const struct conf_type t_tls_ca = {tls_ca_parse, conf_path_dump, NUM_NONE, 0};
static const struct conf_type t_tls_sni = {tls_sni_parse, conf_string_dump, NUM_NONE, 0};
static const struct conf_type t_host_header = {host_header_parse, host_header_dump, NUM_NONE, 0};
static const struct conf_type t_protocol = {protocol_parse, protocol_dump, NUM_NONE, 0};
static const struct conf_type t_listeners = {listeners_parse, listeners_dump, NUM_NONE, 0};
static const struct conf_type t_hosts = {hosts_parse, strv_dump, NUM_NONE, 0};
static const struct conf_type t_path_match = {path_match_parse, path_match_dump, NUM_NONE, 0};
static const struct conf_type t_methods = {methods_parse, methods_dump, NUM_NONE, 0};
static const struct conf_type t_upstream_ref = {upstream_ref_parse, upstream_ref_dump, NUM_NONE, 0};
static const struct conf_type t_return = {return_parse, return_dump, NUM_NONE, 0};
static const struct conf_type t_redirect = {redirect_parse, redirect_dump, NUM_NONE, 0};
static const struct conf_type t_prefix = {prefix_parse, conf_string_dump, NUM_NONE, 0};
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

const struct conf_key conf_keys[] = {
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
const size_t conf_nkeys = sizeof(conf_keys) / sizeof(conf_keys[0]);
