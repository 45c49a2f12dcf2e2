/* Binding: one listening socket per (address, worker slot) with SO_REUSEPORT,
 * or one shared socket per address. Sockets live in a set keyed by address
 * text and survive reloads that keep the address; only listen_close_unused
 * and listen_close_all close them, after no worker uses them any more. */
#include "master/listen.h"

#include "common/config.h"
#include "common/log.h"
#include "common/net.h"
#include "worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct listen_sock *find(const struct listen_set *ls, const char *key)
{
    for (unsigned i = 0; i < ls->n; i++)
        if (strcmp(ls->socks[i].key, key) == 0) return &ls->socks[i];
    return NULL;
}

static void addr_key(const struct conf_addr *a, char *key, size_t cap)
{
    net_addr_str((const struct sockaddr *)&a->ss, key, cap);
}

static int set_int(int fd, int level, int opt, int v)
{
    return setsockopt(fd, level, opt, &v, sizeof v);
}

static in_port_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6) return ((const struct sockaddr_in6 *)ss)->sin6_port;
    return ((const struct sockaddr_in *)ss)->sin_port;
}

/* Create, configure and bind one socket; listen when BACKLOG >= 0. On
 * failure returns -1 with errno kept and *STEP naming the failed call. */
static int sock_create(const struct listen_sock *s, bool reuseport, int backlog, const char **step)
{
    int fd = socket(s->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *step = "socket";
        return -1;
    }
    *step = NULL;
    if (set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0)
        *step = "setsockopt(SO_REUSEADDR)";
    else if (reuseport && set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0)
        *step = "setsockopt(SO_REUSEPORT)";
    /* [::]:80 must not also take IPv4, so that 0.0.0.0:80 can be listed too. */
    else if (s->ss.ss_family == AF_INET6 && set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1) < 0)
        *step = "setsockopt(IPV6_V6ONLY)";
    else if (bind(fd, (const struct sockaddr *)&s->ss, s->len) < 0)
        *step = ""; /* the plain errno reads best: "Address already in use" */
    else if (backlog >= 0 && listen(fd, backlog) < 0)
        *step = "listen";
    if (*step) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* With SO_REUSEPORT, a second portico (same uid) could bind the same port
 * and silently share its traffic. A probe bound without SO_REUSEPORT fails
 * with EADDRINUSE when anyone already listens there. */
static int probe_free(const struct listen_sock *s, const char **step)
{
    if (port_of(&s->ss) == 0) return 0; /* an ephemeral port is ours alone */
    int fd = sock_create(s, false, -1, step);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

/* Once the first socket of a port-0 address is bound, its siblings must
 * join the same port, or each slot would get its own. */
static void pin_port(struct listen_sock *s, int fd)
{
    if (port_of(&s->ss) != 0) return;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        s->ss = ss;
        s->len = len;
    }
}

static int fail(char *err, size_t errlen, const char *key, const char *listener, const char *step)
{
    int e = errno;
    snprintf(err, errlen, "listen %s (listener %s): %s%s%s", key, listener, step ? step : "",
             step && *step ? ": " : "", strerror(e));
    errno = e;
    return -1;
}

/* Grow S to WANT sockets (WANT is 1 when not reuseport). */
static int sock_fill(struct listen_sock *s, unsigned want, int backlog, char *err, size_t errlen)
{
    if (want <= s->nfds) return 0;
    int *fds = realloc(s->fds, want * sizeof *fds);
    if (!fds) return fail(err, errlen, s->key, s->listener, "realloc");
    s->fds = fds;
    while (s->nfds < want) {
        const char *step = "";
        int fd = sock_create(s, s->reuseport, backlog, &step);
        if (fd < 0) return fail(err, errlen, s->key, s->listener, step);
        pin_port(s, fd);
        s->fds[s->nfds++] = fd;
    }
    return 0;
}

static struct listen_sock *sock_add(struct listen_set *ls, const struct conf_addr *a,
                                    const char *key, bool reuseport)
{
    struct listen_sock *socks = realloc(ls->socks, (ls->n + 1) * sizeof *socks);
    if (!socks) return NULL;
    ls->socks = socks;
    struct listen_sock *s = &socks[ls->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->key, sizeof s->key, "%s", key);
    s->ss = a->ss;
    s->len = a->len;
    s->reuseport = reuseport;
    return s;
}

