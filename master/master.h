/* The master process: every piece of its state lives in struct master, so
 * that reload and binary upgrade can see and replace all of it in one place.
 * master.c runs the control loop and shutdowns; spawn.c forks, reaps and
 * respawns workers; listen.c owns the listening sockets. */
#ifndef PORTICO_MASTER_H
#define PORTICO_MASTER_H

#include "common/shm.h"
#include "master/listen.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct config;

/* One forked worker. Entries are removed when the process is reaped. */
struct worker_proc {
    pid_t pid;
    unsigned slot;
    unsigned generation; /* workers of one config share a generation */
    int channel;         /* master's socketpair end; -1 after EOF */
    int64_t started;     /* monotonic ms */
    bool ready;          /* sent WORKER_MSG_READY */
    bool draining;       /* told to QUIT (reload, graceful stop) */
    bool warned_slow;    /* "not ready yet" already logged */
};

/* Respawn bookkeeping per slot, so a crash loop backs off instead of
 * burning a CPU on fork. */
struct slot_state {
    unsigned quick_deaths; /* consecutive deaths within SPAWN_QUICK_MS of start */
    bool pending;          /* a worker for this slot is to be forked */
    int64_t respawn_at;    /* monotonic ms, when pending */
};

enum master_state {
    MASTER_RUNNING,
    MASTER_QUITTING, /* graceful: workers drain, bounded by shutdown_timeout */
    MASTER_STOPPING, /* fast: workers got SIGTERM, SIGKILL after a second */
};

struct master {
    const char *conf_file;
    struct config *cfg;  /* in force; the current generation runs it */
    unsigned generation; /* of the workers running cfg */
    struct listen_set listens;
    struct shm shm;
    bool shm_ok;

    int sigfd, epfd;
    sigset_t old_mask; /* restored in forked workers */

    struct worker_proc *procs; /* malloc'd, nprocs used of cap */
    unsigned nprocs, cap;
    struct slot_state slots[SHM_MAX_SLOTS];

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
 * DAEMON, run until told to exit. Returns the process exit status: 0, or 1
 * when startup failed (the error was printed to stderr and logged). */
int master_run(const char *file, bool daemon);

/* -s WORD: send the matching signal (reload HUP, reopen USR1, quit QUIT,
 * stop TERM, upgrade USR2) to the master named by FILE's pid_file. Returns
 * the exit status: 0, 1 after a message on stderr, 2 for an unknown WORD. */
int master_signal(const char *file, const char *word);

/* Monotonic clock in milliseconds. */
int64_t master_now(void);

#endif
