/* Command line: parse options, then check the configuration (-t, -T), print
 * versions (-V), signal a running master (-s), or run as the master. Usage
 * errors exit 2, configuration and startup errors exit 1. */
#include "common/config.h"
#include "master/master.h"
#include "worker/http1.h"
#include "worker/tls.h"

#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#define DEFAULT_CONF "/etc/portico/portico.ini"

static const char usage_text[] =
    "usage: portico [-c FILE] [-t | -T] [-s SIGNAL] [-d] [-V] [-h]\n"
    "  -c FILE    configuration file (default: " DEFAULT_CONF ")\n"
    "  -t         check the configuration and exit\n"
    "  -T         as -t, then print the effective configuration\n"
    "  -s SIGNAL  signal the running master named by pid_file and exit:\n"
    "             reload | reopen | quit | stop | upgrade\n"
    "  -d         detach (daemonize); the default is to run in the foreground\n"
    "  -V         print the version and the libraries built in\n"
    "  -h         print this help\n";

struct options {
    const char *file;
    const char *signal;
    bool test, dump, daemon, version, help;
};

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

/* Returns 0, or -1 for bad usage. */
static int parse(int argc, char **argv, struct options *o)
{
    int c;
    opterr = 0; /* one usage message, ours */
    while ((c = getopt(argc, argv, "c:tTs:dVh")) != -1) {
        switch (c) {
        case 'c':
            o->file = optarg;
            break;
        case 't':
            o->test = true;
            break;
        case 'T':
            o->test = o->dump = true;
            break;
        case 's':
            o->signal = optarg;
            break;
        case 'd':
            o->daemon = true;
            break;
        case 'V':
            o->version = true;
            break;
        case 'h':
            o->help = true;
            break;
        default:
            if (optopt == 'c' || optopt == 's')
                fprintf(stderr, "portico: option -%c needs a value\n", optopt);
            else
                fprintf(stderr, "portico: unknown option -%c\n", optopt);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "portico: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    if (o->signal && o->test) {
        fprintf(stderr, "portico: -s cannot be combined with -t or -T\n");
        return -1;
    }
    return 0;
}

static int version(void)
{
    printf("portico %s\n", PORTICO_VERSION);
    printf("llhttp %s\n", http1_library_version());
    printf("mbedTLS %s\n", tls_library_version());
    printf("inih %s\n", config_library_version());
    return 0;
}

/* With -T, stdout carries only the effective configuration (valid INI that
 * can be saved as is), so the verdict goes to stderr; with -t, to stdout. */
static int test(const struct options *o)
{
    struct config *cfg = config_load(o->file, stderr);
    if (!cfg) return 1;
    fputs("configuration ok\n", o->dump ? stderr : stdout);
    if (o->dump) config_dump(cfg, stdout);
    config_free(cfg);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* A log or socket opened while fd 0-2 is closed would take that number and
 * later be clobbered by a redirect of stdio; give them /dev/null first. */
static void fill_stdio(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) continue;
        int n = open("/dev/null", O_RDWR);
        if (n >= 0 && n != fd) close(n);
    }
}

int main(int argc, char **argv)
{
    struct options o = {.file = DEFAULT_CONF};
    fill_stdio();
    if (parse(argc, argv, &o) < 0) return usage();
    if (o.help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (o.version) return version();
    if (o.test) return test(&o);
    if (o.signal) return master_signal(o.file, o.signal);
    return master_run(o.file, o.daemon, argv);
}
