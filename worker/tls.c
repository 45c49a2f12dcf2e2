/* mbedTLS glue. Only this file includes mbedTLS headers. Server contexts are
 * immutable after the master builds them, except for what each worker sets
 * after fork in its own copy (RNG, ticket keys). The bio callbacks map EAGAIN
 * to WANT_READ/WANT_WRITE and keep the connection's edge-triggered readiness
 * flags exact; a small read-ahead saves the record-header read syscall. */
#include "worker/tls.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

#include "common/config.h"
#include "common/log.h"
#include "worker/core.h"
#include "worker/tls_tickets.h"

#define MAX_NAMES 64 /* SAN names kept per certificate for SNI */
#define READ_AHEAD 4096
#define RECORD_MAX 16384

struct tls_cert {
    mbedtls_x509_crt chain;
    mbedtls_pk_context key;
    char *names[MAX_NAMES]; /* lower case, "*.example.com" for wildcards */
    unsigned nnames;
};

struct tls_server {
    mbedtls_ssl_config conf;
    struct tls_cert *certs;
    unsigned ncerts;
    int suites[16];
    uint16_t groups[4];
    const char *alpn[3];
    bool tickets;
};

struct tls_worker {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    unsigned char stage[RECORD_MAX]; /* gathers an out queue into one record */
};

struct tls_conn {
    mbedtls_ssl_context ssl;
    struct conn *c;
    bool done;             /* handshake complete */
    bool failed;           /* an I/O or protocol error: no close_notify */
    bool notified;         /* close_notify sent */
    bool drained;          /* the last socket read was short: nothing more queued */
    bool read_wants_write; /* a read stopped on a full socket (an alert to send) */
    size_t wpend;          /* length of a record mbedTLS still owes the socket */
    uint16_t rlo, rhi;
    unsigned char rbuf[READ_AHEAD];
};

const char *tls_library_version(void)
{
    return MBEDTLS_VERSION_STRING;
}

static int os_random(void *ctx, unsigned char *p, size_t n)
{
    while (n) {
        ssize_t k = getrandom(p, n, 0);
        if (k < 0) {
            if (errno == EINTR) continue;
            return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
        }
        p += k, n -= (size_t)k;
    }
    return 0;
}

static void report(tls_report_fn *fn, void *arg, int line, bool warning, int err, const char *fmt,
                   ...) __attribute__((format(printf, 6, 7)));
static void report(tls_report_fn *fn, void *arg, int line, bool warning, int err, const char *fmt,
                   ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (err && n > 0 && (size_t)n < sizeof(msg) - 4) {
        memcpy(msg + n, ": ", 3);
        mbedtls_strerror(err, msg + n + 2, sizeof(msg) - (size_t)n - 2);
    }
    fn(arg, line, warning, msg);
}

/* ---- names for SNI ---- */

static void name_add(struct tls_cert *ct, const unsigned char *p, size_t n)
{
    if (ct->nnames >= MAX_NAMES || n == 0 || n > 253) return;
    char *s = malloc(n + 1);
    if (!s) return;
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
    s[n] = 0;
    ct->names[ct->nnames++] = s;
}

/* SAN dNSNames; the subject CN only when there are none (RFC 6125). */
static void names_collect(struct tls_cert *ct)
{
    const mbedtls_x509_crt *crt = &ct->chain;
    for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s && s->buf.p; s = s->next)
        if (s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME))
            name_add(ct, s->buf.p, s->buf.len);
    if (ct->nnames) return;
    for (const mbedtls_x509_name *nm = &crt->subject; nm; nm = nm->next)
        if (nm->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &nm->oid) == 0)
            name_add(ct, nm->val.p, nm->val.len);
}

static bool name_match(const char *pat, const char *host, size_t n, bool wildcard)
{
    if (!wildcard) return strlen(pat) == n && memcmp(pat, host, n) == 0;
    if (pat[0] != '*' || pat[1] != '.') return false;
    /* "*.example.com" covers exactly one label before ".example.com". */
    const char *dot = memchr(host, '.', n);
    if (!dot || dot == host) return false;
    size_t rest = n - (size_t)(dot - host);
    return strlen(pat + 1) == rest && memcmp(pat + 1, dot, rest) == 0;
}

