/* Upstream TLS: mbedTLS client contexts (one per [upstream], built by the
 * master, immutable in workers but for the RNG), per-connection client state
 * driven by the epoll loop like tls.c's server side, and one session per
 * server per worker so that reconnects resume instead of verifying the chain
 * again. A CA file named by several upstreams is parsed once per load. */
#include "worker/tls_upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "common/config.h"
#include "common/log.h"
#include "worker/core.h"

#define READ_AHEAD 4096
#define RECORD_MAX 16384

/* A parsed CA file, shared by the upstreams of one config that name it. */
struct tls_ca {
    mbedtls_x509_crt chain;
    unsigned refs;
    char path[];
};

struct tls_client {
    mbedtls_ssl_config conf;
    struct tls_ca *ca; /* NULL when tls_verify is off */
    bool verify;
    const char *alpn[2];
    unsigned nservers;
    char **names; /* per server: SNI and the name verified; NULL = an IP literal */
};

struct tls_session {
    mbedtls_ssl_session s;
    bool have;
};

struct tls_upstream_worker {
    struct tls_session *sessions;    /* by conf_server.id */
    unsigned char stage[RECORD_MAX]; /* gathers an out queue into one record */
};

struct tls_uconn {
    mbedtls_ssl_context ssl;
    struct uconn *u;
    bool done;             /* handshake complete */
    bool failed;           /* an I/O or protocol error: no close_notify */
    bool peer_closed;      /* the server's close_notify arrived */
    bool check_ip;         /* verify the server's IP against the certificate's IP SANs */
    bool verified;         /* a certificate chain was checked (not a resumption) */
    bool offered;          /* a saved session was offered */
    bool drained;          /* the last socket read was short: nothing more queued */
    bool read_wants_write; /* a read stopped on a full socket */
    size_t wpend;          /* length of a record mbedTLS still owes the socket */
    uint16_t rlo, rhi;
    unsigned char rbuf[READ_AHEAD];
};

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

/* ---- master: building an upstream's client context ---- */

static struct tls_ca *ca_find(const struct config *c, const struct conf_upstream *u,
                              const char *path)
{
    for (unsigned i = 0; i < c->nupstreams && &c->upstreams[i] != u; i++) {
        struct tls_client *o = c->upstreams[i].tls_client;
        if (o && o->ca && strcmp(o->ca->path, path) == 0) {
            o->ca->refs++;
            return o->ca;
        }
    }
    return NULL;
}

/* The system bundle may hold certificates mbedTLS cannot parse: those are
 * skipped. In a tls_ca file they are worth a warning. */
static struct tls_ca *ca_load(const char *path, bool system, int line, tls_report_fn *fn, void *arg)
{
    size_t n = strlen(path) + 1;
    struct tls_ca *ca = malloc(sizeof(*ca) + n);
    if (!ca) {
        report(fn, arg, line, false, 0, "out of memory");
        return NULL;
    }
    memcpy(ca->path, path, n);
    ca->refs = 1;
    mbedtls_x509_crt_init(&ca->chain);
    const char *what = system ? "the system CA file" : "tls_ca";
    if (system && access(path, R_OK) != 0) {
        report(fn, arg, line, false, 0,
               "tls_verify is on and no tls_ca is set, but %s \"%s\" cannot be read (%s): set "
               "tls_ca = FILE, or tls_verify = off",
               what, path, strerror(errno));
        free(ca);
        return NULL;
    }
    int rc = mbedtls_x509_crt_parse_file(&ca->chain, path);
    if (rc < 0 || !ca->chain.raw.p) {
        report(fn, arg, line, false, rc < 0 ? rc : 0, "%s \"%s\": no usable CA certificate%s", what,
               path, rc < 0 ? "" : " in the file");
        mbedtls_x509_crt_free(&ca->chain);
        free(ca);
        return NULL;
    }
    if (rc > 0 && !system)
        report(fn, arg, line, true, 0, "tls_ca \"%s\": %d certificate(s) could not be parsed", path,
               rc);
    return ca;
}

static void ca_put(struct tls_ca *ca)
{
    if (!ca || --ca->refs) return;
    mbedtls_x509_crt_free(&ca->chain);
    free(ca);
}

/* The name for SNI and verification: tls_sni, else the server's host when it
 * is a name; NULL for an IP literal (RFC 6066 forbids IPs in SNI; the
 * certificate's IP SANs are checked instead). */
