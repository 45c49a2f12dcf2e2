/* Worker process entry: the master forks, then calls worker_main in the
 * child. The worker owns its epoll loop, its connections and its upstream
 * pools; it never parses files and only reads the inherited config. */
#ifndef PORTICO_WORKER_H
#define PORTICO_WORKER_H

struct config;
struct conf_listener;
struct shm;

struct worker_listen {
    int fd; /* listening socket of this slot, non-blocking */
    const struct conf_listener *listener;
};

struct worker_args {
    const struct config *cfg;
    struct shm *shm;
    unsigned slot; /* 0..workers-1: socket index of each listener, log id */
    unsigned row;  /* shm row this worker alone writes; claimed by the master */
    const struct worker_listen *listens;
    unsigned nlistens;
    int channel; /* socketpair end to the master; EOF = master gone */
};

/* Channel bytes. Worker -> master: READY once every listener is in epoll,
 * then BEAT every WORKER_BEAT_MS (a worker silent for 2 s is killed).
 * Master -> worker: QUIT drains gracefully, STOP exits at once. */
#define WORKER_MSG_READY 'R'
#define WORKER_MSG_BEAT 'B'
#define WORKER_BEAT_MS 500
#define WORKER_MSG_QUIT 'Q'
#define WORKER_MSG_STOP 'S'

/* Run the worker until it is told to stop or the master is gone. Returns the
 * process exit status. The caller has already closed other slots' sockets
 * and dropped privileges. */
int worker_main(const struct worker_args *a);

#endif
