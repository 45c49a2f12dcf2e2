/* The master: start up (config, logs, listeners, shm, pid file, detach),
 * then a small epoll loop over a signalfd and the workers' channels. Signal
 * handlers never run: every signal is blocked and read from the signalfd.
 * Startup errors go to stderr as well as the error log, with exit status 1,
 * before -d detaches. */
#include "master/master.h"

#include "common/arena.h"
#include "common/config.h"
#include "common/log.h"
#include "master/fdlimit.h"
#include "master/spawn.h"
#include "common/ticket_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STOP_GRACE_MS 1000 /* fast stop: SIGTERM, then SIGKILL after this */
/* Graceful stop: workers enforce shutdown_timeout themselves; the master
 * kills only those that overrun it by this much. */
#define QUIT_SLACK_MS 1000
#define RELOAD_READY_MS 5000 /* a reload whose new workers are not all ready by then is undone */
#define INHERIT_ENV "PORTICO_INHERIT"

int64_t master_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- systemd ---- */

/* sd_notify(3) spoken directly: one datagram to $NOTIFY_SOCKET ("@name" is
 * in the abstract namespace). Without the variable, nothing happens. */
static void __attribute__((format(printf, 1, 2))) notify(const char *fmt, ...)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@') ||
        strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof msg) return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t plen = strlen(path);
    memcpy(sa.sun_path, path, plen);
    if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    if (sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
        log_debug("sd_notify %s: %s", path, strerror(errno));
    close(fd);
}

/* The upgrade runs "the binary at argv[0]", which may have been replaced on
 * disk since: resolve the path now, not the inode (/proc/self/exe). */
static char *resolve_exe(const char *argv0)
{
    char buf[PATH_MAX];
    if (strchr(argv0, '/')) return realpath(argv0, NULL);
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        int n = snprintf(buf, sizeof buf, "%.*s/%s", (int)len, len ? path : ".", argv0);
        if (n > 0 && (size_t)n < sizeof buf && access(buf, X_OK) == 0) return realpath(buf, NULL);
        path = end ? end + 1 : NULL;
    }
    return NULL;
}

static bool logs_to_stderr(const struct master *m)
{
    return !m->cfg || !m->cfg->error_log || strcmp(m->cfg->error_log, "stderr") == 0;
}

/* Before detaching, the operator watches the terminal, not the log file. */
static void __attribute__((format(printf, 2, 3)))
startup_error(const struct master *m, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_error("%s", msg);
    if (!logs_to_stderr(m)) fprintf(stderr, "portico: %s\n", msg);
}

/* ---- pid file ---- */

/* Returns the pid in PATH, or -1 with errno (EINVAL: not a pid). */
static pid_t pid_read(const char *path)
{
    char buf[32] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    char *end;
    long pid = r > 0 ? strtol(buf, &end, 10) : 0;
    if (pid <= 0 || (*end != '\n' && *end != '\0')) {
        errno = EINVAL;
        return -1;
    }
    return (pid_t)pid;
}

static bool same_program(pid_t pid)
{
    char path[64], theirs[32] = "", ours[32] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "re"), *g = fopen("/proc/self/comm", "re");
    if (f && !fgets(theirs, sizeof theirs, f)) theirs[0] = '\0';
    if (g && !fgets(ours, sizeof ours, g)) ours[0] = '\0';
    if (f) fclose(f);
    if (g) fclose(g);
    return theirs[0] && strcmp(theirs, ours) == 0;
}

/* A second master with SO_REUSEPORT would share the ports silently, so a
 * live portico named by the pid file stops us. A stale file does not. */
static int pid_check(const struct master *m)
{
    const char *path = m->cfg->pid_file;
    if (!path) return 0;
    pid_t pid = pid_read(path);
    if (pid <= 0 || pid == getpid()) return 0;
    if (m->inherited && pid == getppid()) return 0; /* the old master, rollback aside */
    if ((kill(pid, 0) == 0 || errno == EPERM) && same_program(pid)) {
        startup_error(m, "already running as pid %d (pid_file %s)", (int)pid, path);
        return -1;
    }
    return 0;
}

