/* libFuzzer target: the input is a portico.ini. config_load must refuse it
 * with errors or load it; a loaded config is dumped, the dump must load
 * again and dump the same, and everything is freed (run with leak
 * detection). Host names resolve only when numeric, so no DNS is asked. */
#include <dlfcn.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/config.h"
#include "t/fuzz/harness.h"

/* Resolution of anything but a numeric address would ask a DNS server per
 * input: slow, and noise on the network. This definition takes precedence
 * over libc's (and ASan's interceptor, a weak alias); "localhost" stays
 * valid as configs commonly use it. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (!real)
        real = (int (*)(const char *, const char *, const struct addrinfo *,
                        struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
    struct addrinfo h = {0};
    if (hints) h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    if (node && strcmp(node, "localhost") == 0)
        node = h.ai_family == AF_INET6 ? "::1" : "127.0.0.1";
    return real(node, service, &h, res);
}

/* The config and its dump live in memory files, reached by path through
 * /proc, so that no run leaves files behind (libFuzzer exits with _exit). */
static int in_fd, dump_fd;
static char in_path[64], dump_path[64];
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    in_fd = memfd_create("portico-fuzz.ini", 0);
    dump_fd = memfd_create("portico-fuzz-dump.ini", 0);
    devnull = fopen("/dev/null", "w");
    if (in_fd < 0 || dump_fd < 0 || !devnull) {
        perror("fuzz_config: memfd_create");
        exit(1);
    }
    snprintf(in_path, sizeof(in_path), "/proc/self/fd/%d", in_fd);
    snprintf(dump_path, sizeof(dump_path), "/proc/self/fd/%d", dump_fd);
    return 0;
}

static bool write_file(int fd, const void *p, size_t n)
{
    return ftruncate(fd, 0) == 0 && pwrite(fd, p, n, 0) == (ssize_t)n;
}

/* The dump without its first line, which names the file. */
static char *dump_body(const struct config *c, size_t *len)
{
    char *s = NULL;
    FILE *f = open_memstream(&s, len);
    CHECK(f);
    config_dump(c, f);
    fclose(f);
    char *nl = memchr(s, '\n', *len);
    size_t skip = nl ? (size_t)(nl + 1 - s) : *len;
    memmove(s, s + skip, *len - skip);
    *len -= skip;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!write_file(in_fd, data, size)) return 0;
    struct config *c = config_load(in_path, devnull);
    if (!c) return 0;
    config_dump(c, devnull);

    /* -T prints valid INI: it loads again, to the same effective config. */
    size_t n1, n2;
    char *d1 = dump_body(c, &n1);
    config_free(c);
    CHECK(write_file(dump_fd, d1, n1));
    struct config *again = config_load(dump_path, stderr);
    if (!again) fprintf(stderr, "the dump of a valid config does not load:\n%.*s\n", (int)n1, d1);
    CHECK(again);
    char *d2 = dump_body(again, &n2);
    config_free(again);
    if (n1 != n2 || memcmp(d1, d2, n1) != 0)
        fprintf(stderr, "dump changed on reload:\n--- first\n%.*s\n--- second\n%.*s\n", (int)n1, d1,
                (int)n2, d2);
    CHECK(n1 == n2 && memcmp(d1, d2, n1) == 0);
    free(d1);
    free(d2);
    return 0;
}
