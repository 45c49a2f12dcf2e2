/* Worker lifecycle seen from the master: fork, channel, reap, respawn. A
 * dead worker of the current generation is replaced at once; only a slot
 * whose workers keep dying within SPAWN_QUICK_MS of their start waits,
 * doubling from 100 ms to SPAWN_BACKOFF_MAX_MS, so a crash loop costs
 * little CPU. The forked child is set up here and enters worker_main. */
#include "master/spawn.h"

#include "common/config.h"
#include "common/log.h"
#include "master/master.h"
#include "master/procstat.h"
#include "worker/worker.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct worker_proc *find_pid(struct master *m, pid_t pid)
{
    for (unsigned i = 0; i < m->nprocs; i++)
        if (m->procs[i].pid == pid) return &m->procs[i];
    return NULL;
}

static struct worker_proc *proc_add(struct master *m)
{
    if (m->nprocs == m->cap) {
        unsigned cap = m->cap ? m->cap * 2 : 16;
        struct worker_proc *p = realloc(m->procs, cap * sizeof *p);
        if (!p) return NULL;
        m->procs = p;
        m->cap = cap;
    }
    struct worker_proc *p = &m->procs[m->nprocs++];
    memset(p, 0, sizeof *p);
    p->channel = -1;
    return p;
}

static void channel_close(struct master *m, struct worker_proc *p)
{
    if (p->channel < 0) return;
    /* Explicit DEL: a fork in progress may still hold a copy of this fd. */
    epoll_ctl(m->epfd, EPOLL_CTL_DEL, p->channel, NULL);
    close(p->channel);
    p->channel = -1;
}

static void proc_remove(struct master *m, struct worker_proc *p)
{
    channel_close(m, p);
    *p = m->procs[--m->nprocs];
}

static void schedule(struct master *m, unsigned slot, int64_t delay)
{
    m->slots[slot].pending = true;
    m->slots[slot].respawn_at = master_now() + delay;
}

/* Fail loudly: a worker must never serve traffic as root by accident. */
static void child_drop_privileges(const struct master *m)
{
    if (!m->drop_privileges) return;
    const char *user = m->cfg->user;
    if (initgroups(user, m->gid) < 0 || setgid(m->gid) < 0 || setuid(m->uid) < 0) {
        log_error("cannot switch to user %s: %s", user, strerror(errno));
        _exit(2);
    }
    if (setuid(0) == 0) {
        log_error("user %s: privileges could be regained, refusing to run", user);
        _exit(2);
    }
}

/* The child keeps only what a worker needs: its channel end, its slot's
 * listening sockets, the logs and the shared memory. */
static void __attribute__((noreturn))
child_run(struct master *m, unsigned slot, unsigned row, int chan)
{
    for (unsigned i = 0; i < m->nprocs; i++)
        if (m->procs[i].channel >= 0) close(m->procs[i].channel);
    close(m->sigfd);
    close(m->epfd);
    signal(SIGPIPE, SIG_DFL);
    /* USR1 stays blocked: worker_main reads it from a signalfd, and a log
     * rotation's USR1 that came before that (spawn_kill_all right after a
     * reload forked us) would otherwise kill the worker (its default). */
    sigset_t mask = m->old_mask;
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    log_set_slot((int)slot);

    unsigned cap = listen_count(m->cfg);
    struct worker_listen *wl = calloc(cap ? cap : 1, sizeof *wl);
    int n = wl ? listen_for_slot(&m->listens, m->cfg, slot, wl) : -1;
    if (n < 0) {
        log_error("worker %u: no listening sockets for this slot", slot);
        _exit(2);
    }
    listen_close_except(&m->listens, wl, (unsigned)n);
    child_drop_privileges(m);

    struct worker_args a = {
        .cfg = m->cfg,
        .shm = &m->shm,
        .slot = slot,
        .row = row,
        .listens = wl,
        .nlistens = (unsigned)n,
        .channel = chan,
    };
    _exit(worker_main(&a));
}