static int pid_write(struct master *m)
{
    const char *path = m->cfg->pid_file;
    if (!path) return 0;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, buf, (size_t)n) != n) {
        startup_error(m, "cannot write pid_file %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    m->pid_written = true;
    return 0;
}

static void oldbin_path(const struct master *m, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s.oldbin", m->cfg->pid_file);
}

/* Only our own pid file: after an upgrade it may name the new master. */
static void pid_remove(struct master *m)
{
    if (!m->pid_written) return;
    char old[PATH_MAX];
    oldbin_path(m, old, sizeof old);
    if (pid_read(m->cfg->pid_file) == getpid()) unlink(m->cfg->pid_file);
    if (m->oldbin && pid_read(old) == getpid()) unlink(old);
    m->pid_written = false;
}

/* Binary upgrade: our pid file becomes PID_FILE.oldbin while the new master
 * writes its own; back again when the new master goes away. */
static void pid_to_oldbin(struct master *m, bool to_oldbin)
{
    if (!m->pid_written || m->oldbin == to_oldbin) return;
    char old[PATH_MAX];
    oldbin_path(m, old, sizeof old);
    const char *from = to_oldbin ? m->cfg->pid_file : old, *to = to_oldbin ? old : m->cfg->pid_file;
    if (rename(from, to) < 0) log_warn("cannot rename %s to %s: %s", from, to, strerror(errno));
    m->oldbin = to_oldbin;
}

/* ---- startup pieces ---- */

static int resolve_user(struct master *m)
{
    const char *user = m->cfg->user;
    if (!user) return 0;
    if (geteuid() != 0) {
        log_warn("user = %s ignored: the master does not run as root", user);
        return 0;
    }
    errno = 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        startup_error(m, "user %s: %s", user, errno ? strerror(errno) : "no such user");
        return -1;
    }
    m->uid = pw->pw_uid;
    m->gid = pw->pw_gid;
    m->drop_privileges = pw->pw_uid != 0;
    return 0;
}

/* Workers reopen the logs on USR1 without root, so the files the master
 * created must belong to them (what nginx does too). */
static void chown_logs(const struct master *m)
{
    if (!m->drop_privileges) return;
    const char *paths[2] = {logs_to_stderr(m) ? NULL : m->cfg->error_log, m->cfg->access_log};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (!paths[i] || strcmp(paths[i], "stdout") == 0) continue;
        if (stat(paths[i], &st) == 0 && st.st_uid != m->uid && chown(paths[i], m->uid, -1) < 0)
            log_warn("cannot chown %s to %s: %s", paths[i], m->cfg->user, strerror(errno));
    }
}

static int open_logs(struct master *m)
{
    const struct config *c = m->cfg;
    if (log_open(c->error_log, c->log_level) < 0) {
        fprintf(stderr, "portico: cannot open error_log %s: %s\n", c->error_log, strerror(errno));
        return -1;
    }
    if (log_access_open(c->access_log) < 0) {
        startup_error(m, "cannot open access_log %s: %s", c->access_log, strerror(errno));
        return -1;
    }
    return 0;
}

static int open_listeners(struct master *m)
{
    char err[512];
    if (m->cfg->reuseport) listen_enable_migration();
    if (listen_open(&m->listens, m->cfg, err, sizeof err) < 0) {
        startup_error(m, "%s", err);
        return -1;
    }
    return 0;
}

static int open_shm(struct master *m)
{
    if (m->cfg->workers > SHM_MAX_SLOTS) {
        startup_error(m, "workers = %u: at most %d are supported", m->cfg->workers, SHM_MAX_SLOTS);
        return -1;
    }
    if (m->shm_ok) return 0; /* inherited from the old master */
    if (shm_create(&m->shm) < 0) {
        startup_error(m, "cannot create shared memory: %s", strerror(errno));
        return -1;
    }
    m->shm_ok = true;
    return 0;
}