static int sni_select(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name, size_t n)
{
    struct tls_server *s = arg;
    char host[256];
    if (n == 0 || n >= sizeof(host)) return 0;
    for (size_t i = 0; i < n; i++)
        host[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    while (n && host[n - 1] == '.')
        n--;
    /* Every certificate with the name goes to mbedTLS, which picks by the
     * client's signature algorithms: an ECDSA and an RSA certificate for the
     * same names serve ECDSA (~8x cheaper to sign with) to clients that
     * take it and RSA to the others. */
    for (int wild = 0; wild < 2; wild++) {
        bool found = false;
        for (unsigned i = 0; i < s->ncerts; i++) {
            bool has = false;
            for (unsigned k = 0; k < s->certs[i].nnames && !has; k++)
                has = name_match(s->certs[i].names[k], host, n, wild);
            if (!has) continue;
            int rc = mbedtls_ssl_set_hs_own_cert(ssl, &s->certs[i].chain, &s->certs[i].key);
            if (rc) return rc;
            found = true;
        }
        if (found) return 0;
    }
    return 0; /* unknown name: the default certificate */
}

/* The same set of names: the default certificate's twins (another key type)
 * join it for clients without SNI. */
static bool same_names(const struct tls_cert *a, const struct tls_cert *b)
{
    if (a->nnames != b->nnames) return false;
    for (unsigned i = 0; i < a->nnames; i++) {
        bool has = false;
        for (unsigned k = 0; k < b->nnames && !has; k++)
            has = strcmp(a->names[i], b->names[k]) == 0;
        if (!has) return false;
    }
    return true;
}

/* ---- master: building a listener's context ---- */

static int cert_load(struct tls_cert *ct, const char *spec, int line, tls_report_fn *fn, void *arg)
{
    char cert[4096], key[4096];
    const char *sp = strchr(spec, ' ');
    if (!sp || (size_t)(sp - spec) >= sizeof(cert) || strlen(sp + 1) >= sizeof(key)) {
        report(fn, arg, line, false, 0, "certificate: expected CERT KEY");
        return -1;
    }
    memcpy(cert, spec, (size_t)(sp - spec));
    cert[sp - spec] = 0;
    strcpy(key, sp + 1);
    int rc = mbedtls_x509_crt_parse_file(&ct->chain, cert);
    if (rc != 0) {
        report(fn, arg, line, false, rc < 0 ? rc : 0, "certificate \"%s\": cannot load%s", cert,
               rc > 0 ? ": some certificates in the file are invalid" : "");
        return -1;
    }
    rc = mbedtls_pk_parse_keyfile(&ct->key, key, NULL, os_random, NULL);
    if (rc != 0) {
        report(fn, arg, line, false, rc, "key \"%s\": cannot load", key);
        return -1;
    }
    rc = mbedtls_pk_check_pair(&ct->chain.pk, &ct->key, os_random, NULL);
    if (rc != 0) {
        report(fn, arg, line, false, 0, "key \"%s\" does not match certificate \"%s\"", key, cert);
        return -1;
    }
    if (!mbedtls_pk_can_do(&ct->key, MBEDTLS_PK_ECKEY) &&
        !mbedtls_pk_can_do(&ct->key, MBEDTLS_PK_RSA)) {
        report(fn, arg, line, false, 0, "key \"%s\": only RSA and ECDSA keys are supported", key);
        return -1;
    }
    if (mbedtls_x509_time_is_past(&ct->chain.valid_to))
        report(fn, arg, line, true, 0, "certificate \"%s\" has expired", cert);
    else if (mbedtls_x509_time_is_future(&ct->chain.valid_from))
        report(fn, arg, line, true, 0, "certificate \"%s\" is not valid yet", cert);
    names_collect(ct);
    return 0;
}

static int protocols_set(struct tls_server *s, const char *words)
{
    bool v12 = strstr(words, "TLSv1.2") != NULL, v13 = strstr(words, "TLSv1.3") != NULL;
    if (!v12 && !v13) return -1;
    mbedtls_ssl_conf_min_tls_version(&s->conf,
                                     v12 ? MBEDTLS_SSL_VERSION_TLS1_2 : MBEDTLS_SSL_VERSION_TLS1_3);
    mbedtls_ssl_conf_max_tls_version(&s->conf,
                                     v13 ? MBEDTLS_SSL_VERSION_TLS1_3 : MBEDTLS_SSL_VERSION_TLS1_2);
    return 0;
}

/* tls_ciphers: mbedTLS names ("TLS1-3-AES-128-GCM-SHA256",
 * "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256") separated by spaces or ':'. */
static int ciphers_set(struct tls_server *s, const char *list, int line, tls_report_fn *fn,
                       void *arg)
{
    static const int defaults[] = {
        MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
        MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
        MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        0,
    };
    unsigned n = 0;
    if (!list) {
        memcpy(s->suites, defaults, sizeof(defaults));
    } else {
        char buf[1024];
        snprintf(buf, sizeof(buf), "%s", list);
        for (char *save = NULL, *w = strtok_r(buf, " :\t", &save); w;
             w = strtok_r(NULL, " :\t", &save)) {
            int id = mbedtls_ssl_get_ciphersuite_id(w);
            if (!id) {
                report(fn, arg, line, false, 0, "tls_ciphers: unknown cipher suite \"%s\"", w);
                return -1;
            }
            if (n + 1 >= sizeof(s->suites) / sizeof(s->suites[0])) {
                report(fn, arg, line, false, 0, "tls_ciphers: too many cipher suites");
                return -1;
            }
            s->suites[n++] = id;
        }
        s->suites[n] = 0;
        if (!n) {
            report(fn, arg, line, false, 0, "tls_ciphers: empty list");
            return -1;
        }
    }
    mbedtls_ssl_conf_ciphersuites(&s->conf, s->suites);
    return 0;
}

/* tls_groups (the config loader checked the words). The order is the server's
 * preference, which decides TLS 1.2's ECDHE group: secp256r1 first because
 * mbedTLS computes its key share with a precomputed table (~20% less CPU
 * per full handshake than x25519). In TLS 1.3 the client's key share
 * decides among the listed groups; a group left out costs a client that
 * sent its share a HelloRetryRequest (one more round trip). */
static void groups_set(struct tls_server *s, const char *words)
{
    static const struct {
        const char *name;
        uint16_t id;
    } names[] = {{"secp256r1", MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1},
                 {"x25519", MBEDTLS_SSL_IANA_TLS_GROUP_X25519},
                 {"secp384r1", MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1}};
    unsigned n = 0;
    for (const char *w = words; *w && n + 1 < sizeof(s->groups) / sizeof(s->groups[0]);) {
        size_t len = strcspn(w, " \t,");
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (strlen(names[i].name) == len && memcmp(names[i].name, w, len) == 0) {
                bool dup = false;
                for (unsigned k = 0; k < n; k++)
                    dup = dup || s->groups[k] == names[i].id;
                if (!dup) s->groups[n++] = names[i].id;
            }
        w += len;
        w += strspn(w, " \t,");
    }
    s->groups[n] = 0;
    mbedtls_ssl_conf_groups(&s->conf, s->groups);
}

struct tls_server *tls_server_new(const struct conf_listener *l, const int *lines,
                                  tls_report_fn *fn, void *arg)
{
    struct tls_server *s = calloc(1, sizeof(*s));
    if (!s || !(s->certs = calloc(l->ncertificates, sizeof(*s->certs)))) {
        free(s);
        report(fn, arg, l->line, false, 0, "out of memory");
        return NULL;
    }
    mbedtls_ssl_config_init(&s->conf);
    s->ncerts = l->ncertificates;
    int errors = 0;
    for (unsigned i = 0; i < s->ncerts; i++) {
        mbedtls_x509_crt_init(&s->certs[i].chain);
        mbedtls_pk_init(&s->certs[i].key);
    }
    for (unsigned i = 0; i < s->ncerts; i++)
        if (cert_load(&s->certs[i], l->certificates[i], lines[i], fn, arg) < 0) errors++;
    int rc = mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
                                         MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc) {
        report(fn, arg, l->line, false, rc, "TLS configuration");
        errors++;
    }
    if (protocols_set(s, l->tls_protocols ? l->tls_protocols : "TLSv1.2 TLSv1.3") < 0) {
        report(fn, arg, l->line, false, 0, "tls_protocols: name TLSv1.2 or TLSv1.3");
        errors++;
    }
    if (ciphers_set(s, l->tls_ciphers, l->line, fn, arg) < 0) errors++;
    groups_set(s, l->tls_groups ? l->tls_groups : "secp256r1 x25519 secp384r1");
    mbedtls_ssl_conf_renegotiation(&s->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    unsigned na = 0;
    if (!l->alpn || strstr(l->alpn, "http/1.1")) s->alpn[na++] = "http/1.1";
    s->alpn[na] = NULL;
    if (na && mbedtls_ssl_conf_alpn_protocols(&s->conf, s->alpn) != 0) errors++;
    for (unsigned i = 0; !errors && i < s->ncerts; i++) {
        if (i && !same_names(&s->certs[0], &s->certs[i])) continue;
        rc = mbedtls_ssl_conf_own_cert(&s->conf, &s->certs[i].chain, &s->certs[i].key);
        if (rc) {
            report(fn, arg, lines[i], false, rc, "certificate");
            errors++;
        }
    }
    mbedtls_ssl_conf_sni(&s->conf, sni_select, s);
    /* Ticket keys live in the shared memory (common/ticket_keys.c). */
    s->tickets = l->tls_session_tickets;
    if (!s->tickets) mbedtls_ssl_conf_new_session_tickets(&s->conf, 0);
    if (errors) {
        tls_server_free(s);
        return NULL;
    }
    return s;
}

void tls_server_free(struct tls_server *s)
{
    if (!s) return;
    mbedtls_ssl_config_free(&s->conf);
    for (unsigned i = 0; i < s->ncerts; i++) {
        mbedtls_x509_crt_free(&s->certs[i].chain);
        mbedtls_pk_free(&s->certs[i].key);
        for (unsigned k = 0; k < s->certs[i].nnames; k++)
            free(s->certs[i].names[k]);
    }
    free(s->certs);
    free(s);
}

/* ---- worker ---- */

int tls_worker_init(struct worker *w)
{
    const struct config *cfg = w->cfg;
    bool any = false;
    for (unsigned i = 0; i < cfg->nlisteners; i++)
        any = any || cfg->listeners[i].tls;
    for (unsigned i = 0; i < cfg->nupstreams; i++) /* tls_upstream.c uses the DRBG too */
        any = any || cfg->upstreams[i].tls_client;
    if (!any) return 0;
    /* PSA keeps its own RNG: initialised here, after fork, so no two
     * workers share its state. */
    if (psa_crypto_init() != PSA_SUCCESS) {
        log_error("TLS: psa_crypto_init failed");
        return -1;
    }
    struct tls_worker *tw = calloc(1, sizeof(*tw));
    if (!tw) return -1;
    mbedtls_entropy_init(&tw->entropy);
    mbedtls_ctr_drbg_init(&tw->drbg);
    char pers[32];
    int pn = snprintf(pers, sizeof(pers), "portico %d", (int)getpid());
    int rc = mbedtls_ctr_drbg_seed(&tw->drbg, mbedtls_entropy_func, &tw->entropy,
                                   (const unsigned char *)pers, (size_t)pn);
    if (rc) {
        log_error("TLS: cannot seed the DRBG (-0x%04x)", (unsigned)-rc);
        free(tw);
        return -1;
    }
    w->tls = tw;
    for (unsigned i = 0; i < cfg->nlisteners; i++) {
        struct tls_server *s = cfg->listeners[i].tls;
        if (!s) continue;
        mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &tw->drbg);
        if (!s->tickets) continue;
        /* Without keys (logged) the listener works without tickets. */
        struct tls_tickets *tk =
            tls_tickets_new(w->shm, cfg->listeners[i].name, mbedtls_ctr_drbg_random, &tw->drbg);
        if (tk)
            tls_tickets_conf(tk, &s->conf);
        else
            mbedtls_ssl_conf_new_session_tickets(&s->conf, 0);
    }
    return 0;
}

