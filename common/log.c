/* Error log and buffered access log. State is module-static on purpose: a
 * process has exactly one error log and one access log, and every module
 * logs, so threading a handle through every call would buy nothing. Each
 * error line is one write(2) to an O_APPEND fd, so lines from the master and
 * all workers interleave whole. The slot after the pid is "m" for the master. */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048      /* longer messages are cut, marked "..." */
#define ACCESS_BUF (64 * 1024) /* per process; BSS, untouched in the master */
#define LOG_PATH_MAX 4096

static const char *const level_names[] = {"debug", "info", "notice", "warn", "error"};

static struct {
    int fd; /* 2 until log_open; stays 2 for "stderr" */
    int level;
    int slot; /* -1 = master */
    char path[LOG_PATH_MAX];
} elog = {.fd = 2, .level = LL_INFO, .slot = -1};

static struct {
    int fd; /* -1 = off */
    int to_stdout;
    int failing; /* a write failed: report once, not per flush */
    size_t len;
    char path[LOG_PATH_MAX];
    char buf[ACCESS_BUF];
} alog = {.fd = -1};

int log_level_parse(const char *s)
{
    for (int i = LL_DEBUG; i <= LL_ERROR; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    return -1;
}

const char *log_level_str(int level)
{
    if (level < LL_DEBUG || level > LL_ERROR) return "?";
    return level_names[level];
}

static int open_append(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
}

/* Open PATH and put it in place of *FD. dup2 swaps atomically, so a line
 * written concurrently never sees a closed descriptor. */
static int swap_in(int *fd, const char *path)
{
    int nfd = open_append(path);
    if (nfd < 0) return -1;
    if (*fd < 0 || *fd <= 2) {
        *fd = nfd;
        return 0;
    }
    if (dup3(nfd, *fd, O_CLOEXEC) < 0) {
        int e = errno;
        close(nfd);
        errno = e;
        return -1;
    }
    close(nfd);
    return 0;
}

int log_open(const char *path, int level)
{
    if (level >= LL_DEBUG && level <= LL_ERROR) elog.level = level;
    if (!path || strcmp(path, "stderr") == 0) {
        if (elog.fd > 2) close(elog.fd);
        elog.fd = 2;
        elog.path[0] = '\0';
        return 0;
    }
    if (strlen(path) >= sizeof elog.path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (swap_in(&elog.fd, path) < 0) return -1;
    snprintf(elog.path, sizeof elog.path, "%s", path);
    return 0;
}

int log_reopen(void)
{
    if (elog.path[0] == '\0') return 0;
    if (swap_in(&elog.fd, elog.path) < 0) {
        int e = errno;
        log_error("cannot reopen error log %s: %s", elog.path, strerror(e));
        errno = e;
        return -1;
    }
    return 0;
}

void log_set_slot(int slot)
{
    elog.slot = slot;
}

int log_enabled(int level)
{
    return level >= elog.level;
}

/* "2026-12-03T15:04:05.123Z"; returns the length written. */
static size_t format_time(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    return n > 0 ? (size_t)n : 0;
}

/* The error log must never stop the process: a failed or short write is
 * dropped, since there is nowhere left to report it. */
static void write_line(int fd, const char *p, size_t n)
{
    ssize_t w;
    do
        w = write(fd, p, n);
    while (w < 0 && errno == EINTR);
}

void log_msg(int level, const char *fmt, ...)
{
    if (level < elog.level) return;
    int saved = errno; /* callers often log then inspect errno */
    char line[LOG_LINE_MAX];
    size_t n = format_time(line, sizeof line);
    char slot[16] = "m";
    if (elog.slot >= 0) snprintf(slot, sizeof slot, "%d", elog.slot);
    /* getpid per line, not cached: forks and -d would leave a stale value. */
    n += (size_t)snprintf(line + n, sizeof line - n, " [%s] %ld#%s ", log_level_str(level),
                          (long)getpid(), slot);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    if ((size_t)m >= sizeof line - n - 1) {
        n = sizeof line - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    } else {
        n += (size_t)m;
    }
    line[n++] = '\n';
    write_line(elog.fd, line, n);
    errno = saved;
}

int log_access_open(const char *path)
{
    if (!path) return 0;
    if (strcmp(path, "stdout") == 0) {
        if (alog.fd > 2) close(alog.fd);
        alog.fd = 1;
        alog.to_stdout = 1;
        alog.path[0] = '\0';
        return 0;
    }
    if (strlen(path) >= sizeof alog.path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    alog.to_stdout = 0;
    if (swap_in(&alog.fd, path) < 0) return -1;
    snprintf(alog.path, sizeof alog.path, "%s", path);
    return 0;
}

int log_access_reopen(void)
{
    if (alog.fd < 0 || alog.to_stdout) return 0;
    log_access_flush(); /* the buffered lines belong to the old file */
    if (swap_in(&alog.fd, alog.path) < 0) {
        int e = errno;
        log_error("cannot reopen access log %s: %s", alog.path, strerror(e));
        errno = e;
        return -1;
    }
    return 0;
}

/* Write P fully; a regular file never blocks for long. On error the rest is
 * dropped and reported once until a write succeeds again. */
static void access_write(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(alog.fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (!alog.failing) log_error("access log write failed: %s", strerror(errno));
            alog.failing = 1;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
    alog.failing = 0;
}

void log_access_flush(void)
{
    if (alog.fd < 0 || alog.len == 0) return;
    access_write(alog.buf, alog.len);
    alog.len = 0;
}

void log_access_append(const char *line, size_t len)
{
    if (alog.fd < 0) return;
    if (len > sizeof alog.buf - alog.len) log_access_flush();
    if (len > sizeof alog.buf) {
        access_write(line, len); /* a huge line goes out on its own */
        return;
    }
    memcpy(alog.buf + alog.len, line, len);
    alog.len += len;
}