/* ---- binary upgrade, new master side ---- */

static int inherit_fd(const char *text, int *fd)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || v < 3 || v > INT_MAX) return -1;
    *fd = (int)v;
    return (int)(end - text);
}

/* PORTICO_INHERIT="shm=5;127.0.0.1:8080=6,7;[::1]:80=8": take every fd after
 * checking it. A bad entry fails the startup: the old master carries on. */
static int inherit(struct master *m)
{
    const char *env = getenv(INHERIT_ENV);
    if (!env) return 0;
    char *copy = strdup(env), *save = NULL;
    unsetenv(INHERIT_ENV); /* our workers and a later upgrade must not see it */
    if (!copy) return -1;
    m->inherited = true;
    m->old_master = getppid();
    int rc = 0;
    for (char *item = strtok_r(copy, ";", &save); item && rc == 0;
         item = strtok_r(NULL, ";", &save)) {
        char *eq = strrchr(item, '=');
        if (!eq) {
            startup_error(m, "%s: bad entry \"%s\"", INHERIT_ENV, item);
            rc = -1;
            break;
        }
        *eq = '\0';
        const char *p = eq + 1;
        for (;;) {
            int fd, n = inherit_fd(p, &fd);
            if (n < 0) {
                startup_error(m, "%s: bad fd list for %s", INHERIT_ENV, item);
                rc = -1;
                break;
            }
            char err[256];
            if (strcmp(item, "shm") == 0) {
                if (shm_attach(&m->shm, fd) == 0) {
                    m->shm_ok = true;
                } else if (errno == EPROTO) {
                    /* Another binary's layout: ours starts afresh (open_shm). */
                    log_warn("binary upgrade: the inherited shared memory has another layout "
                             "version (this binary uses %u): starting a fresh one; TLS session "
                             "tickets issued before the upgrade will not resume, and least_conn "
                             "does not count the old master's connections",
                             SHM_VERSION);
                    close(fd);
                    m->shm_other = true;
                } else {
                    startup_error(m, "inherited shared memory (fd %d): %s", fd,
                                  errno == EINVAL ? "not a portico region" : strerror(errno));
                    rc = -1;
                    break;
                }
            } else if (listen_adopt(&m->listens, item, fd, err, sizeof err) < 0) {
                startup_error(m, "%s", err);
                rc = -1;
                break;
            }
            p += n;
            if (*p != ',') break;
            p++;
        }
    }
    free(copy);
    if (rc == 0 && !m->shm_ok && !m->shm_other) {
        startup_error(m, "%s names no shared memory", INHERIT_ENV);
        rc = -1;
    }
    if (rc == 0)
        log_notice("binary upgrade: took over the sockets %sof pid %d",
                   m->shm_other ? "(not the shared memory) " : "and shared memory ",
                   (int)getppid());
    return rc;
}

/* ---- -d ---- */

/* Fork; the parent waits on a pipe until the child reports that startup
 * finished, so errors up to then still reach the terminal and exit 1. */
static int daemon_start(struct master *m)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        startup_error(m, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        startup_error(m, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        char c = 0;
        close(p[1]);
        ssize_t r;
        do
            r = read(p[0], &c, 1);
        while (r < 0 && errno == EINTR);
        _exit(r == 1 && c == '0' ? 0 : 1);
    }
    close(p[0]);
    setsid();
    m->notify_fd = p[1];
    return 0;
}

static void daemon_done(struct master *m)
{
    if (m->notify_fd < 0) return;
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        if (!logs_to_stderr(m)) dup2(null, 2);
        close(null);
    }
    if (m->cfg->access_log && strcmp(m->cfg->access_log, "stdout") == 0)
        log_warn("access_log = stdout is discarded when detached (-d)");
    if (write(m->notify_fd, "0", 1) != 1) log_debug("daemon parent gone");
    close(m->notify_fd);
    m->notify_fd = -1;
}