void *tls_worker_rng(struct worker *w)
{
    return w->tls ? &w->tls->drbg : NULL;
}

static int bio_send(void *arg, const unsigned char *p, size_t n)
{
    struct tls_conn *t = arg;
    struct conn *c = t->c;
    if (!c->can_write) return MBEDTLS_ERR_SSL_WANT_WRITE;
    for (;;) {
        ssize_t k = write(c->fd, p, n);
        if (k >= 0) {
            if ((size_t)k < n) c->can_write = false; /* the socket buffer is full */
            return (int)k;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            c->can_write = false;
            return MBEDTLS_ERR_SSL_WANT_WRITE;
        }
        t->failed = true;
        return MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

static int bio_recv(void *arg, unsigned char *p, size_t n)
{
    struct tls_conn *t = arg;
    struct conn *c = t->c;
    if (t->rlo < t->rhi) {
        size_t k = (size_t)(t->rhi - t->rlo) < n ? (size_t)(t->rhi - t->rlo) : n;
        memcpy(p, t->rbuf + t->rlo, k);
        t->rlo += (uint16_t)k;
        return (int)k;
    }
    if (!c->can_read) return MBEDTLS_ERR_SSL_WANT_READ;
    /* Small asks (a record header) read ahead; big ones go straight in. */
    bool ahead = n < sizeof(t->rbuf);
    unsigned char *dst = ahead ? t->rbuf : p;
    size_t want = ahead ? sizeof(t->rbuf) : n;
    for (;;) {
        ssize_t k = read(c->fd, dst, want);
        if (k > 0) {
            t->drained = (size_t)k < want && !c->rdhup;
            if (!ahead) return (int)k;
            t->rlo = 0;
            t->rhi = (uint16_t)k;
            size_t m = (size_t)k < n ? (size_t)k : n;
            memcpy(p, t->rbuf, m);
            t->rlo = (uint16_t)m;
            return (int)m;
        }
        if (k == 0) return 0;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            c->can_read = false;
            t->drained = true;
            return MBEDTLS_ERR_SSL_WANT_READ;
        }
        t->failed = true;
        return MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

int tls_conn_new(struct worker *w, struct conn *c)
{
    struct tls_server *s = c->wl->listener->tls;
    struct tls_worker *tw = w->tls;
    if (!s || !tw) return -1;
    struct tls_conn *t = malloc(sizeof(*t));
    if (!t) return -1;
    memset(t, 0, offsetof(struct tls_conn, rbuf));
    t->c = c;
    mbedtls_ssl_init(&t->ssl);
    int rc = mbedtls_ssl_setup(&t->ssl, &s->conf);
    if (rc) {
        log_error("TLS: mbedtls_ssl_setup failed (-0x%04x)", (unsigned)-rc);
        mbedtls_ssl_free(&t->ssl);
        free(t);
        return -1;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    c->tls = t;
    return 0;
}

void tls_conn_notify(struct conn *c)
{
    struct tls_conn *t = c->tls;
    if (!t || !t->done || t->failed || t->notified) return;
    t->notified = true;
    c->can_write = true; /* best effort: one try, never blocks */
    mbedtls_ssl_close_notify(&t->ssl);
}

void tls_conn_free(struct conn *c)
{
    struct tls_conn *t = c->tls;
    if (!t) return;
    if (c->fd >= 0) tls_conn_notify(c);
    mbedtls_ssl_free(&t->ssl);
    free(t);
    c->tls = NULL;
}

static void log_failure(struct conn *c, const char *what, int rc)
{
    if (log_enabled(LL_DEBUG)) {
        char err[128];
        mbedtls_strerror(rc, err, sizeof(err));
        log_debug("TLS %s failed fd=%d: %s", what, c->fd, err);
    }
}

int tls_handshake(struct worker *w, struct conn *c)
{
    struct tls_conn *t = c->tls;
    int rc = mbedtls_ssl_handshake(&t->ssl);
    if (rc == 0) {
        t->done = true;
        c->can_read = true; /* bytes after Finished may sit in the read-ahead */
        return 1;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return 0;
    t->failed = true;
    log_failure(c, "handshake", rc);
    return -1;
}

ssize_t tls_read(struct conn *c, void *p, size_t n)
{
    struct tls_conn *t = c->tls;
    /* Each turn consumes a record or meets EAGAIN; the bound is a backstop. */
    for (int tries = 0; tries < 64; tries++) {
        int rc = mbedtls_ssl_read(&t->ssl, p, n);
        if (rc > 0) {
            if (t->drained && t->rlo == t->rhi && !mbedtls_ssl_check_pending(&t->ssl))
                c->can_read = false;
            return rc;
        }
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == MBEDTLS_ERR_SSL_CONN_EOF)
            return 0;
        if (rc == MBEDTLS_ERR_SSL_WANT_READ && c->can_read) continue; /* a non-data record */
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
            t->read_wants_write = rc == MBEDTLS_ERR_SSL_WANT_WRITE;
            c->can_read = false;
            errno = EAGAIN;
            return -1;
        }
        t->failed = true;
        log_failure(c, "read", rc);
        errno = EIO;
        return -1;
    }
    errno = EAGAIN;
    c->can_read = false;
    return -1;
}

int tls_write(struct worker *w, struct conn *c, struct out *o)
{
    struct tls_conn *t = c->tls;
    unsigned char *stage = w->tls->stage;
    while (o->i < o->n) {
        size_t len = t->wpend;
        const unsigned char *p = stage;
        if (!len) {
            /* Gather up to one full record; a big first slice goes as is. */
            struct iovec *v = &o->iov[o->i];
            if (v->iov_len >= RECORD_MAX || o->i + 1 == o->n) {
                p = v->iov_base;
                len = v->iov_len < RECORD_MAX ? v->iov_len : RECORD_MAX;
            } else {
                for (unsigned k = o->i; k < o->n && len < RECORD_MAX; k++) {
                    size_t m = o->iov[k].iov_len;
                    if (m > RECORD_MAX - len) m = RECORD_MAX - len;
                    memcpy(stage + len, o->iov[k].iov_base, m);
                    len += m;
                }
            }
        }
        /* After WANT_WRITE mbedTLS holds the record already: the retry only
         * flushes it, and must name the same length. */
        int rc = mbedtls_ssl_write(&t->ssl, p, len);
        if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
            t->wpend = len;
            c->can_write = false;
            return IO_AGAIN;
        }
        if (rc <= 0) {
            t->failed = true;
            log_failure(c, "write", rc);
            return IO_ERROR;
        }
        t->wpend = 0;
        size_t left = (size_t)rc;
        while (o->i < o->n && left >= o->iov[o->i].iov_len)
            left -= o->iov[o->i++].iov_len;
        if (o->i < o->n) {
            o->iov[o->i].iov_base = (char *)o->iov[o->i].iov_base + left;
            o->iov[o->i].iov_len -= left;
        }
    }
    o->i = o->n = 0;
    return IO_OK;
}

void tls_writable(struct conn *c)
{
    if (c->tls->read_wants_write) {
        c->tls->read_wants_write = false;
        c->can_read = true;
    }
}

const char *tls_conn_version(const struct conn *c)
{
    return c->tls ? mbedtls_ssl_get_version(&c->tls->ssl) : "";
}

const char *tls_conn_alpn(const struct conn *c)
{
    return c->tls ? mbedtls_ssl_get_alpn_protocol(&c->tls->ssl) : NULL;
}