/* Bring one configured address to WANT sockets, creating its entry if new. */
static int open_addr(struct listen_set *ls, const struct conf_listener *l,
                     const struct conf_addr *a, const struct config *cfg, char *err, size_t errlen)
{
    char key[sizeof ls->socks[0].key];
    addr_key(a, key, sizeof key);
    unsigned want = cfg->reuseport ? cfg->workers : 1;
    struct listen_sock *s = find(ls, key);
    if (s && s->used) {
        errno = EADDRINUSE;
        snprintf(err, errlen, "listen %s (listener %s): already used by listener %s", key, l->name,
                 s->listener);
        return -1;
    }
    if (s && s->reuseport != cfg->reuseport) {
        snprintf(err, errlen,
                 "listen %s (listener %s): changing reuseport needs a restart, not a reload", key,
                 l->name);
        return -1;
    }
    if (!s) {
        const char *step = "";
        struct listen_sock probe = {.ss = a->ss, .len = a->len};
        if (cfg->reuseport && probe_free(&probe, &step) < 0)
            return fail(err, errlen, key, l->name, step);
        s = sock_add(ls, a, key, cfg->reuseport);
        if (!s) return fail(err, errlen, key, l->name, "realloc");
    }
    s->used = true;
    s->want = want;
    snprintf(s->listener, sizeof s->listener, "%s", l->name);
    /* A kept socket takes the new backlog: listen() again just resizes it. */
    for (unsigned i = 0; i < s->nfds; i++)
        listen(s->fds[i], l->backlog);
    return sock_fill(s, want, l->backlog, err, errlen);
}

/* Undo a failed listen_open: drop sockets it added and restore the older
 * entries as they were, since the old configuration stays in force. */
static void rollback(struct listen_set *ls, unsigned old_n, const struct listen_sock *old)
{
    for (unsigned i = 0; i < ls->n; i++) {
        struct listen_sock *s = &ls->socks[i];
        unsigned keep = i < old_n ? old[i].nfds : 0;
        while (s->nfds > keep)
            close(s->fds[--s->nfds]);
        if (i >= old_n) {
            free(s->fds);
            continue;
        }
        s->used = old[i].used;
        s->want = old[i].want;
        memcpy(s->listener, old[i].listener, sizeof s->listener);
    }
    ls->n = old_n;
}

int listen_open(struct listen_set *ls, const struct config *cfg, char *err, size_t errlen)
{
    unsigned old_n = ls->n;
    struct listen_sock *old = malloc((old_n + 1) * sizeof *old);
    if (!old) {
        snprintf(err, errlen, "listen: out of memory");
        return -1;
    }
    if (old_n) memcpy(old, ls->socks, old_n * sizeof *old);
    for (unsigned i = 0; i < old_n; i++)
        ls->socks[i].used = false;
    int rc = 0;
    for (unsigned i = 0; i < cfg->nlisteners && rc == 0; i++) {
        const struct conf_listener *l = &cfg->listeners[i];
        for (unsigned j = 0; j < l->naddrs && rc == 0; j++)
            rc = open_addr(ls, l, &l->addrs[j], cfg, err, errlen);
    }
    if (rc < 0) rollback(ls, old_n, old);
    free(old);
    return rc;
}

unsigned listen_count(const struct config *cfg)
{
    unsigned n = 0;
    for (unsigned i = 0; i < cfg->nlisteners; i++)
        n += cfg->listeners[i].naddrs;
    return n;
}

int listen_for_slot(const struct listen_set *ls, const struct config *cfg, unsigned slot,
                    struct worker_listen *out)
{
    int n = 0;
    for (unsigned i = 0; i < cfg->nlisteners; i++) {
        const struct conf_listener *l = &cfg->listeners[i];
        for (unsigned j = 0; j < l->naddrs; j++) {
            char key[sizeof ls->socks[0].key];
            addr_key(&l->addrs[j], key, sizeof key);
            const struct listen_sock *s = find(ls, key);
            unsigned k = s && s->reuseport ? slot : 0;
            if (!s || k >= s->nfds) return -1;
            out[n].fd = s->fds[k];
            out[n].listener = l;
            n++;
        }
    }
    return n;
}

static bool kept(int fd, const struct worker_listen *keep, unsigned nkeep)
{
    for (unsigned i = 0; i < nkeep; i++)
        if (keep[i].fd == fd) return true;
    return false;
}

void listen_close_except(struct listen_set *ls, const struct worker_listen *keep, unsigned nkeep)
{
    for (unsigned i = 0; i < ls->n; i++)
        for (unsigned j = 0; j < ls->socks[i].nfds; j++)
            if (!kept(ls->socks[i].fds[j], keep, nkeep)) close(ls->socks[i].fds[j]);
}

static void sock_close(struct listen_sock *s)
{
    for (unsigned j = 0; j < s->nfds; j++)
        close(s->fds[j]);
    free(s->fds);
    s->fds = NULL;
    s->nfds = 0;
}

