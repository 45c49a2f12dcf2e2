/* procstat: /proc/PID/stat lines (command names with spaces and
 * parentheses, malformed lines) and the hung-or-starved judgement over
 * successive samples. */
#include "t/unit/tap.h"
#include "master/procstat.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A real line's shape: pid (comm) state ppid pgrp session tty_nr tpgid
 * flags minflt cminflt majflt cmajflt utime stime cutime cstime ... */
#define TAIL " 1 1234 1234 0 -1 4194624 1530 0 0 0 %s 0 0 20 0 1 0 4711 12345678 300\n"

static int parse(const char *line, long hz, struct procstat *st)
{
    memset(st, 0, sizeof *st);
    return procstat_parse(line, strlen(line), hz, st);
}

static void test_parse(void)
{
    struct procstat st;
    char line[512];

    snprintf(line, sizeof line, "1234 (portico) S" TAIL, "150 25");
    is_int(parse(line, 100, &st), 0, "a plain line parses");
    is_int(st.state, 'S', "state S");
    is_int(st.cpu_ms, 1750, "utime + stime: 175 ticks at 100 Hz = 1750 ms");

    is_int(parse(line, 250, &st), 0, "another tick rate");
    is_int(st.cpu_ms, 700, "175 ticks at 250 Hz = 700 ms");

    snprintf(line, sizeof line, "1234 (a b) c)) R" TAIL, "7 3");
    is_int(parse(line, 100, &st), 0, "a command with spaces and parentheses parses");
    is_int(st.state, 'R', "read after the last ')': state R");
    is_int(st.cpu_ms, 100, "and the right CPU fields");

    snprintf(line, sizeof line, "99 (x) 1 2 3 (y) T" TAIL, "0 0");
    is_int(parse(line, 100, &st), 0, "fake fields inside the command name are skipped");
    is_int(st.state, 'T', "state T");

    snprintf(line, sizeof line, "99 ()) t" TAIL, "18446744073709551 1");
    is_int(parse(line, 100, &st), 0, "a command that is a lone ')', huge tick counts");
    is_int(st.state, 't', "state t");
    is_int(st.cpu_ms, 184467440737095510 + 10, "no overflow converting ticks to ms");

    /* Not NUL-terminated: only LEN bytes are read. */
    snprintf(line, sizeof line, "5 (w) D" TAIL, "1 2");
    size_t n = strlen(line);
    line[n - 1] = 'X'; /* the byte after the newline-less end */
    memset(&st, 0, sizeof st);
    is_int(procstat_parse(line, n - 1, 100, &st), 0, "LEN bytes of an unterminated buffer");
    is_int(st.state, 'D', "state D");

    const char *bad[] = {
        "",
        "1234",
        "1234 (portico",
        "1234 portico) S 1 2",
        "1234 (portico)",
        "1234 (portico) ",
        "1234 (portico) S",
        "1234 (portico) S 1 1234 1234 0 -1 4194624 1530 0 0 0 150",
        "1234 (portico) S 1 1234 1234 0 -1 4194624 1530 0 0 0 150 x5",
        "1234 (portico) S 1 1234 1234 0 -1 4194624 1530 0 0 0 -150 25 0",
        "1234 (portico) S 1 1234 1234 0 -1 4194624 1530 0 0 0 150 25x 0",
        "1234 (portico) S 1 1234 1234 0 -1 4194624 1530 0 0 0 99999999999999999999 25",
        "1234 (portico)  S 1 1234 1234 0 -1 4194624 1530 0 0 0 150 25",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        is_int(parse(bad[i], 100, &st), -1, "malformed line %zu is refused: \"%s\"", i, bad[i]);
    snprintf(line, sizeof line, "1234 (portico) S" TAIL, "150 25");
    is_int(parse(line, 0, &st), -1, "a tick rate of 0 is refused");
    is_int(procstat_parse(NULL, 0, 100, &st), -1, "no buffer");
}

static void test_read(void)
{
    struct procstat st;
    is_int(procstat_read(getpid(), &st), 0, "our own /proc/self/stat");
    is_int(st.state, 'R', "we are running");

    pid_t pid = fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    kill(pid, SIGSTOP);
    int status;
    waitpid(pid, &status, WUNTRACED);
    is_int(procstat_read(pid, &st), 0, "a stopped child");
    is_int(st.state, 'T', "is in state T");
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    is_int(procstat_read(pid, &st), -1, "a reaped child: no /proc entry");
}

static void test_judge(void)
{
    struct procstat_watch w = {0};
    int64_t wait = -1, cpu = -1, wall = -1;
    struct procstat st = {.state = 'S', .cpu_ms = 1000};

    is_int(procstat_judge(&w, NULL, 10000, &wait, &cpu, &wall), PROCSTAT_HUNG, "unreadable: hung");
    is_int(procstat_judge(&w, &st, 10000, &wait, &cpu, &wall), PROCSTAT_HUNG, "sleeping: hung");
    st.state = 'D';
    is_int(procstat_judge(&w, &st, 10000, &wait, &cpu, &wall), PROCSTAT_HUNG, "in D: hung");
    st.state = 'Z';
    is_int(procstat_judge(&w, &st, 10000, &wait, &cpu, &wall), PROCSTAT_HUNG, "zombie: hung");
    st.state = 'T';
    is_int(procstat_judge(&w, &st, 10000, &wait, &cpu, &wall), PROCSTAT_STOPPED, "T: stopped");
    st.state = 't';
    is_int(procstat_judge(&w, &st, 10000, &wait, &cpu, &wall), PROCSTAT_STOPPED, "t: stopped");
    is_int(w.at, 0, "none of these took a sample");

    /* Runnable: the first reading is a sample, the verdict comes later. */
    st.state = 'R';
    is_int(procstat_judge(&w, &st, 10000, &wait, &cpu, &wall), PROCSTAT_WAIT,
           "runnable, first reading: wait");
    is_int(wait, PROCSTAT_SAMPLE_MS, "for a full window");
    is_int(w.at, 10000, "sample taken now");
    st.cpu_ms = 1100;
    is_int(procstat_judge(&w, &st, 10200, &wait, &cpu, &wall), PROCSTAT_WAIT,
           "200 ms later (the master woke for another reason): still waiting");
    is_int(wait, PROCSTAT_SAMPLE_MS - 200, "for the rest of the window");
    is_int(w.at, 10000, "the sample is kept");

    st.cpu_ms = 1010;
    w = (struct procstat_watch){.at = 10000, .cpu_ms = 1000};
    is_int(procstat_judge(&w, &st, 10600, &wait, &cpu, &wall), PROCSTAT_STARVED,
           "10 ms of CPU in 600 ms: starved");
    is_int(cpu, 10, "cpu used");
    is_int(wall, 600, "over the window");
    is_int(wait, PROCSTAT_SAMPLE_MS, "judged again after a window");
    is_int(w.at, 10600, "a new window starts");
    is_int(w.cpu_ms, 1010, "from the CPU time now");

    st.cpu_ms = 1010 + 249;
    is_int(procstat_judge(&w, &st, 11100, &wait, &cpu, &wall), PROCSTAT_STARVED,
           "249 ms of CPU in 500 ms: still starved");
    st.cpu_ms += 250;
    is_int(procstat_judge(&w, &st, 11600, &wait, &cpu, &wall), PROCSTAT_BUSY,
           "250 ms of CPU in 500 ms: busy (half of the wall time)");
    is_int(cpu, 250, "cpu used");
    is_int(wall, 500, "over the window");

    w = (struct procstat_watch){.at = 10000, .cpu_ms = 1000};
    st.cpu_ms = 1000 + 990;
    is_int(procstat_judge(&w, &st, 11000, &wait, &cpu, &wall), PROCSTAT_BUSY,
           "spinning: 990 ms of CPU in 1000 ms is busy");

    /* A sample that cannot be compared (CPU time went back: another
     * process under a reused pid) starts over. */
    w = (struct procstat_watch){.at = 10000, .cpu_ms = 5000};
    st.cpu_ms = 100;
    is_int(procstat_judge(&w, &st, 11000, &wait, &cpu, &wall), PROCSTAT_WAIT,
           "CPU time went back: a new sample");
    is_int(w.cpu_ms, 100, "taken from now");
}

int main(void)
{
    test_parse();
    test_read();
    test_judge();
    return tap_done();
}