static char *server_name(const struct conf_upstream *u, const struct conf_server *s)
{
    if (u->tls_sni) return strdup(u->tls_sni);
    const char *hp = s->hostport, *colon = strrchr(hp, ':');
    if (hp[0] == '[' || !colon) return NULL;
    char host[256];
    size_t n = (size_t)(colon - hp);
    if (n >= sizeof(host)) return NULL;
    memcpy(host, hp, n);
    host[n] = 0;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1) return NULL;
    return strdup(host);
}

struct tls_client *tls_client_new(const struct config *c, const struct conf_upstream *u,
                                  tls_report_fn *fn, void *arg)
{
    struct tls_client *t = calloc(1, sizeof(*t));
    if (!t || !(t->names = calloc(u->nservers ? u->nservers : 1, sizeof(*t->names)))) {
        free(t);
        report(fn, arg, u->tls_line, false, 0, "out of memory");
        return NULL;
    }
    mbedtls_ssl_config_init(&t->conf);
    t->nservers = u->nservers;
    int errors = 0;
    int rc = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
                                         MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc) {
        report(fn, arg, u->tls_line, false, rc, "TLS client configuration");
        errors++;
    }
    t->verify = u->tls_verify;
    if (t->verify) {
        const char *path = u->tls_ca ? u->tls_ca : TLS_SYSTEM_CA;
        t->ca = ca_find(c, u, path);
        if (!t->ca)
            t->ca = ca_load(path, !u->tls_ca, u->tls_ca ? u->tls_ca_line : u->tls_line, fn, arg);
        if (t->ca)
            mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca->chain, NULL);
        else
            errors++;
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    } else {
        if (u->tls_ca)
            report(fn, arg, u->tls_ca_line, true, 0,
                   "[upstream %s]: tls_ca is not used with tls_verify = off", u->name);
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);
    }
    t->alpn[0] = "http/1.1";
    t->alpn[1] = NULL;
    if (mbedtls_ssl_conf_alpn_protocols(&t->conf, t->alpn) != 0) errors++;
    mbedtls_ssl_conf_renegotiation(&t->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_session_tickets(&t->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
        &t->conf, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
    for (unsigned i = 0; i < u->nservers; i++)
        t->names[i] = server_name(u, &u->servers[i]);
    if (errors) {
        tls_client_free(t);
        return NULL;
    }
    return t;
}

void tls_client_free(struct tls_client *t)
{
    if (!t) return;
    mbedtls_ssl_config_free(&t->conf);
    ca_put(t->ca);
    for (unsigned i = 0; i < t->nservers; i++)
        free(t->names[i]);
    free(t->names);
    free(t);
}

/* ---- worker ---- */

int tls_upstream_worker_init(struct worker *w)
{
    const struct config *cfg = w->cfg;
    void *rng = tls_worker_rng(w);
    bool any = false;
    for (unsigned i = 0; i < cfg->nupstreams; i++) {
        struct tls_client *t = cfg->upstreams[i].tls_client;
        if (!t) continue;
        if (!rng) {
            log_error("TLS to upstreams: no random generator");
            return -1;
        }
        mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, rng);
        any = true;
    }
    if (!any) return 0;
    struct tls_upstream_worker *tw = calloc(1, sizeof(*tw));
    if (tw) tw->sessions = calloc(cfg->nservers ? cfg->nservers : 1, sizeof(*tw->sessions));
    if (!tw || !tw->sessions) {
        free(tw);
        log_error("TLS to upstreams: out of memory");
        return -1;
    }
    w->tlsup = tw;
    return 0;
}

static void session_drop(struct tls_session *ss)
{
    if (!ss->have) return;
    mbedtls_ssl_session_free(&ss->s);
    ss->have = false;
}

/* Keep the newest session (TLS 1.2 after the handshake, TLS 1.3 per ticket):
 * the next connection to this server offers it. */
static void session_save(struct worker *w, struct uconn *u)
{
    struct tls_session *ss = &w->tlsup->sessions[u->server->id];
    session_drop(ss);
    mbedtls_ssl_session_init(&ss->s);
    if (mbedtls_ssl_get_session(&u->tls->ssl, &ss->s) == 0)
        ss->have = true;
    else
        mbedtls_ssl_session_free(&ss->s);
}