int spawn_worker(struct master *m, unsigned slot, unsigned gen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        log_error("worker %u: socketpair: %s", slot, strerror(errno));
        return -1;
    }
    /* Claimed under the master's pid, handed to the child once it exists:
     * the row is never free while a worker might write to it. */
    int row = shm_row_claim(&m->shm, (int32_t)getpid());
    if (row < 0) {
        log_error("worker %u: no free row in shared memory", slot);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    struct worker_proc *p = proc_add(m);
    if (!p) {
        log_error("worker %u: out of memory", slot);
        shm_row_release(&m->shm, (unsigned)row);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        m->nprocs--; /* the entry being filled is not a sibling */
        close(sv[0]);
        child_run(m, slot, (unsigned)row, sv[1]);
    }
    close(sv[1]);
    if (pid < 0) {
        log_error("worker %u: fork: %s", slot, strerror(errno));
        shm_row_release(&m->shm, (unsigned)row);
        close(sv[0]);
        m->nprocs--;
        return -1;
    }
    shm_row_set_owner(&m->shm, (unsigned)row, (int32_t)pid);
    int64_t now = master_now();
    *p = (struct worker_proc){.pid = pid,
                              .slot = slot,
                              .row = (unsigned)row,
                              .generation = gen,
                              .channel = sv[0],
                              .started = now,
                              .last_beat = now};
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = sv[0]};
    if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, sv[0], &ev) < 0)
        log_error("worker %u: epoll_ctl: %s", slot, strerror(errno));
    log_debug("worker %u started, pid %d, generation %u, shm row %d", slot, (int)pid, gen, row);
    return 0;
}

unsigned spawn_generation(struct master *m, unsigned gen)
{
    unsigned n = 0;
    for (unsigned slot = 0; slot < m->cfg->workers; slot++) {
        m->slots[slot].pending = false;
        if (spawn_worker(m, slot, gen) == 0)
            n++;
        else
            schedule(m, slot, SPAWN_BACKOFF_MAX_MS);
    }
    return n;
}

void spawn_drain(struct master *m, unsigned gen)
{
    static const char msg = WORKER_MSG_QUIT;
    for (unsigned i = 0; i < m->nprocs; i++) {
        struct worker_proc *p = &m->procs[i];
        if (gen != SPAWN_ALL_GENERATIONS && p->generation != gen) continue;
        if (p->draining) continue;
        p->draining = true;
        if (p->channel < 0 || send(p->channel, &msg, 1, MSG_NOSIGNAL) != 1) kill(p->pid, SIGTERM);
    }
}

void spawn_kill_all(struct master *m, int sig)
{
    for (unsigned i = 0; i < m->nprocs; i++)
        kill(m->procs[i].pid, sig);
}

/* An exit during shutdown or drain is expected and logged quietly. */
static void log_death(const struct master *m, const struct worker_proc *p, int status)
{
    bool expected = m->state != MASTER_RUNNING || p->draining;
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        int level = expected && code == 0 ? LL_INFO : code == 0 ? LL_WARN : LL_ERROR;
        log_msg(level, "worker %u (pid %d) exited with status %d", p->slot, (int)p->pid, code);
        return;
    }
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    const char *name = sigabbrev_np(sig);
    int level = expected && (sig == SIGTERM || sig == SIGKILL) ? LL_INFO : LL_ERROR;
    log_msg(level, "worker %u (pid %d) killed by signal %d (SIG%s)%s", p->slot, (int)p->pid, sig,
            name ? name : "?", WCOREDUMP(status) ? ", core dumped" : "");
}

static int64_t backoff_ms(unsigned quick_deaths)
{
    if (quick_deaths <= 1) return 0;
    int64_t d = 100;
    for (unsigned i = 2; i < quick_deaths && d < SPAWN_BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < SPAWN_BACKOFF_MAX_MS ? d : SPAWN_BACKOFF_MAX_MS;
}

static void replace(struct master *m, const struct worker_proc *p, int64_t now)
{
    if (m->state != MASTER_RUNNING || m->winched) return;
    if (p->draining || p->generation != m->generation || p->slot >= m->cfg->workers) return;
    struct slot_state *s = &m->slots[p->slot];
    s->died_at = now;
    s->quick_deaths = now - p->started < SPAWN_QUICK_MS ? s->quick_deaths + 1 : 0;
    int64_t delay = backoff_ms(s->quick_deaths);
    if (delay > 0)
        log_warn(
            "worker %u died %u times in a row within %d ms of its start, respawning in %lld ms",
            p->slot, s->quick_deaths, SPAWN_QUICK_MS, (long long)delay);
    schedule(m, p->slot, delay);
}

void spawn_reap(struct master *m)
{
    int64_t now = master_now();
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) break;
        struct worker_proc *p = find_pid(m, pid);
        if (!p) {
            master_child_exited(m, pid, status);
            continue;
        }
        log_death(m, p, status);
        /* Each worker has a row of its own: its counts go with it. */
        if (m->shm_ok) shm_row_release(&m->shm, p->row);
        replace(m, p, now);
        proc_remove(m, p);
    }
}

bool spawn_others_alive(const struct master *m)
{
    for (unsigned i = 0; i < m->nprocs; i++)
        if (m->procs[i].generation != m->generation) return true;
    return false;
}