/* ---- signals ---- */

static int signals_setup(struct master *m)
{
    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGHUP, SIGUSR2, SIGWINCH, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGCHLD};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&set, sigs[i]);
    sigprocmask(SIG_BLOCK, &set, &m->old_mask);
    signal(SIGPIPE, SIG_IGN); /* a dead worker's channel must not kill us */
    m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    m->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = m->sigfd};
    if (m->sigfd < 0 || m->epfd < 0 || epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->sigfd, &ev) < 0) {
        startup_error(m, "signalfd/epoll: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void stop_fast(struct master *m)
{
    if (m->state == MASTER_STOPPING) return;
    log_notice("fast shutdown");
    m->state = MASTER_STOPPING;
    m->deadline = master_now() + STOP_GRACE_MS;
    m->killed = false;
    spawn_kill_all(m, SIGTERM);
}

static void stop_graceful(struct master *m)
{
    if (m->state != MASTER_RUNNING) return;
    log_notice("graceful shutdown, up to %lld ms", (long long)m->cfg->shutdown_timeout);
    m->state = MASTER_QUITTING;
    m->deadline = master_now() + m->cfg->shutdown_timeout + QUIT_SLACK_MS;
    spawn_drain(m, SPAWN_ALL_GENERATIONS);
    /* The workers close their copies as they start draining; once ours are
     * gone too, a new connection is refused instead of waiting in a queue
     * that nobody accepts from and that would be reset when we exit. After
     * a binary upgrade the new master holds sockets of its own. */
    listen_close_all(&m->listens);
}

/* ---- reload ---- */

/* config_load prints "FILE:LINE: message" lines; each becomes an error line,
 * but "FILE:LINE: warning: ..." ones (the load goes on) a warn line. */
static struct config *reload_load(struct master *m)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        log_error("reload: open_memstream: %s", strerror(errno));
        return NULL;
    }
    struct config *cfg = config_load(m->conf_file, f);
    fclose(f);
    for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (*line) log_msg(strstr(line, ": warning: ") ? LL_WARN : LL_ERROR, "%s", line);
    }
    free(text);
    return cfg;
}

/* Logs follow the configuration in force (and a reload reopens them, as a
 * rotation would). Failure keeps the files already open. */
