/* Route matching. Linear over the routes: configurations have tens of
 * routes, and a scan of short strings costs less than a lookup structure's
 * cache misses at that size. */
#include "worker/route.h"

#include <string.h>
#include <strings.h>

#include "common/config.h"

bool route_prefix_match(const char *prefix, size_t plen, const char *path, size_t len)
{
    if (len < plen || memcmp(prefix, path, plen) != 0) return false;
    if (plen == 0 || prefix[plen - 1] == '/' || len == plen) return true;
    return path[plen] == '/';
}

/* 0: no match; otherwise a score where longer prefixes and exact paths win. */
static size_t path_score(const struct conf_route *r, const char *path, size_t len)
{
    if (r->path_exact)
        return (len == r->path_len && memcmp(r->path, path, len) == 0) ? (size_t)1 << 30 : 0;
    return route_prefix_match(r->path, r->path_len, path, len) ? r->path_len + 1 : 0;
}

/* Host class of R for HOST: 3 exact, 2 suffix (with its length), 1 any, 0 none. */
static int host_class(const struct conf_route *r, const char *host, size_t hlen, size_t *suffix)
{
    if (!r->nhosts) return 1;
    int best = 0;
    for (unsigned i = 0; i < r->nhosts; i++) {
        const char *h = r->hosts[i];
        size_t n = strlen(h);
        if (h[0] == '*' && h[1] == '.') {
            size_t sl = n - 1; /* ".example.com" */
            if (hlen > sl && strncasecmp(host + hlen - sl, h + 1, sl) == 0 && best < 3) {
                if (best < 2 || sl > *suffix) *suffix = sl;
                best = 2;
            }
        } else if (n == hlen && strncasecmp(h, host, n) == 0) {
            best = 3;
        }
    }
    return best;
}

const struct conf_route *route_match(const struct config *cfg, unsigned listener_index,
                                     const char *host, size_t host_len, const char *path,
                                     size_t path_len)
{
    const struct conf_route *best = NULL;
    int best_class = 0;
    size_t best_suffix = 0, best_score = 0;
    uint64_t bit = (uint64_t)1 << listener_index;

    for (unsigned i = 0; i < cfg->nroutes; i++) {
        const struct conf_route *r = &cfg->routes[i];
        if (!(r->listener_mask & bit)) continue;
        size_t suffix = 0;
        int cls = host_class(r, host, host_len, &suffix);
        if (!cls) continue;
        size_t score = path_score(r, path, path_len);
        if (!score) continue;
        bool better =
            cls > best_class || (cls == best_class && cls == 2 && suffix > best_suffix) ||
            (cls == best_class && (cls != 2 || suffix == best_suffix) && score > best_score);
        if (better) {
            best = r;
            best_class = cls;
            best_suffix = suffix;
            best_score = score;
        }
    }
    return best;
}

bool route_method_allowed(const struct conf_route *r, const char *method, size_t len)
{
    if (!r->nmethods) return true;
    for (unsigned i = 0; i < r->nmethods; i++)
        if (strlen(r->methods[i]) == len && memcmp(r->methods[i], method, len) == 0) return true;
    return false;
}