void listen_close_unused(struct listen_set *ls)
{
    unsigned n = 0;
    for (unsigned i = 0; i < ls->n; i++) {
        struct listen_sock *s = &ls->socks[i];
        if (!s->used) {
            sock_close(s);
            continue;
        }
        /* tcp_migrate_req moves what is queued on these to the siblings. */
        while (s->nfds > s->want)
            close(s->fds[--s->nfds]);
        ls->socks[n++] = *s;
    }
    ls->n = n;
}

void listen_close_all(struct listen_set *ls)
{
    for (unsigned i = 0; i < ls->n; i++)
        sock_close(&ls->socks[i]);
    free(ls->socks);
    ls->socks = NULL;
    ls->n = 0;
}

int listen_inherit_string(const struct listen_set *ls, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < ls->n; i++) {
        const struct listen_sock *s = &ls->socks[i];
        if (!s->nfds) continue;
        int r = snprintf(buf + n, cap - n, "%s%s=", n ? ";" : "", s->key);
        if (r < 0 || (size_t)r >= cap - n) return -1;
        n += (size_t)r;
        for (unsigned j = 0; j < s->nfds; j++) {
            r = snprintf(buf + n, cap - n, "%s%d", j ? "," : "", s->fds[j]);
            if (r < 0 || (size_t)r >= cap - n) return -1;
            n += (size_t)r;
        }
    }
    return 0;
}

void listen_keep_on_exec(const struct listen_set *ls)
{
    for (unsigned i = 0; i < ls->n; i++)
        for (unsigned j = 0; j < ls->socks[i].nfds; j++)
            fcntl(ls->socks[i].fds[j], F_SETFD, 0);
}

/* A port-0 address keeps its configured text as key, though bound elsewhere. */
static bool key_matches(const char *key, const char *actual)
{
    if (strcmp(key, actual) == 0) return true;
    size_t k = strlen(key), a = strlen(actual);
    if (k < 2 || strcmp(key + k - 2, ":0") != 0) return false;
    const char *colon = strrchr(actual, ':');
    return colon && (size_t)(colon - actual) == k - 2 && strncmp(key, actual, k - 2) == 0 &&
           a > k - 2;
}

int listen_adopt(struct listen_set *ls, const char *key, int fd, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int type = 0, acc = 0, rp = 0;
    socklen_t il = sizeof type, al = sizeof acc, rl = sizeof rp;
    char actual[sizeof ls->socks[0].key];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &il) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &rp, &rl) < 0) {
        snprintf(err, errlen, "inherited fd %d for %s: %s", fd, key, strerror(errno));
        return -1;
    }
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {
        snprintf(err, errlen, "inherited fd %d for %s: not an IP socket", fd, key);
        return -1;
    }
    net_addr_str((const struct sockaddr *)&ss, actual, sizeof actual);
    if (type != SOCK_STREAM || !acc || !key_matches(key, actual)) {
        snprintf(err, errlen, "inherited fd %d for %s: %s%s%s", fd, key,
                 type != SOCK_STREAM ? "not a stream socket"
                 : !acc              ? "not listening"
                                     : "bound to ",
                 type == SOCK_STREAM && acc ? actual : "", "");
        return -1;
    }
    struct listen_sock *s = find(ls, key);
    if (s && s->reuseport != (rp != 0)) {
        snprintf(err, errlen, "inherited fd %d for %s: SO_REUSEPORT differs from its siblings", fd,
                 key);
        return -1;
    }
    if (!s) {
        struct listen_sock *socks = realloc(ls->socks, (ls->n + 1) * sizeof *socks);
        if (!socks) goto oom;
        ls->socks = socks;
        s = &socks[ls->n++];
        memset(s, 0, sizeof *s);
        snprintf(s->key, sizeof s->key, "%s", key);
        snprintf(s->listener, sizeof s->listener, "(inherited)");
        s->ss = ss;
        s->len = len;
        s->reuseport = rp != 0;
    }
    int *fds = realloc(s->fds, (s->nfds + 1) * sizeof *fds);
    if (!fds) goto oom;
    s->fds = fds;
    s->fds[s->nfds++] = fd;
    s->want = s->nfds;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return 0;
oom:
    snprintf(err, errlen, "inherited fd %d for %s: out of memory", fd, key);
    return -1;
}

void listen_enable_migration(void)
{
    static const char path[] = "/proc/sys/net/ipv4/tcp_migrate_req";
    char cur[4] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, cur, sizeof cur - 1);
        close(fd);
        if (r > 0 && cur[0] == '1') return;
    }
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "1\n", 2) != 2)
        log_debug("cannot set net.ipv4.tcp_migrate_req=1: %s", strerror(errno));
    else
        log_debug("set net.ipv4.tcp_migrate_req=1");
    if (fd >= 0) close(fd);
}
