/* RLIMIT_NOFILE sized from the configuration, as HAProxy does from maxconn:
 * a shell usually starts portico with a soft limit of 1024, and a worker at
 * max_connections holds a client and an upstream socket per proxied request
 * plus its idle upstream pools, so without this a worker ran out of
 * descriptors (EMFILE, accept paused) at about 500 proxied clients. The
 * master sets the limit before forking; workers inherit it. */
#ifndef PORTICO_FDLIMIT_H
#define PORTICO_FDLIMIT_H

#include <stdint.h>

struct config;

/* Fixed part of the need: error and access logs, epoll, timerfd/signalfd,
 * the channel, shared memory, stdio, and some slack. */
#define FDLIMIT_MARGIN 64

/* Descriptors one worker of CFG may hold at once: 2 * max_connections (a
 * client and an upstream socket each) + keepalive * servers summed over the
 * upstreams (the idle pools) + listening sockets + FDLIMIT_MARGIN. The
 * listening sockets are counted as the master holds them (one per worker
 * slot with reuseport), which also covers the master's own needs. */
uint64_t fdlimit_need(const struct config *cfg);

/* The soft limit to set for NEED given the current SOFT and HARD limits:
 * raised to min(NEED, HARD), never lowered. Returns SOFT when there is
 * nothing to do. */
uint64_t fdlimit_soft(uint64_t need, uint64_t soft, uint64_t hard);

/* Raise RLIMIT_NOFILE for CFG (startup and every reload; never lowers it).
 * Running as root, a hard limit below the need is raised too when the
 * kernel allows it. A need that the hard limit cannot meet is one [warn]
 * naming the numbers and the fix; nothing here fails the startup. */
void fdlimit_apply(const struct config *cfg);

#endif
