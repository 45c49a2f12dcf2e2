/* Socket helpers: address formatting and the few socket options portico sets. */
#ifndef PORTICO_NET_H
#define PORTICO_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Write "1.2.3.4" or "::1" (no port) of SA into BUF. Returns the length. */
size_t net_addr_ip(const struct sockaddr *sa, char *buf, size_t cap);
/* Write "1.2.3.4:80" or "[::1]:80" of SA into BUF. Returns the length. */
size_t net_addr_str(const struct sockaddr *sa, char *buf, size_t cap);
/* Hash of the client address (ip_hash): IPv4 /24 style is not used; the
 * whole address counts. */
uint32_t net_addr_hash(const struct sockaddr *sa);
/* Set non-blocking and TCP_NODELAY on a fresh connected socket. Returns 0/-1. */
int net_tune_stream(int fd);

/* Parse "ADDR:PORT", "[IPV6]:PORT" or "*:PORT" (IPv4 any) into SS and LEN.
 * With RESOLVE a host name is looked up now (first address); without, ADDR
 * must be numeric. Returns 0; -1 when malformed, -2 when the name does not
 * resolve; *ERR then points to a static reason. */
int net_addr_parse(const char *s, int resolve, struct sockaddr_storage *ss, socklen_t *len,
                   const char **err);

#endif
