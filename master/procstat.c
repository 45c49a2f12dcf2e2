/* /proc/PID/stat reading and the hung-or-starved judgement: see procstat.h.
 * A throttled or starved task stays runnable ('R') while its CPU time
 * barely moves; a livelocked one is runnable and burns CPU; a stopped,
 * blocked or sleeping one that sends no heartbeat is stuck. */
#include "master/procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The fields after the state: ppid pgrp session tty_nr tpgid flags minflt
 * cminflt majflt cmajflt utime stime (proc(5), fields 4 to 15). */
#define FIELDS_TO_UTIME 10

/* Reads one unsigned decimal field at *P (below END), skipping the blank
 * before it. Returns 0 and advances *P, or -1. */
static int field_u64(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    if (s >= end || *s != ' ') return -1;
    s++;
    if (s >= end || *s < '0' || *s > '9') return -1;
    uint64_t v = 0;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *p = s;
    *out = v;
    return 0;
}

/* Skips one field of any form (signed numbers such as tty_nr, tpgid). */
static int field_skip(const char **p, const char *end)
{
    const char *s = *p;
    if (s >= end || *s != ' ') return -1;
    s++;
    const char *start = s;
    while (s < end && *s != ' ' && *s != '\n')
        s++;
    if (s == start) return -1;
    *p = s;
    return 0;
}

static uint64_t ticks_to_ms(uint64_t ticks, long hz)
{
    uint64_t h = (uint64_t)hz;
    return ticks / h * 1000 + ticks % h * 1000 / h;
}

int procstat_parse(const char *buf, size_t len, long hz, struct procstat *out)
{
    if (!buf || hz <= 0) return -1;
    const char *end = buf + len;
    const char *close = NULL;
    for (const char *s = buf; s < end; s++)
        if (*s == ')') close = s;
    if (!close || !memchr(buf, '(', (size_t)(close - buf))) return -1;
    const char *p = close + 1;
    if (end - p < 2 || p[0] != ' ' || p[1] == ' ' || p[1] == '\n') return -1;
    char state = p[1];
    p += 2;
    for (int i = 0; i < FIELDS_TO_UTIME; i++)
        if (field_skip(&p, end) < 0) return -1;
    uint64_t utime, stime;
    if (field_u64(&p, end, &utime) < 0 || field_u64(&p, end, &stime) < 0) return -1;
    if (p < end && *p != ' ' && *p != '\n') return -1;
    out->state = state;
    out->cpu_ms = ticks_to_ms(utime, hz) + ticks_to_ms(stime, hz);
    return 0;
}

int procstat_read(pid_t pid, struct procstat *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) return -1;
    return procstat_parse(buf, (size_t)n, sysconf(_SC_CLK_TCK), out);
}

enum procstat_verdict procstat_judge(struct procstat_watch *w, const struct procstat *st,
                                     int64_t now, int64_t *wait, int64_t *cpu_ms, int64_t *wall_ms)
{
    if (!st) return PROCSTAT_HUNG;
    if (st->state == 'T' || st->state == 't') return PROCSTAT_STOPPED;
    if (st->state != 'R') return PROCSTAT_HUNG;
    if (!w->at || st->cpu_ms < w->cpu_ms || now < w->at) {
        w->at = now;
        w->cpu_ms = st->cpu_ms;
        *wait = PROCSTAT_SAMPLE_MS;
        return PROCSTAT_WAIT;
    }
    int64_t wall = now - w->at;
    if (wall < PROCSTAT_SAMPLE_MS) {
        *wait = PROCSTAT_SAMPLE_MS - wall;
        return PROCSTAT_WAIT;
    }
    int64_t cpu = (int64_t)(st->cpu_ms - w->cpu_ms);
    *cpu_ms = cpu;
    *wall_ms = wall;
    w->at = now;
    w->cpu_ms = st->cpu_ms;
    if (2 * cpu >= wall) return PROCSTAT_BUSY;
    *wait = PROCSTAT_SAMPLE_MS;
    return PROCSTAT_STARVED;
}
