/* Socket address helpers: formatting, hashing, parsing "HOST:PORT", and the
 * options set on each new stream socket. IPv4-mapped IPv6 addresses hash like
 * the IPv4 address, so a client keeps its ip_hash server on a dual-stack
 * listener. */
#include "common/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Dotted quad without inet_ntop, whose sprintf cost more than a tenth of a
 * proxied request (X-Forwarded-For is written per request). */
static size_t ipv4_str(const unsigned char *q, char *buf, size_t cap)
{
    char t[16];
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        unsigned v = q[i];
        if (v >= 100) t[n++] = (char)('0' + v / 100);
        if (v >= 10) t[n++] = (char)('0' + v / 10 % 10);
        t[n++] = (char)('0' + v % 10);
        t[n++] = i < 3 ? '.' : 0;
    }
    if (n > cap) return 0;
    memcpy(buf, t, n);
    return n - 1;
}

size_t net_addr_ip(const struct sockaddr *sa, char *buf, size_t cap)
{
    if (sa->sa_family == AF_INET && cap) {
        size_t n =
            ipv4_str((const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr, buf, cap);
        if (n) return n;
    }
    const void *a = NULL;
    if (sa->sa_family == AF_INET) a = &((const struct sockaddr_in *)sa)->sin_addr;
    if (sa->sa_family == AF_INET6) a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!cap) return 0;
    if (!a || !inet_ntop(sa->sa_family, a, buf, (socklen_t)cap)) {
        snprintf(buf, cap, "-");
        return strlen(buf);
    }
    return strlen(buf);
}

size_t net_addr_str(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    net_addr_ip(sa, ip, sizeof(ip));
    int n;
    if (sa->sa_family == AF_INET)
        n = snprintf(buf, cap, "%s:%u", ip, ntohs(((const struct sockaddr_in *)sa)->sin_port));
    else if (sa->sa_family == AF_INET6)
        n = snprintf(buf, cap, "[%s]:%u", ip, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    else
        n = snprintf(buf, cap, "%s", ip);
    if (n < 0 || !cap) return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

uint32_t net_addr_hash(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return fnv1a((const unsigned char *)&in->sin_addr, 4);
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) return fnv1a(a->s6_addr + 12, 4);
        return fnv1a(a->s6_addr, 16);
    }
    return 0;
}

int net_tune_stream(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    /* accept4(SOCK_NONBLOCK) sockets already have it: save the syscall. */
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Port: decimal digits only, 1..65535. */
static int port_parse(const char *s, unsigned *port)
{
    unsigned v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (unsigned)(*s - '0');
        if (v > 65535) return -1;
    }
    if (v == 0) return -1;
    *port = v;
    return 0;
}

static void set_port(struct sockaddr_storage *ss, unsigned port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static int host_lookup(const char *host, int family, int numeric, struct sockaddr_storage *ss,
                       socklen_t *len, const char **err)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = numeric ? AI_NUMERICHOST : 0;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        if (numeric) {
            *err = family == AF_INET6 ? "bad IPv6 address" : "not an IP address";
            return -1;
        }
        *err = gai_strerror(rc ? rc : EAI_NONAME);
        return -2;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int net_addr_parse(const char *s, int resolve, struct sockaddr_storage *ss, socklen_t *len,
                   const char **err)
{
    char host[256];
    const char *colon, *hs = s;
    size_t hn;
    int family = AF_UNSPEC;
    memset(ss, 0, sizeof(*ss));
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') {
            *err = close ? "missing :PORT after ']'" : "missing ']'";
            return -1;
        }
        hs = s + 1;
        hn = (size_t)(close - hs);
        colon = close + 1;
        family = AF_INET6;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            *err = "missing :PORT";
            return -1;
        }
        hn = (size_t)(colon - s);
        if (memchr(s, ':', hn)) {
            *err = "IPv6 addresses need brackets, e.g. [::1]:80";
            return -1;
        }
    }
    unsigned port;
    if (port_parse(colon + 1, &port) < 0) {
        *err = "port must be a number from 1 to 65535";
        return -1;
    }
    if (hn == 0 || hn >= sizeof(host)) {
        *err = hn ? "host name too long" : "missing address";
        return -1;
    }
    memcpy(host, hs, hn);
    host[hn] = '\0';
    if (family == AF_UNSPEC && strcmp(host, "*") == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        *len = sizeof(*in);
    } else {
        int numeric = !resolve || family == AF_INET6;
        int rc = host_lookup(host, family, numeric, ss, len, err);
        if (rc < 0) return rc;
    }
    set_port(ss, port);
    return 0;
}
