/* The master process: every piece of its state lives in struct master, so
 * that reload and binary upgrade can see and replace all of it in one place.
 * master.c runs the control loop and shutdowns; spawn.c forks, reaps and
 * respawns workers; listen.c owns the listening sockets. */
#ifndef PORTICO_MASTER_H
#define PORTICO_MASTER_H

#include "common/shm.h"
#include "master/listen.h"
#include "master/procstat.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct config;

/* One forked worker. Entries are removed when the process is reaped. */
struct worker_proc {
    pid_t pid;
    unsigned slot;
    unsigned row;        /* shm row claimed for it, released when reaped */
    unsigned generation; /* workers of one config share a generation */
    int channel;         /* master's socketpair end; -1 after EOF */
    int64_t started;     /* monotonic ms */
    int64_t last_beat;   /* monotonic ms of the last byte on the channel */
    bool hung;           /* heartbeat stopped: SIGKILL sent */
    bool ready;          /* sent WORKER_MSG_READY */
    bool draining;       /* told to QUIT (reload, graceful stop) */
    bool warned_slow;    /* "not ready yet" already logged */
    /* While silent past the timeout: hung, or waiting for a CPU? */
    struct procstat_watch watch;
};

/* Respawn bookkeeping per slot, so a crash loop backs off instead of
 * burning a CPU on fork. */
struct slot_state {
    unsigned quick_deaths; /* consecutive deaths within SPAWN_QUICK_MS of start */
    bool pending;          /* a worker for this slot is to be forked */
    int64_t respawn_at;    /* monotonic ms, when pending */
    int64_t died_at;       /* monotonic ms the last worker was reaped, until replaced */
};

enum master_state {
    MASTER_RUNNING,
    MASTER_QUITTING, /* graceful: workers drain, bounded by shutdown_timeout */
    MASTER_STOPPING, /* fast: workers got SIGTERM, SIGKILL after a second */
};

struct master {
    const char *conf_file;
    char **argv;         /* for the binary upgrade: exec'd again as is */
    char *exe;           /* argv[0] resolved to an absolute path at startup */
    struct config *cfg;  /* in force; the current generation runs it */
    unsigned generation; /* of the workers running cfg */

    /* A reload in progress: the new generation runs cfg, the previous one
     * old_cfg, until every new worker is ready (commit) or the deadline
     * passes (abort: cfg and generation go back). */
    bool reloading, reload_again;
    struct config *old_cfg;
    unsigned old_generation;
    int64_t reload_deadline;

    /* Binary upgrade, seen from the old master. */
    pid_t upgrade_pid; /* the new master while it runs, else 0 */
    bool oldbin;       /* our pid file was renamed to PID_FILE.oldbin */
    bool winched;      /* WINCH: our workers drained, none respawned until HUP */
    bool inherited;    /* we are the new master: sockets and shm came from the old one */
    pid_t old_master;  /* inherited: the old master (our parent while it lives) */
    bool notified_ready;
    struct listen_set listens;
    struct shm shm;
    bool shm_ok;
    bool shm_other;     /* upgrade: the inherited shm had another layout; ours is fresh */
    int64_t tickets_at; /* monotonic ms of the next ticket key rotation; 0 now, -1 none */

    int sigfd, epfd;
    sigset_t old_mask; /* restored in forked workers */

    struct worker_proc *procs; /* malloc'd, nprocs used of cap */
    unsigned nprocs, cap;
    struct slot_state slots[SHM_MAX_SLOTS];
    int64_t woke;         /* monotonic ms the loop's last epoll_wait returned */
    int64_t beat_checked; /* monotonic ms of heartbeat_check's last run */
    int64_t beat_due;     /* when it meant to run next at the latest, 0 none */

    enum master_state state;
    int64_t deadline; /* QUITTING/STOPPING: SIGKILL stragglers at this time */
    bool killed;      /* SIGKILL already sent */

    bool drop_privileges; /* root and cfg->user set */
    uid_t uid;
    gid_t gid;

    bool daemon;
    int notify_fd; /* -d: pipe to the waiting parent, -1 once told */
    bool pid_written;
};

/* Start up from FILE (config, logs, listeners, shm, pid file), detach when
 * DAEMON, run until told to exit. ARGV is main's, kept for the binary
 * upgrade; PORTICO_INHERIT in the environment means we are the new master of
 * an upgrade and take the listening sockets and shm named there. Returns the process exit status:
 * 0, or 1 when startup failed (the error was printed to stderr and logged). */
int master_run(const char *file, bool daemon, char **argv);

/* -s WORD: send the matching signal (reload HUP, reopen USR1, quit QUIT,
 * stop TERM, upgrade USR2) to the master named by FILE's pid_file. Returns
 * the exit status: 0, 1 after a message on stderr, 2 for an unknown WORD. */
int master_signal(const char *file, const char *word);

/* spawn_reap found a child that is no worker: the new master of a binary
 * upgrade. Logs it and, when the new master died, takes back the pid file
 * (and the traffic, after WINCH). */
void master_child_exited(struct master *m, pid_t pid, int status);

/* Monotonic clock in milliseconds. */
int64_t master_now(void);

#endif
