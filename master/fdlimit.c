/* RLIMIT_NOFILE from the configuration: see fdlimit.h for why. */
#include "master/fdlimit.h"

#include "common/config.h"
#include "common/log.h"
#include "master/listen.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

uint64_t fdlimit_need(const struct config *cfg)
{
    uint64_t need = 2 * (uint64_t)cfg->max_connections;
    for (unsigned i = 0; i < cfg->nupstreams; i++)
        need += (uint64_t)cfg->upstreams[i].keepalive * cfg->upstreams[i].nservers;
    uint64_t listens = listen_count(cfg);
    need += cfg->reuseport ? listens * (cfg->workers ? cfg->workers : 1) : listens;
    return need + FDLIMIT_MARGIN;
}

uint64_t fdlimit_soft(uint64_t need, uint64_t soft, uint64_t hard)
{
    uint64_t want = need < hard ? need : hard;
    return want > soft ? want : soft;
}

/* rlim_t is unsigned and RLIM_INFINITY its largest value, so plain
 * comparisons treat "unlimited" as above any need. */
static unsigned long long ull(rlim_t v)
{
    return (unsigned long long)v;
}

void fdlimit_apply(const struct config *cfg)
{
    uint64_t need = fdlimit_need(cfg);
    struct rlimit cur;
    if (getrlimit(RLIMIT_NOFILE, &cur) < 0) {
        log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return;
    }
    if (cur.rlim_cur >= need) return;

    /* Root may raise the hard limit too, unless a container took away
     * CAP_SYS_RESOURCE or the need is above fs.nr_open. */
    if (cur.rlim_max < need && geteuid() == 0) {
        struct rlimit want = {.rlim_cur = (rlim_t)need, .rlim_max = (rlim_t)need};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
            log_info("file descriptor limit raised from %llu to %llu (hard limit from %llu)",
                     ull(cur.rlim_cur), ull(want.rlim_cur), ull(cur.rlim_max));
            return;
        }
        log_debug("cannot raise the hard file descriptor limit to %llu: %s",
                  (unsigned long long)need, strerror(errno));
    }

    rlim_t soft = (rlim_t)fdlimit_soft(need, cur.rlim_cur, cur.rlim_max);
    if (soft > cur.rlim_cur) {
        struct rlimit want = {.rlim_cur = soft, .rlim_max = cur.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
            log_info("file descriptor limit raised from %llu to %llu", ull(cur.rlim_cur),
                     ull(soft));
        } else {
            log_warn("cannot raise the file descriptor limit from %llu to %llu: %s",
                     ull(cur.rlim_cur), ull(soft), strerror(errno));
            soft = cur.rlim_cur;
        }
    }
    if (soft < need)
        log_warn("max_connections %u needs about %llu file descriptors per worker, but the "
                 "%s limit (RLIMIT_NOFILE) is %llu: raise it (ulimit -Hn, systemd "
                 "LimitNOFILE=) or lower max_connections",
                 cfg->max_connections, (unsigned long long)need,
                 cur.rlim_max < need ? "hard" : "soft",
                 ull(cur.rlim_max < need ? cur.rlim_max : soft));
}
