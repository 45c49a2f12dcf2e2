/* The master: start up (config, logs, listeners, shm, pid file, detach),
 * then a small epoll loop over a signalfd and the workers' channels. Signal
 * handlers never run: every signal is blocked and read from the signalfd.
 * Startup errors go to stderr as well as the error log, with exit status 1,
 * before -d detaches. */
#include "master/master.h"

#include "common/config.h"
#include "common/log.h"
#include "master/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STOP_GRACE_MS 1000 /* fast stop: SIGTERM, then SIGKILL after this */
/* Graceful stop: workers enforce shutdown_timeout themselves; the master
 * kills only those that overrun it by this much. */
#define QUIT_SLACK_MS 1000

int64_t master_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

/* Only our own pid file: after an upgrade it may name the new master. */
static void pid_remove(struct master *m)
{
    if (!m->pid_written) return;
    if (pid_read(m->cfg->pid_file) == getpid()) unlink(m->cfg->pid_file);
    m->pid_written = false;
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
    if (shm_create(&m->shm) < 0) {
        startup_error(m, "cannot create shared memory: %s", strerror(errno));
        return -1;
    }
    m->shm_ok = true;
    return 0;
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
}

static void reopen_logs(struct master *m)
{
    log_notice("reopening logs");
    log_reopen();
    log_access_reopen();
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
    /* The lifecycle issue plugs in here: reload = load config, listen_open,
     * spawn_generation(++generation), wait READY, spawn_drain(old). */
    case SIGHUP:
        log_notice("reload is not supported yet");
        break;
    case SIGUSR2:
    case SIGWINCH:
        log_notice("binary upgrade is not supported yet");
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

static void loop(struct master *m)
{
    while (m->state == MASTER_RUNNING || m->nprocs > 0) {
        int64_t now = master_now();
        int timeout = min_timeout(spawn_tick(m, now), shutdown_tick(m, now));
        struct epoll_event ev[32];
        int n = epoll_wait(m->epfd, ev, 32, timeout);
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
    }
}

static int start(struct master *m)
{
    if (open_logs(m) < 0 || resolve_user(m) < 0) return -1;
    chown_logs(m);
    if (pid_check(m) < 0 || open_listeners(m) < 0 || open_shm(m) < 0) return -1;
    if (m->daemon && daemon_start(m) < 0) return -1;
    if (signals_setup(m) < 0 || pid_write(m) < 0) return -1;
    daemon_done(m);
    log_notice("portico %s started, %u workers", PORTICO_VERSION, m->cfg->workers);
    spawn_generation(m, m->generation);
    return 0;
}

static void cleanup(struct master *m)
{
    pid_remove(m);
    free(m->procs);
    listen_close_all(&m->listens);
    if (m->shm_ok) shm_detach(&m->shm);
    if (m->sigfd >= 0) close(m->sigfd);
    if (m->epfd >= 0) close(m->epfd);
    config_free(m->cfg);
}

int master_run(const char *file, bool daemon)
{
    struct master m = {
        .conf_file = file, .daemon = daemon, .sigfd = -1, .epfd = -1, .notify_fd = -1};
    m.cfg = config_load(file, stderr);
    if (!m.cfg) return 1;
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
