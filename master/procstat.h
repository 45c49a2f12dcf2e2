/* A worker's scheduling state and CPU time from /proc/PID/stat, so that the
 * master tells a hung worker (stopped, blocked, or spinning in a livelock)
 * from a healthy one that sends no heartbeat only because it gets no CPU
 * (cgroup throttling, a host paused or overloaded): killing the latter
 * would turn an overload into lost connections. */
#ifndef PORTICO_PROCSTAT_H
#define PORTICO_PROCSTAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROCSTAT_SAMPLE_MS 500 /* shortest window over which CPU use is judged */

/* One reading of /proc/PID/stat. */
struct procstat {
    char state;      /* 'R' runnable, 'S', 'D', 'T' stopped, 't' traced, 'Z', ... */
    uint64_t cpu_ms; /* utime + stime */
};

/* A silent worker's watch, kept by the master for each worker and reset
 * (zeroed) when a heartbeat comes. */
struct procstat_watch {
    int64_t at;      /* monotonic ms of the last CPU sample, 0 for none */
    uint64_t cpu_ms; /* its CPU time then */
    int64_t since;   /* last heartbeat before the episode that was logged, 0 when none was */
};

enum procstat_verdict {
    PROCSTAT_WAIT,    /* runnable: sample taken, judge again in *wait ms */
    PROCSTAT_STARVED, /* runnable, used less CPU than half the wall time: spare it */
    PROCSTAT_BUSY,    /* runnable and using the CPU (a livelock): kill */
    PROCSTAT_STOPPED, /* stopped or traced: kill */
    PROCSTAT_HUNG,    /* any other state, or unreadable: kill */
};

/* Parse LEN bytes of BUF, a /proc/PID/stat line (need not end in NUL), with
 * HZ clock ticks per second. The command name may hold spaces and
 * parentheses, so the fields are read after the last ')'. Returns 0 and
 * fills *OUT, or -1 when the line is malformed. */
int procstat_parse(const char *buf, size_t len, long hz, struct procstat *out);

/* Read /proc/PID/stat into *OUT. Returns 0, or -1 (gone, unreadable,
 * malformed). */
int procstat_read(pid_t pid, struct procstat *out);

/* Judge a silent worker at NOW from ST, its stat read now (NULL when it
 * could not be read), and W, the watch of this silence. A runnable worker
 * is sampled into W and judged PROCSTAT_SAMPLE_MS later on the CPU it used
 * meanwhile, *cpu_ms of *wall_ms (set for STARVED and BUSY); each judgement
 * starts a new window. *wait is set to the ms until the next judgement for
 * WAIT and STARVED. Pure: no I/O. */
enum procstat_verdict procstat_judge(struct procstat_watch *w, const struct procstat *st,
                                     int64_t now, int64_t *wait, int64_t *cpu_ms, int64_t *wall_ms);

#endif