bool spawn_generation_ready(const struct master *m)
{
    for (unsigned slot = 0; slot < m->cfg->workers; slot++) {
        bool ok = false;
        for (unsigned i = 0; i < m->nprocs && !ok; i++) {
            const struct worker_proc *p = &m->procs[i];
            ok = p->slot == slot && p->generation == m->generation && p->ready && !p->draining &&
                 !p->hung;
        }
        if (!ok) return false;
    }
    return true;
}

void spawn_fill_missing(struct master *m)
{
    for (unsigned slot = 0; slot < m->cfg->workers; slot++) {
        bool have = m->slots[slot].pending;
        for (unsigned i = 0; i < m->nprocs && !have; i++) {
            const struct worker_proc *p = &m->procs[i];
            have = p->slot == slot && p->generation == m->generation && !p->draining;
        }
        if (!have) schedule(m, slot, 0);
    }
}

void spawn_abort_generation(struct master *m, unsigned gen, bool hung)
{
    static const char msg = WORKER_MSG_QUIT;
    for (unsigned i = 0; i < m->nprocs; i++) {
        struct worker_proc *p = &m->procs[i];
        if (p->generation != gen || p->draining) continue;
        p->draining = true;
        /* A worker accepts from the moment it writes READY, which may wait
         * unread in the channel (WINCH in the turn that forked it): read it
         * first. Any worker that may hold connections drains; only one
         * stuck before READY past the deadline is killed. */
        if (!p->ready && p->channel >= 0) spawn_channel_event(m, p->channel);
        if ((hung && !p->ready) || p->channel < 0 || send(p->channel, &msg, 1, MSG_NOSIGNAL) != 1)
            kill(p->pid, SIGKILL);
    }
}

static struct worker_proc *find_channel(struct master *m, int fd)
{
    for (unsigned i = 0; i < m->nprocs; i++)
        if (m->procs[i].channel == fd) return &m->procs[i];
    return NULL;
}

static void channel_byte(struct master *m, struct worker_proc *p, char c, int64_t now)
{
    p->last_beat = now; /* any byte proves the worker's loop turns */
    if (c == WORKER_MSG_READY && !p->ready) {
        p->ready = true;
        struct slot_state *s = &m->slots[p->slot];
        if (s->died_at && p->generation == m->generation) {
            log_notice("worker %u replaced: pid %d accepting %lld ms after its predecessor died",
                       p->slot, (int)p->pid, (long long)(now - s->died_at));
            s->died_at = 0;
        } else {
            log_info("worker %u ready (pid %d)", p->slot, (int)p->pid);
        }
    } else if (c != WORKER_MSG_READY && c != WORKER_MSG_BEAT) {
        log_debug("worker %u: unknown channel byte 0x%02x", p->slot, (unsigned char)c);
    }
}

void spawn_channel_event(struct master *m, int fd)
{
    struct worker_proc *p = find_channel(m, fd);
    if (!p) {
        epoll_ctl(m->epfd, EPOLL_CTL_DEL, fd, NULL);
        return;
    }
    char buf[64];
    int64_t now = master_now();
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r > 0) {
            for (ssize_t i = 0; i < r; i++)
                channel_byte(m, p, buf[i], now);
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        /* EOF or reset: the worker is exiting; SIGCHLD does the rest. */
        log_debug("worker %u (pid %d) closed its channel", p->slot, (int)p->pid);
        channel_close(m, p);
        return;
    }
}

static int64_t earliest(int64_t a, int64_t b)
{
    return a < 0 || (b >= 0 && b < a) ? b : a;
}

static int64_t respawn_due(struct master *m, int64_t now)
{
    int64_t next = -1;
    if (m->state != MASTER_RUNNING || m->winched) return -1;
    for (unsigned slot = 0; slot < m->cfg->workers; slot++) {
        struct slot_state *s = &m->slots[slot];
        if (!s->pending) continue;
        if (s->respawn_at > now) {
            next = earliest(next, s->respawn_at - now);
            continue;
        }
        s->pending = false;
        if (spawn_worker(m, slot, m->generation) < 0) {
            schedule(m, slot, SPAWN_BACKOFF_MAX_MS);
            next = earliest(next, SPAWN_BACKOFF_MAX_MS);
        }
    }
    return next;
}

static int64_t ready_check(struct master *m, int64_t now)
{
    int64_t next = -1;
    for (unsigned i = 0; i < m->nprocs; i++) {
        struct worker_proc *p = &m->procs[i];
        if (p->ready || p->warned_slow || p->draining) continue;
        int64_t left = p->started + SPAWN_READY_WARN_MS - now;
        if (left > 0) {
            next = earliest(next, left);
            continue;
        }
        p->warned_slow = true;
        log_warn("worker %u (pid %d) not ready after %d ms", p->slot, (int)p->pid,
                 SPAWN_READY_WARN_MS);
    }
    return next;
}

