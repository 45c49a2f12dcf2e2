/* Configuration: the in-memory form of portico.ini. Built once by the master
 * (config_load), immutable afterwards, inherited by workers across fork.
 * Every string and array is owned by the config's arena; config_free()
 * releases all of it at once. Durations are milliseconds, sizes bytes. */
#ifndef PORTICO_CONFIG_H
#define PORTICO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

struct tls_server;
struct tls_client;

#define CONF_MAX_LISTENERS 64 /* routes refer to listeners by bit in a mask */

enum conf_balance { BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN, BALANCE_IP_HASH };
enum conf_action { ACTION_NONE, ACTION_UPSTREAM, ACTION_RETURN, ACTION_REDIRECT };
enum conf_host_header { HOST_HEADER_PASS, HOST_HEADER_SERVER, HOST_HEADER_LITERAL };
enum conf_log_format { LOG_FORMAT_COMBINED, LOG_FORMAT_JSON };

struct conf_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64]; /* as written, e.g. "127.0.0.1:8080" or "[::]:80" */
};

struct conf_server {
    char *hostport;        /* "HOST:PORT" as written */
    char *name;            /* name=ID, else hostport; used by X-Upstream and logs */
    struct conf_addr addr; /* resolved at load time (first address) */
    unsigned weight;       /* >= 1, default 1 */
    unsigned max_conns;    /* 0 = unlimited; counted over all workers */
    bool backup, down;
    unsigned id; /* global index over all upstreams' servers: shm column */
    struct conf_upstream *upstream;
};

struct conf_upstream {
    char *name;
    int line;
    unsigned index;
    struct conf_server *servers;
    unsigned nservers;
    enum conf_balance balance;
    unsigned keepalive;
    int64_t keepalive_timeout, connect_timeout, read_timeout, send_timeout;
    unsigned retries, max_fails;
    int64_t fail_timeout;
    bool tls, tls_verify;
    char *tls_ca, *tls_sni;
    int tls_line, tls_ca_line, tls_sni_line; /* where they were set, for messages */
    struct tls_client *tls_client;           /* built at load when tls is on; owned */
    enum conf_host_header host_header;
    char *host_literal; /* when HOST_HEADER_LITERAL */
};

/* request_header / response_header entry: "NAME: VALUE" sets, "-NAME" removes */
struct conf_header_op {
    char *name, *value; /* value NULL when remove */
    size_t name_len, value_len;
    bool remove;
};

struct conf_listener {
    char *name;
    int line;
    unsigned index; /* bit in conf_route.listener_mask */
    struct conf_addr *addrs;
    unsigned naddrs;
    int backlog;
    int64_t header_timeout, body_timeout, idle_timeout, send_timeout;
    size_t max_header_size;
    unsigned max_headers;
    int64_t max_body_size;
    unsigned max_requests;
    unsigned max_connections_per_ip; /* 0 = off; counted over every worker */
    size_t body_min_rate;            /* bytes/s a request body must average; 0 = off */
    char **certificates;             /* "CERT KEY" strings (resolved paths) */
    unsigned ncertificates;
    int *certificate_lines; /* config line of each certificate */
    struct tls_server *tls; /* built at load when there are certificates; owned */
    char *tls_protocols, *tls_ciphers, *alpn;
    char *tls_groups; /* key exchange groups, in the server's order of preference */
    bool tls_session_tickets;
    int64_t tls_ticket_rotation; /* ms between ticket key rotations */
    unsigned redirect_to_https;  /* port, 0 = off */
};

struct conf_route {
    char *name;
    int line;
    uint64_t listener_mask; /* all ones = every listener */
    char **hosts;           /* NULL/0 = any; "*.example.com" = suffix */
    unsigned nhosts;
    char *path; /* prefix, or exact when path_exact */
    size_t path_len;
    bool path_exact;
    char **methods; /* NULL/0 = any; upper-case names */
    unsigned nmethods;
    char *allow; /* "GET, HEAD" for the 405 Allow header */
    enum conf_action action;
    struct conf_upstream *upstream;
    unsigned return_code;
    char *return_body; /* may be NULL */
    unsigned redirect_code;
    char *redirect_url; /* may contain $host $request_uri $scheme */
    char *strip_prefix, *add_prefix;
    struct conf_header_op *request_headers, *response_headers;
    unsigned nrequest_headers, nresponse_headers;
    int64_t max_body_size; /* -1 = the listener's */
    bool access_log;
    bool expose_upstream;
};

struct config {
    char *path; /* the file as given */
    /* [main] */
    unsigned workers; /* "auto" resolved to online CPUs at load */
    char *user, *pid_file;
    char *error_log;  /* path or "stderr" */
    int log_level;    /* enum log_level from log.h */
    char *access_log; /* path, "stdout", or NULL for off */
    enum conf_log_format access_log_format;
    unsigned max_connections;
    int64_t shutdown_timeout;
    bool reuseport;

    struct conf_listener *listeners;
    unsigned nlisteners;
    struct conf_upstream *upstreams;
    unsigned nupstreams;
    struct conf_route *routes; /* in file order */
    unsigned nroutes;
    unsigned nservers; /* total over upstreams; ids are 0..nservers-1 */

    struct arena *arena; /* owns everything above */
};

/* Parse and validate FILE. Returns a config, or NULL after printing one line
 * per error, "FILE:LINE: message", to errf. Resolves hosts, checks that
 * referenced files are readable; binds nothing. */
struct config *config_load(const char *file, FILE *errf);

/* Print the effective configuration, defaults filled in, as valid INI. */
void config_dump(const struct config *c, FILE *out);

/* Release a config and everything it owns. NULL is fine. */
void config_free(struct config *c);

/* "55": the inih version built in. */
const char *config_library_version(void);

/* Value parsers shared with tests. Each returns 0 and stores the value, or
 * -1 on a malformed or out-of-range string. */
int config_parse_duration(const char *s, int64_t *ms); /* 250ms 10s 5m 1h; bare number = seconds */
int config_parse_size(const char *s, int64_t *bytes);  /* 512 16k 8m 1g */
int config_parse_bool(const char *s, bool *b);         /* on/off yes/no true/false 1/0 */
int config_parse_hostport(const char *s, struct conf_addr *a,
                          int resolve); /* ADDR:PORT [::]:P *:P */

#endif