static int bio_send(void *arg, const unsigned char *p, size_t n)
{
    struct tls_uconn *t = arg;
    struct uconn *u = t->u;
    if (!u->can_write) return MBEDTLS_ERR_SSL_WANT_WRITE;
    for (;;) {
        ssize_t k = write(u->fd, p, n);
        if (k >= 0) {
            if ((size_t)k < n) u->can_write = false; /* the socket buffer is full */
            return (int)k;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            u->can_write = false;
            return MBEDTLS_ERR_SSL_WANT_WRITE;
        }
        t->failed = true;
        return MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

static int bio_recv(void *arg, unsigned char *p, size_t n)
{
    struct tls_uconn *t = arg;
    struct uconn *u = t->u;
    if (t->rlo < t->rhi) {
        size_t k = (size_t)(t->rhi - t->rlo) < n ? (size_t)(t->rhi - t->rlo) : n;
        memcpy(p, t->rbuf + t->rlo, k);
        t->rlo += (uint16_t)k;
        return (int)k;
    }
    if (!u->can_read) return MBEDTLS_ERR_SSL_WANT_READ;
    /* Small asks (a record header) read ahead; big ones go straight in. */
    bool ahead = n < sizeof(t->rbuf);
    unsigned char *dst = ahead ? t->rbuf : p;
    size_t want = ahead ? sizeof(t->rbuf) : n;
    for (;;) {
        ssize_t k = read(u->fd, dst, want);
        if (k > 0) {
            t->drained = (size_t)k < want && !u->rdhup;
            if (!ahead) return (int)k;
            size_t m = (size_t)k < n ? (size_t)k : n;
            memcpy(p, t->rbuf, m);
            t->rlo = (uint16_t)m;
            t->rhi = (uint16_t)k;
            return (int)m;
        }
        if (k == 0) return 0;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            u->can_read = false;
            t->drained = true;
            return MBEDTLS_ERR_SSL_WANT_READ;
        }
        t->failed = true;
        return MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

/* Certificates of a server named by an IP literal must carry that IP as a
 * SAN; mbedTLS checks names, this checks addresses. Also notes that a chain
 * was verified at all (none is sent on a resumption). */
static int verify_cb(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    struct tls_uconn *t = arg;
    t->verified = true;
    if (depth != 0 || !t->check_ip) return 0;
    const struct conf_addr *a = &t->u->server->addr;
    const void *ip = &((const struct sockaddr_in *)&a->ss)->sin_addr;
    size_t len = 4;
    if (a->ss.ss_family == AF_INET6) {
        ip = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
        len = 16;
    }
    for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s && s->buf.p; s = s->next)
        if (s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS) &&
            s->buf.len == len && memcmp(s->buf.p, ip, len) == 0)
            return 0;
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

int tls_upstream_new(struct worker *w, struct uconn *u)
{
    const struct conf_server *s = u->server;
    const struct tls_client *tc = s->upstream->tls_client;
    if (!tc || !w->tlsup) return -1;
    struct tls_uconn *t = malloc(sizeof(*t));
    if (!t) {
        log_error("TLS to upstream %s: out of memory", s->name);
        return -1;
    }
    memset(t, 0, offsetof(struct tls_uconn, rbuf));
    t->u = u;
    mbedtls_ssl_init(&t->ssl);
    int rc = mbedtls_ssl_setup(&t->ssl, &tc->conf);
    /* NULL says "no name" explicitly: no SNI, and the IP check below. */
    const char *name = tc->names[s - s->upstream->servers];
    if (!rc) rc = mbedtls_ssl_set_hostname(&t->ssl, name);
    if (rc) {
        log_error("TLS to upstream %s: setup failed (-0x%04x)", s->name, (unsigned)-rc);
        mbedtls_ssl_free(&t->ssl);
        free(t);
        return -1;
    }
    t->check_ip = tc->verify && !name;
    mbedtls_ssl_set_verify(&t->ssl, verify_cb, t);
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    struct tls_session *ss = &w->tlsup->sessions[s->id];
    if (ss->have) {
        if (mbedtls_ssl_set_session(&t->ssl, &ss->s) == 0)
            t->offered = true;
        else
            session_drop(ss);
    }
    u->tls = t;
    return 0;
}

void tls_upstream_free(struct worker *w, struct uconn *u)
{
    struct tls_uconn *t = u->tls;
    if (!t) return;
    if (u->fd >= 0 && t->done && !t->failed && !t->peer_closed) {
        u->can_write = true; /* best effort: one try, never blocks */
        mbedtls_ssl_close_notify(&t->ssl);
    }
    mbedtls_ssl_free(&t->ssl);
    free(t);
    u->tls = NULL;
}

/* "certificate verification failed: The certificate validity has expired;
 * ..." from mbedTLS's own words for each flag. */
static void verify_reason(struct tls_uconn *t, const char *name, char *why, size_t n)
{
    char info[512];
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    int k = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
    if (k <= 0) snprintf(info, sizeof(info), "flags 0x%x", (unsigned)flags);
    for (char *p = info; *p; p++)
        if (*p == '\n') *p = p[1] ? ';' : 0;
    const char *ip = t->u->server->addr.text;
    snprintf(why, n, "TLS certificate verification failed (%s \"%s\"): %s",
             name ? "name" : "address", name ? name : ip, info);
}

int tls_upstream_handshake(struct worker *w, struct uconn *u, char *why, size_t n)
{
    struct tls_uconn *t = u->tls;
    for (;;) {
        int rc = mbedtls_ssl_handshake(&t->ssl);
        if (rc == 0) {
            t->done = true;
            u->can_read = true; /* bytes after Finished may sit in the read-ahead */
            if (mbedtls_ssl_get_version_number(&t->ssl) == MBEDTLS_SSL_VERSION_TLS1_2)
                session_save(w, u);
            log_debug("TLS to %s done fd=%d %s%s", u->server->name, u->fd,
                      mbedtls_ssl_get_version(&t->ssl),
                      t->offered && !t->verified ? " resumed" : "");
            return 1;
        }
        if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
            session_save(w, u);
            continue;
        }
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return 0;
        t->failed = true;
        /* A session the server chokes on is not offered again. */
        session_drop(&w->tlsup->sessions[u->server->id]);
        if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
            const struct conf_server *s = u->server;
            verify_reason(t, s->upstream->tls_client->names[s - s->upstream->servers], why, n);
            return -2;
        }
        char err[160];
        mbedtls_strerror(rc, err, sizeof(err));
        snprintf(why, n, "TLS handshake failed: %s", err);
        return -1;
    }
}