/* The master itself woke up late from its wait (the host was paused, or
 * it got no CPU): the workers could not run either, so their silence since
 * the master's last turn proves nothing, and is not counted. Time spent
 * inside a turn (a slow reload) is not such a pause: heartbeat_check reads
 * the beats sent meanwhile before it judges. */
static void stall_check(struct master *m)
{
    if (!m->beat_due || m->woke - m->beat_due <= SPAWN_STALL_MS) return;
    int64_t gap = m->woke - m->beat_checked;
    log_warn("the master did not run for %lld ms (host paused or overloaded); heartbeat "
             "deadlines moved",
             (long long)gap);
    for (unsigned i = 0; i < m->nprocs; i++) {
        struct worker_proc *p = &m->procs[i];
        if (p->last_beat < m->woke) p->last_beat += gap; /* not a beat read since */
        p->watch.at = 0; /* a CPU sample across the pause says nothing */
    }
}

static void kill_hung(struct worker_proc *p, int64_t silent, const char *why)
{
    log_error("worker %u (pid %d) sent no heartbeat for %lld ms, killing it%s", p->slot,
              (int)p->pid, (long long)silent, why);
    p->hung = true;
    kill(p->pid, SIGKILL);
}

/* A worker whose loop stops turning (a livelock, a stuck syscall, SIGSTOP)
 * sends no heartbeat; it is killed and, like any dead worker, replaced. One
 * that is runnable but gets no CPU is left alone (up to
 * SPAWN_STARVED_MAX_MS): it is overloaded or throttled, not hung. */
static int64_t heartbeat_check(struct master *m, int64_t now)
{
    stall_check(m);
    int64_t next = -1;
    for (unsigned i = 0; i < m->nprocs; i++) {
        struct worker_proc *p = &m->procs[i];
        if (!p->ready || p->hung || p->channel < 0) continue;
        /* The master may have been the slow one (a fork or a configuration
         * read that took seconds inside this turn): the beats sent meanwhile
         * wait unread in the channel. Read them before judging. */
        if (p->last_beat + SPAWN_HEARTBEAT_TIMEOUT_MS <= now) spawn_channel_event(m, p->channel);
        if (p->channel < 0) continue; /* EOF: it is exiting, SIGCHLD follows */
        int64_t silent = now - p->last_beat;
        int64_t left = SPAWN_HEARTBEAT_TIMEOUT_MS - silent;
        if (left > 0) {
            if (p->watch.since)
                log_notice("worker %u (pid %d) runs again after %lld ms without a heartbeat",
                           p->slot, (int)p->pid, (long long)(p->last_beat - p->watch.since));
            p->watch = (struct procstat_watch){0};
            next = earliest(next, left);
            continue;
        }
        if (silent >= SPAWN_STARVED_MAX_MS) {
            kill_hung(p, silent, p->watch.since ? " (still waiting for a CPU)" : "");
            continue;
        }
        struct procstat st;
        bool have = procstat_read(p->pid, &st) == 0;
        int64_t wait = 0, cpu = 0, wall = 0;
        char why[96];
        switch (procstat_judge(&p->watch, have ? &st : NULL, now, &wait, &cpu, &wall)) {
        case PROCSTAT_STARVED:
            if (!p->watch.since) {
                p->watch.since = p->last_beat;
                log_warn("worker %u (pid %d) sent no heartbeat for %lld ms but is waiting for a "
                         "CPU (used %lld ms of CPU in the last %lld ms): not killed",
                         p->slot, (int)p->pid, (long long)silent, (long long)cpu, (long long)wall);
            }
            next = earliest(next, wait);
            break;
        case PROCSTAT_WAIT:
            next = earliest(next, wait);
            break;
        case PROCSTAT_BUSY:
            snprintf(why, sizeof why, " (busy: %lld ms of CPU in the last %lld ms)", (long long)cpu,
                     (long long)wall);
            kill_hung(p, silent, why);
            break;
        case PROCSTAT_STOPPED:
            kill_hung(p, silent, " (stopped)");
            break;
        case PROCSTAT_HUNG:
            if (have)
                snprintf(why, sizeof why, " (state %c)", st.state);
            else
                snprintf(why, sizeof why, " (no /proc/%d/stat)", (int)p->pid);
            kill_hung(p, silent, why);
            break;
        }
    }
    m->beat_checked = now;
    m->beat_due = next < 0 ? 0 : now + next;
    return next;
}

int spawn_tick(struct master *m, int64_t now)
{
    int64_t next = earliest(respawn_due(m, now), ready_check(m, now));
    next = earliest(next, heartbeat_check(m, now));
    return next < 0 ? -1 : next > 60000 ? 60000 : (int)next;
}
