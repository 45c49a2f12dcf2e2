/* Logging. The error log is line-buffered per call (errors are rare); the
 * access log is buffered per worker and flushed when full, once a second and
 * at exit, so a slow disk never blocks the event loop for long. */
#ifndef PORTICO_LOG_H
#define PORTICO_LOG_H

#include <stddef.h>

enum log_level { LL_DEBUG, LL_INFO, LL_NOTICE, LL_WARN, LL_ERROR };

/* Open PATH ("stderr" or a file, appended). Returns 0 or -1 with errno. */
int log_open(const char *path, int level);
/* Reopen the same path (USR1 / logrotate). */
int log_reopen(void);
/* Set the slot shown after the pid ("1234#0"); -1 for the master. */
void log_set_slot(int slot);
/* Parse "debug".."error"; returns the level or -1. */
int log_level_parse(const char *s);
const char *log_level_str(int level);

/* "2026-12-03T15:04:05.123Z [warn] 1234#0 message" */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LL_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LL_NOTICE, __VA_ARGS__)
#define log_warn(...) log_msg(LL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LL_ERROR, __VA_ARGS__)
int log_enabled(int level);

/* Access log: open PATH ("stdout" or file), append a line to the buffer,
 * flush. log_access_append copies LEN bytes; flushes itself when full. */
int log_access_open(const char *path);
int log_access_reopen(void);
void log_access_append(const char *line, size_t len);
void log_access_flush(void);

#endif