ssize_t tls_upstream_read(struct worker *w, struct uconn *u, void *p, size_t n)
{
    struct tls_uconn *t = u->tls;
    /* Each turn consumes a record or meets EAGAIN; the bound is a backstop. */
    for (int tries = 0; tries < 64; tries++) {
        int rc = mbedtls_ssl_read(&t->ssl, p, n);
        if (rc > 0) {
            if (t->drained && t->rlo == t->rhi && !mbedtls_ssl_check_pending(&t->ssl))
                u->can_read = false;
            return rc;
        }
        if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
            session_save(w, u);
            continue;
        }
        if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) t->peer_closed = true;
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == MBEDTLS_ERR_SSL_CONN_EOF)
            return 0;
        if (rc == MBEDTLS_ERR_SSL_WANT_READ && u->can_read) continue; /* a non-data record */
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
            t->read_wants_write = rc == MBEDTLS_ERR_SSL_WANT_WRITE;
            u->can_read = false;
            errno = EAGAIN;
            return -1;
        }
        t->failed = true;
        if (log_enabled(LL_DEBUG)) {
            char err[128];
            mbedtls_strerror(rc, err, sizeof(err));
            log_debug("TLS read from %s failed fd=%d: %s", u->server->name, u->fd, err);
        }
        errno = EIO;
        return -1;
    }
    errno = EAGAIN;
    u->can_read = false;
    return -1;
}

int tls_upstream_write(struct worker *w, struct uconn *u, struct out *o)
{
    struct tls_uconn *t = u->tls;
    unsigned char *stage = w->tlsup->stage;
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
            u->can_write = false;
            return IO_AGAIN;
        }
        if (rc <= 0) {
            t->failed = true;
            log_debug("TLS write to %s failed fd=%d: -0x%04x", u->server->name, u->fd,
                      (unsigned)-rc);
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

void tls_upstream_writable(struct uconn *u)
{
    if (u->tls && u->tls->read_wants_write) {
        u->tls->read_wants_write = false;
        u->can_read = true;
    }
}

bool tls_upstream_idle_read(struct worker *w, struct uconn *u)
{
    struct tls_uconn *t = u->tls;
    unsigned char sink[256];
    u->can_read = true;
    for (int tries = 0; tries < 16; tries++) {
        int rc = mbedtls_ssl_read(&t->ssl, sink, sizeof(sink));
        if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
            session_save(w, u);
            continue;
        }
        if (rc == MBEDTLS_ERR_SSL_WANT_READ && u->can_read) continue;
        if (rc == MBEDTLS_ERR_SSL_WANT_READ) return true; /* only housekeeping */
        if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) t->peer_closed = true;
        if (rc < 0 && rc != MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY && rc != MBEDTLS_ERR_SSL_CONN_EOF)
            t->failed = true;
        return false;
    }
    return false;
}

bool tls_upstream_pending(const struct uconn *u)
{
    const struct tls_uconn *t = u->tls;
    return t && (t->rlo < t->rhi || mbedtls_ssl_check_pending(&t->ssl));
}

const char *tls_upstream_version(const struct uconn *u)
{
    return u->tls ? mbedtls_ssl_get_version(&u->tls->ssl) : "";
}