static void reload_logs(struct master *m)
{
    const struct config *c = m->cfg;
    if (log_open(c->error_log, c->log_level) < 0)
        log_error("cannot open error_log %s: %s", c->error_log, strerror(errno));
    if (log_access_open(c->access_log) < 0)
        log_error("cannot open access_log %s: %s", c->access_log, strerror(errno));
    chown_logs(m);
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The master has already dropped to `user` in its workers and owns the
 * pid_file it wrote at start: neither can change without a restart or a
 * binary upgrade, so a reload keeps the running values and says so. */
static void reload_keep_fixed(struct config *cfg, const struct config *old)
{
    if (!same_str(cfg->user, old->user))
        log_warn(
            "reload: user = %s needs a restart or a binary upgrade; workers keep running as %s",
            cfg->user ? cfg->user : "(none)", old->user ? old->user : "the master's user");
    if (!same_str(cfg->pid_file, old->pid_file))
        log_warn("reload: pid_file = %s needs a restart or a binary upgrade; keeping %s",
                 cfg->pid_file ? cfg->pid_file : "(none)",
                 old->pid_file ? old->pid_file : "(none)");
    cfg->user = old->user ? arena_strdup(cfg->arena, old->user) : NULL;
    cfg->pid_file = old->pid_file ? arena_strdup(cfg->arena, old->pid_file) : NULL;
}

static void reload_start(struct master *m)
{
    if (m->state != MASTER_RUNNING) return;
    if (m->reloading) {
        log_notice("reload already in progress: another one follows it");
        m->reload_again = true;
        return;
    }
    notify("RELOADING=1");
    log_notice("reloading %s", m->conf_file);
    struct config *cfg = reload_load(m);
    char err[512];
    if (!cfg) {
        log_error("reload refused: the configuration has errors; still running the old one");
        notify("READY=1");
        return;
    }
    /* Keys stay with the listener's name: tickets issued before the reload
     * still resume. */
    ticket_keys_sync(&m->shm, cfg);
    reload_keep_fixed(cfg, m->cfg);
    m->tickets_at = 0; /* periods may have changed */
    if (cfg->reuseport) listen_enable_migration();
    if (listen_open(&m->listens, cfg, err, sizeof err) < 0) {
        log_error("reload refused: %s; still running the old configuration", err);
        config_free(cfg);
        notify("READY=1");
        return;
    }
    m->old_cfg = m->cfg;
    m->old_generation = m->generation;
    m->cfg = cfg;
    m->generation++;
    m->reloading = true;
    m->reload_deadline = master_now() + RELOAD_READY_MS;
    for (unsigned i = 0; i < SHM_MAX_SLOTS; i++)
        m->slots[i] = (struct slot_state){0};
    reload_logs(m);
    fdlimit_apply(m->cfg); /* max_connections or the pools may have grown */
    spawn_generation(m, m->generation);
}

/* Every new worker is ready: only now are the old ones told to drain, so
 * each socket always has a worker accepting from it. */
static void reload_commit(struct master *m)
{
    log_notice("reload done: generation %u running %u workers; generation %u drains", m->generation,
               m->cfg->workers, m->old_generation);
    spawn_drain(m, m->old_generation);
    listen_close_unused(&m->listens);
    config_free(m->old_cfg);
    m->old_cfg = NULL;
    m->reloading = false;
    notify("READY=1");
}

/* WHY is NULL when the new workers missed RELOAD_READY_MS, an error; else
 * what dropped the reload on purpose (a stop, WINCH), which is no error.
 * The new workers drain like an old generation (spawn_abort_generation). */
static void reload_abort(struct master *m, const char *why)
{
    if (why)
        log_notice("reload dropped: %s", why);
    else
        log_error("reload aborted: the new workers were not all ready within %d ms; "
                  "still running the old configuration",
                  RELOAD_READY_MS);
    spawn_abort_generation(m, m->generation, !why);
    config_free(m->cfg);
    m->cfg = m->old_cfg;
    m->tickets_at = 0; /* the old periods again */
    m->old_cfg = NULL;
    m->generation = m->old_generation;
    m->reloading = false;
    m->reload_again = false;
    char err[512];
    /* Only marks the old sockets used again; the new ones close once the
     * aborted workers are gone (listen_close_unused after the reap). */
    if (m->state == MASTER_RUNNING && listen_open(&m->listens, m->cfg, err, sizeof err) < 0)
        log_error("%s", err);
    reload_logs(m);
    for (unsigned i = 0; i < SHM_MAX_SLOTS; i++)
        m->slots[i] = (struct slot_state){0};
    spawn_fill_missing(m); /* old workers that died meanwhile */
    notify("READY=1");
}

static int reload_tick(struct master *m, int64_t now)
{
    if (!m->notified_ready && !m->reloading && spawn_generation_ready(m)) {
        m->notified_ready = true;
        log_notice("all %u workers ready", m->cfg->workers);
        if (m->inherited)
            notify("MAINPID=%d\nREADY=1", (int)getpid());
        else
            notify("READY=1");
    }
    if (!m->reloading) {
        if (m->reload_again && m->state == MASTER_RUNNING) {
            m->reload_again = false;
            reload_start(m);
            return 0;
        }
        /* The sockets only an aborted generation used go with it. */
        if (!spawn_others_alive(m)) listen_close_unused(&m->listens);
        return -1;
    }
    if (m->state != MASTER_RUNNING) {
        reload_abort(m, "shutting down");
        return -1;
    }
    if (spawn_generation_ready(m)) {
        reload_commit(m);
        return m->reload_again ? 0 : -1;
    }
    if (now >= m->reload_deadline) {
        reload_abort(m, NULL);
        return -1;
    }
    return (int)(m->reload_deadline - now);
}

/* ---- binary upgrade, old master side ---- */

static void __attribute__((noreturn)) upgrade_exec(struct master *m, const char *inherit_env)
{
    sigprocmask(SIG_SETMASK, &m->old_mask, NULL);
    signal(SIGPIPE, SIG_DFL);
    listen_keep_on_exec(&m->listens);
    fcntl(m->shm.fd, F_SETFD, 0);
    setenv(INHERIT_ENV, inherit_env, 1);
    execv(m->exe, m->argv);
    log_error("binary upgrade: cannot execute %s: %s", m->exe, strerror(errno));
    _exit(1);
}

static void upgrade_start(struct master *m)
{
    if (m->state != MASTER_RUNNING || m->winched) {
        log_warn("binary upgrade refused: %s",
                 m->winched ? "this is the old master of an upgrade" : "shutting down");
        return;
    }
    if (m->upgrade_pid) {
        log_warn("binary upgrade refused: new master pid %d is still running", (int)m->upgrade_pid);
        return;
    }
    /* A third master would rename our pid file over the old master's
     * PID_FILE.oldbin, leaving that one named nowhere and its rollback
     * broken. Once the old master exits we are reparented and may go on. */
    if (m->inherited && getppid() == m->old_master) {
        log_warn("binary upgrade refused: the old master pid %d still runs; QUIT it (commit) or "
                 "QUIT this one (rollback) first",
                 (int)m->old_master);
        return;
    }
    if (!m->exe) {
        log_error("binary upgrade refused: the path of the binary is unknown");
        return;
    }
    size_t cap = 64 + (size_t)m->listens.n * 128;
    for (unsigned i = 0; i < m->listens.n; i++)
        cap += (size_t)m->listens.socks[i].nfds * 12;
    char *env = malloc(cap);
    int n = env ? snprintf(env, cap, "shm=%d;", m->shm.fd) : -1;
    if (n < 0 || listen_inherit_string(&m->listens, env + n, cap - (size_t)n) < 0) {
        log_error("binary upgrade: out of memory");
        free(env);
        return;
    }
    pid_to_oldbin(m, true);
    pid_t pid = fork();
    if (pid == 0) upgrade_exec(m, env);
    free(env);
    if (pid < 0) {
        log_error("binary upgrade: fork: %s", strerror(errno));
        pid_to_oldbin(m, false);
        return;
    }
    m->upgrade_pid = pid;
    log_notice("binary upgrade: started %s as new master pid %d", m->exe, (int)pid);
}

/* WINCH: the new master serves; our workers drain, we stay for a rollback. */
static void upgrade_winch(struct master *m)
{
    if (!m->upgrade_pid || m->state != MASTER_RUNNING) {
        log_warn("WINCH ignored: no binary upgrade in progress");
        return;
    }
    if (m->reloading) reload_abort(m, "WINCH");
    log_notice("binary upgrade: draining our workers; HUP rolls back, QUIT commits");
    m->winched = true;
    for (unsigned i = 0; i < SHM_MAX_SLOTS; i++)
        m->slots[i].pending = false;
    spawn_drain(m, SPAWN_ALL_GENERATIONS);
}

static void upgrade_rollback(struct master *m, const char *why)
{
    log_notice("binary upgrade: %s, starting our workers again", why);
    m->winched = false;
    m->generation++;
    spawn_generation(m, m->generation);
}

void master_child_exited(struct master *m, pid_t pid, int status)
{
    if (pid != m->upgrade_pid) {
        log_debug("reaped unknown child %d", (int)pid);
        return;
    }
    m->upgrade_pid = 0;
    if (WIFEXITED(status))
        log_notice("binary upgrade: new master pid %d exited with status %d", (int)pid,
                   WEXITSTATUS(status));
    else
        log_notice("binary upgrade: new master pid %d killed by signal %d", (int)pid,
                   WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    if (m->state != MASTER_RUNNING) return;
    pid_to_oldbin(m, false);
    if (m->winched) upgrade_rollback(m, "the new master is gone");
    notify("MAINPID=%d\nREADY=1", (int)getpid());
}

static void reopen_logs(struct master *m)
{
    log_reopen();
    log_access_reopen();
    log_notice("logs reopened"); /* in the new file: the rotation worked */
    chown_logs(m);
    spawn_kill_all(m, SIGUSR1);
}

static void on_signal(struct master *m, const struct signalfd_siginfo *si)
{
    int sig = (int)si->ssi_signo;
    if (sig != SIGCHLD)
        log_notice("signal %d (SIG%s) received from pid %u", sig, sigabbrev_np(sig), si->ssi_pid);
    switch (sig) {
    case SIGCHLD:
        spawn_reap(m);
        break;
    case SIGTERM:
    case SIGINT:
        stop_fast(m);
        break;
    case SIGQUIT:
        stop_graceful(m);
        break;
    case SIGUSR1:
        reopen_logs(m);
        break;
    case SIGHUP:
        /* After WINCH, HUP brings our workers back (nginx's rollback). */
        if (m->winched && m->state == MASTER_RUNNING)
            upgrade_rollback(m, "HUP after WINCH");
        else
            reload_start(m);
        break;
    case SIGUSR2:
        upgrade_start(m);
        break;
    case SIGWINCH:
        upgrade_winch(m);
        break;
    }
}

static void read_signals(struct master *m)
{
    struct signalfd_siginfo si;
    while (read(m->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
        on_signal(m, &si);
}

/* ---- loop ---- */

/* During a stop, SIGKILL whoever outlives the deadline. Returns the ms to
 * wait before the next check, or -1. */
static int shutdown_tick(struct master *m, int64_t now)
{
    if (m->state == MASTER_RUNNING || m->killed) return -1;
    if (now < m->deadline) return (int)(m->deadline - now);
    log_warn("%u worker(s) still running at the deadline, killing them", m->nprocs);
    spawn_kill_all(m, SIGKILL);
    m->killed = true;
    return -1;
}

static int min_timeout(int a, int b)
{
    return a < 0 || (b >= 0 && b < a) ? b : a;
}

/* Rotate TLS ticket keys when one is due (m->tickets_at, 0 = ask now). */
static int tickets_tick(struct master *m, int64_t now)
{
    if (m->state != MASTER_RUNNING) return -1;
    if (m->tickets_at < 0) return -1;
    if (now >= m->tickets_at) {
        int left = ticket_keys_tick(&m->shm, m->cfg);
        m->tickets_at = left < 0 ? -1 : now + left;
        return left;
    }
    return (int)(m->tickets_at - now);
}

/* The ticks run after the events of each turn: a heartbeat read in this
 * turn must count before heartbeat_check judges it, even after the master
 * itself was slow. */
static void loop(struct master *m)
{
    int timeout = 0;
    while (m->state == MASTER_RUNNING || m->nprocs > 0) {
        struct epoll_event ev[32];
        int n = epoll_wait(m->epfd, ev, 32, timeout);
        m->woke = master_now(); /* late after a pause of the host: spawn_tick */
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait: %s", strerror(errno));
            n = 0;
            sleep(1); /* cannot happen in practice; never spin if it does */
        }
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd == m->sigfd)
                read_signals(m);
            else
                spawn_channel_event(m, ev[i].data.fd);
        }
        int64_t now = master_now();
        timeout = min_timeout(spawn_tick(m, now), shutdown_tick(m, now));
        timeout = min_timeout(timeout, reload_tick(m, now));
        timeout = min_timeout(timeout, tickets_tick(m, now));
    }
}

static int start(struct master *m)
{
    if (open_logs(m) < 0 || resolve_user(m) < 0) return -1;
    chown_logs(m);
    /* Before any socket: the master holds every listener, and the workers
     * forked later inherit the limit. */
    fdlimit_apply(m->cfg);
    if (inherit(m) < 0) return -1;
    if (pid_check(m) < 0 || open_listeners(m) < 0 || open_shm(m) < 0) return -1;
    /* Sockets inherited but no longer configured: no worker of ours uses them. */
    listen_close_unused(&m->listens);
    /* The new master of an upgrade is detached already when the old one was. */
    if (m->daemon && !m->inherited && daemon_start(m) < 0) return -1;
    if (signals_setup(m) < 0 || pid_write(m) < 0) return -1;
    daemon_done(m);
    log_notice("portico %s started, %u workers", PORTICO_VERSION, m->cfg->workers);
    /* Before the first fork: workers find their listeners' ticket keys
     * (an upgraded master finds the old master's). */
    ticket_keys_sync(&m->shm, m->cfg);
    spawn_generation(m, m->generation);
    return 0;
}

static void cleanup(struct master *m)
{
    pid_remove(m);
    free(m->procs);
    free(m->exe);
    config_free(m->old_cfg);
    listen_close_all(&m->listens);
    if (m->shm_ok) shm_detach(&m->shm);
    if (m->sigfd >= 0) close(m->sigfd);
    if (m->epfd >= 0) close(m->epfd);
    config_free(m->cfg);
}

int master_run(const char *file, bool daemon, char **argv)
{
    struct master m = {.conf_file = file,
                       .argv = argv,
                       .daemon = daemon,
                       .sigfd = -1,
                       .epfd = -1,
                       .notify_fd = -1,
                       .shm = {.fd = -1}};
    m.cfg = config_load(file, stderr);
    if (!m.cfg) return 1;
    m.exe = resolve_exe(argv[0]);
    int rc = start(&m);
    if (rc == 0) {
        loop(&m);
        log_notice("exiting");
    }
    cleanup(&m);
    return rc == 0 ? 0 : 1;
}

static int signal_of(const char *word)
{
    static const struct {
        const char *word;
        int sig;
    } words[] = {{"reload", SIGHUP},
                 {"reopen", SIGUSR1},
                 {"quit", SIGQUIT},
                 {"stop", SIGTERM},
                 {"upgrade", SIGUSR2}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(word, words[i].word) == 0) return words[i].sig;
    return -1;
}

int master_signal(const char *file, const char *word)
{
    int sig = signal_of(word);
    if (sig < 0) {
        fprintf(stderr,
                "portico: unknown signal \"%s\"; use reload, reopen, quit, stop or upgrade\n",
                word);
        return 2;
    }
    struct config *cfg = config_load(file, stderr);
    if (!cfg) return 1;
    int rc = 1;
    pid_t pid;
    if (!cfg->pid_file)
        fprintf(stderr, "portico: pid_file is not set in %s, cannot find the master\n", file);
    else if ((pid = pid_read(cfg->pid_file)) < 0)
        fprintf(stderr, "portico: cannot read pid_file %s: %s (is portico running?)\n",
                cfg->pid_file, errno == EINVAL ? "it holds no pid" : strerror(errno));
    else if (kill(pid, sig) < 0)
        fprintf(stderr, "portico: cannot signal pid %d from %s: %s\n", (int)pid, cfg->pid_file,
                errno == ESRCH ? "no such process (is portico running?)" : strerror(errno));
    else
        rc = 0;
    config_free(cfg);
    return rc;
}
