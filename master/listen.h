/* Listening sockets, owned by the master. Sockets are keyed by their address
 * text ("127.0.0.1:80", "[::]:443") so that a reload can keep every socket
 * whose address both generations use: worker slot i of the new generation
 * then accepts from the same kernel queue as slot i of the old one. */
#ifndef PORTICO_LISTEN_H
#define PORTICO_LISTEN_H

#include <stdbool.h>
#include <sys/socket.h>

struct config;
struct worker_listen;

struct listen_sock {
    char key[80]; /* normalized "ADDR:PORT" */
    struct sockaddr_storage ss;
    socklen_t len;
    bool reuseport; /* true: fds[i] belongs to slot i; false: fds[0] shared */
    bool used;      /* referenced by the config of the last listen_open */
    int *fds;       /* malloc'd; nfds entries, all valid */
    unsigned nfds;
    unsigned want;     /* sockets the last config needs; more stay for old workers */
    char listener[64]; /* name of the listener that opened it, for errors */
};

struct listen_set {
    struct listen_sock *socks; /* malloc'd */
    unsigned n;
};

/* Make sure every address of CFG has its sockets: one per worker slot
 * (cfg->reuseport) or one shared. Existing sockets with the same key are
 * kept and get the new backlog; missing ones are created, bound and put in
 * listen state. Returns 0, or -1 with a message in ERR such as "listen
 * 127.0.0.1:80 (listener public): Address already in use"; sockets created
 * by the failed call are closed, older ones are untouched. */
int listen_open(struct listen_set *ls, const struct config *cfg, char *err, size_t errlen);

/* Number of struct worker_listen entries a slot of CFG needs. */
unsigned listen_count(const struct config *cfg);

/* Fill OUT (listen_count(cfg) entries) with slot SLOT's socket for every
 * listen address of CFG, in listener then address order. The fds stay owned
 * by LS. Returns the number filled, or -1 when an address has no socket. */
int listen_for_slot(const struct listen_set *ls, const struct config *cfg, unsigned slot,
                    struct worker_listen *out);

/* In a forked worker: close every socket of LS except the KEEP ones. */
void listen_close_except(struct listen_set *ls, const struct worker_listen *keep, unsigned nkeep);

/* Once the older worker generations were told to drain (they close their
 * copies at once and accept nothing more): close the sockets that the config
 * of the last listen_open did not mention, and the slots beyond its worker
 * count. Closing them then, rather than when those workers exit, lets the
 * kernel migrate their queues to the siblings (tcp_migrate_req) at once
 * instead of letting connections wait in a queue nobody accepts from.
 * listen_close_all closes everything. */
void listen_close_unused(struct listen_set *ls);
void listen_close_all(struct listen_set *ls);

/* Binary upgrade, old master: write "KEY=FD,FD;KEY=FD" for every socket into
 * BUF. Returns 0, or -1 when CAP is too small. */
int listen_inherit_string(const struct listen_set *ls, char *buf, size_t cap);
/* In the forked child, just before exec: let every socket survive exec. */
void listen_keep_on_exec(const struct listen_set *ls);
/* Binary upgrade, new master: take inherited FD as the next socket of KEY
 * after checking that it is a listening stream socket bound to KEY. Returns
 * 0, or -1 with a message in ERR; the fd stays the caller's then. */
int listen_adopt(struct listen_set *ls, const char *key, int fd, char *err, size_t errlen);

/* Ask the kernel to migrate queued connections of a closed reuseport socket
 * to its siblings (net.ipv4.tcp_migrate_req=1). Failure is only logged at
 * debug: it is a safety net, not a requirement. */
void listen_enable_migration(void);

#endif
