/* Route selection: host class (exact, then the longest *.suffix, then any),
 * then the longest matching path within it; an exact path (`= /x`) beats
 * any prefix; ties go to the route written first. */
#ifndef PORTICO_ROUTE_H
#define PORTICO_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct conf_route;

/* HOST is without port, any case; PATH is the target's path without query.
 * Returns the route, or NULL when none matches (404). */
const struct conf_route *route_match(const struct config *cfg, unsigned listener_index,
                                     const char *host, size_t host_len, const char *path,
                                     size_t path_len);

/* Does the route allow METHOD? (405 otherwise, with r->allow.) */
bool route_method_allowed(const struct conf_route *r, const char *method, size_t len);

/* Does PREFIX match PATH? A prefix ending in '/' matches any path starting
 * with it; otherwise the path must equal it or continue with '/'. */
bool route_prefix_match(const char *prefix, size_t plen, const char *path, size_t len);

#endif
