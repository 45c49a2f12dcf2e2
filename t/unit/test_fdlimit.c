/* fdlimit: the descriptors a worker needs, and the soft limit chosen for it
 * (raised up to the hard limit, never lowered). Configs are built by hand. */
#include "t/unit/tap.h"
#include "common/config.h"
#include "master/fdlimit.h"

#include <stdint.h>

int main(void)
{
    struct conf_upstream ups[2] = {{.keepalive = 32, .nservers = 3},
                                   {.keepalive = 0, .nservers = 5}};
    struct conf_listener ls[2] = {{.naddrs = 1}, {.naddrs = 2}};
    struct config c = {.workers = 4, .max_connections = 16384};

    is_int(fdlimit_need(&c), 2 * 16384 + FDLIMIT_MARGIN, "max_connections alone: 2 each + margin");
    c.upstreams = ups;
    c.nupstreams = 2;
    is_int(fdlimit_need(&c), 2 * 16384 + 32 * 3 + FDLIMIT_MARGIN,
           "keepalive pools: keepalive x servers per upstream");
    c.listeners = ls;
    c.nlisteners = 2;
    is_int(fdlimit_need(&c), 2 * 16384 + 96 + 3 + FDLIMIT_MARGIN,
           "listening sockets without reuseport: one per address");
    c.reuseport = true;
    is_int(fdlimit_need(&c), 2 * 16384 + 96 + 3 * 4 + FDLIMIT_MARGIN,
           "with reuseport: one per address and worker slot (the master holds them all)");
    c.max_connections = 1u << 24;
    is_int(fdlimit_need(&c), 2 * (uint64_t)(1u << 24) + 96 + 12 + FDLIMIT_MARGIN,
           "the largest max_connections does not overflow");

    is_int(fdlimit_soft(32900, 1024, 524288), 32900, "soft below the need: raised to the need");
    is_int(fdlimit_soft(32900, 1024, 4096), 4096, "hard below the need: soft raised to the hard");
    is_int(fdlimit_soft(32900, 65536, 65536), 65536, "a higher soft limit is left alone");
    is_int(fdlimit_soft(32900, 32900, 65536), 32900, "exactly the need: unchanged");
    is_int(fdlimit_soft(2264, 512, 512), 512, "soft already at the hard limit: unchanged");
    is_int(fdlimit_soft(32900, 1024, UINT64_MAX), 32900, "unlimited hard limit");
    return tap_done();
}
