/* Worker processes: fork a generation, talk over the channels, reap, and
 * respawn dead workers at once (backing off only on crash loops). */
#ifndef PORTICO_SPAWN_H
#define PORTICO_SPAWN_H

#include <stdbool.h>
#include <stdint.h>

struct master;
struct worker_proc;

#define SPAWN_QUICK_MS 1000             /* a death this soon after start counts as "quick" */
#define SPAWN_BACKOFF_MAX_MS 5000       /* longest pause between two quick respawns */
#define SPAWN_READY_WARN_MS 5000        /* a worker not READY by then is reported once */
#define SPAWN_HEARTBEAT_TIMEOUT_MS 2000 /* a worker silent this long is killed... */
#define SPAWN_STARVED_MAX_MS 30000      /* ...unless waiting for a CPU, up to this long */
#define SPAWN_STALL_MS 1000             /* the master this late was paused: so were the workers */
#define SPAWN_ALL_GENERATIONS (~0u)

/* Fork one worker for SLOT of generation GEN running m->cfg, and register
 * its channel with m->epfd. Returns 0, or -1 when fork or socketpair failed
 * (logged; the caller schedules a retry). Never returns in the child. */
int spawn_worker(struct master *m, unsigned slot, unsigned gen);

/* Fork all m->cfg->workers slots as generation GEN. Slots whose fork failed
 * are scheduled for a retry. Returns the number forked. */
unsigned spawn_generation(struct master *m, unsigned gen);

/* Tell every worker of GEN (or SPAWN_ALL_GENERATIONS) to drain: finish in-
 * flight work and exit. A worker whose channel is gone gets SIGTERM. */
void spawn_drain(struct master *m, unsigned gen);

/* Abort generation GEN (a reload dropped before every new worker was
 * ready): its workers drain like an old generation; with HUNG (the ready
 * deadline passed), those still not ready get SIGKILL. None is replaced. */
void spawn_abort_generation(struct master *m, unsigned gen, bool hung);

/* True when every slot of m->cfg has a ready, live worker of m->generation. */
bool spawn_generation_ready(const struct master *m);

/* True while a worker of another generation than m->generation lives. */
bool spawn_others_alive(const struct master *m);

/* Schedule a worker at once for each slot of m->cfg that has no live,
 * non-draining worker of m->generation (after an aborted reload). */
void spawn_fill_missing(struct master *m);

/* Send SIG to every live worker. */
void spawn_kill_all(struct master *m, int sig);

/* Reap every exited worker: log how it died, release its slot's shared
 * state, schedule its replacement when the master is running. */
void spawn_reap(struct master *m);

/* Read what a worker sent on channel FD (READY, heartbeat; EOF). */
void spawn_channel_event(struct master *m, int fd);

/* Fork the replacements whose time has come, report workers slow to get
 * ready, SIGKILL those whose heartbeat stopped (stopped, blocked or
 * spinning: not those runnable but starved of CPU, nor any while the master
 * itself could not run). Returns the milliseconds until the next thing to
 * do, or -1. */
int spawn_tick(struct master *m, int64_t now);

#endif
