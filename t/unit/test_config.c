/* Configuration loader: value parsers, a full file checked field by field,
 * defaults, broken files each giving its exact "FILE:LINE: message", long
 * lines, relative paths, and the -T dump loading back to the same dump. */
#include "t/unit/tap.h"
#include "common/config.h"
#include "common/log.h"
#include "worker/tls_upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *write_file(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load TEXT from a file NAME; the errors printed land in ERRS. */
static struct config *load(const char *name, const char *text, char *errs, size_t cap)
{
    const char *path = write_file(name, text);
    char *buf = NULL;
    size_t n = 0;
    FILE *ef = open_memstream(&buf, &n);
    struct config *c = config_load(path, ef);
    fclose(ef);
    snprintf(errs, cap, "%s", buf ? buf : "");
    free(buf);
    return c;
}

static void test_durations(void)
{
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {{"250ms", 250}, {"10s", 10000}, {"5m", 300000}, {"1h", 3600000},
                {"7", 7000},    {"0", 0},       {"0ms", 0},     {"2H", 7200000}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t ms = -1;
        is_int(config_parse_duration(good[i].s, &ms), 0, "duration \"%s\" parses", good[i].s);
        is_int(ms, good[i].ms, "duration \"%s\" = %lld ms", good[i].s, (long long)good[i].ms);
    }
    static const char *const badv[] = {"",
                                       "-1",
                                       "10x",
                                       "1.5s",
                                       "10 s",
                                       " 10s",
                                       "s",
                                       "10sm",
                                       "+5s",
                                       "99999999999999999999",
                                       "9223372036854775807h"};
    for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++) {
        int64_t ms = 42;
        is_int(config_parse_duration(badv[i], &ms), -1, "duration \"%s\" refused", badv[i]);
    }
}

static void test_sizes(void)
{
    static const struct {
        const char *s;
        int64_t n;
    } good[] = {{"512", 512},      {"16k", 16384},
                {"8m", 8 << 20},   {"1g", 1 << 30},
                {"16K", 16384},    {"0", 0},
                {"3G", 3LL << 30}, {"9007199254740991", 9007199254740991LL}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t n = -1;
        is_int(config_parse_size(good[i].s, &n), 0, "size \"%s\" parses", good[i].s);
        is_int(n, good[i].n, "size \"%s\" = %lld", good[i].s, (long long)good[i].n);
    }
    static const char *const badv[] = {
        "", "-1", "1t", "1kb", "k", "1.5m", "8 m", "18446744073709551616", "9007199254740992g"};
    for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++) {
        int64_t n = 42;
        is_int(config_parse_size(badv[i], &n), -1, "size \"%s\" refused", badv[i]);
    }
}

static void test_bools(void)
{
    static const char *const yes[] = {"on", "yes", "true", "1", "ON", "True"};
    static const char *const no[] = {"off", "no", "false", "0", "OFF"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        bool b = false;
        ok(config_parse_bool(yes[i], &b) == 0 && b, "bool \"%s\" is true", yes[i]);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        bool b = true;
        ok(config_parse_bool(no[i], &b) == 0 && !b, "bool \"%s\" is false", no[i]);
    }
    static const char *const badv[] = {"", "maybe", "2", "onn", " on"};
    for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++) {
        bool b;
        is_int(config_parse_bool(badv[i], &b), -1, "bool \"%s\" refused", badv[i]);
    }
}

static unsigned port_of(const struct conf_addr *a)
{
    if (a->ss.ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static void test_hostport(void)
{
    struct conf_addr a;
    is_int(config_parse_hostport("127.0.0.1:80", &a, 0), 0, "IPv4:port");
    is_int(a.ss.ss_family, AF_INET, "IPv4 family");
    is_int(port_of(&a), 80, "IPv4 port");
    is_str(a.text, "127.0.0.1:80", "text as written");
    is_int(a.len, sizeof(struct sockaddr_in), "IPv4 length");

    is_int(config_parse_hostport("[::1]:8080", &a, 0), 0, "[IPv6]:port");
    is_int(a.ss.ss_family, AF_INET6, "IPv6 family");
    is_int(port_of(&a), 8080, "IPv6 port");
    ok(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&a.ss)->sin6_addr), "::1 is loopback");

    is_int(config_parse_hostport("[::]:443", &a, 0), 0, "[::]:443");
    ok(IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&a.ss)->sin6_addr), ":: is any");

    is_int(config_parse_hostport("*:8080", &a, 0), 0, "*:port");
    is_int(a.ss.ss_family, AF_INET, "* is IPv4");
    is_int(((struct sockaddr_in *)&a.ss)->sin_addr.s_addr, htonl(INADDR_ANY), "* is any");
    is_int(port_of(&a), 8080, "* port");

    is_int(config_parse_hostport("localhost:80", &a, 0), -1, "names refused without resolve");
    is_int(config_parse_hostport("localhost:80", &a, 1), 0, "names resolved with resolve");
    is_int(port_of(&a), 80, "resolved name keeps the port");

    static const char *const badv[] = {"127.0.0.1",
                                       "127.0.0.1:0",
                                       "127.0.0.1:65536",
                                       "127.0.0.1:",
                                       ":80",
                                       "::1:80",
                                       "[::1]80",
                                       "[::1",
                                       "[::1]:",
                                       "1.2.3.4:80x",
                                       "256.1.1.1:80",
                                       "[1.2.3.4]:80",
                                       "1.2.3.4:-1",
                                       "",
                                       "[]:80",
                                       "*:0",
                                       "1.2.3.4: 80",
                                       "[::1]:8080:1",
                                       "1.2.3.4:+80",
                                       "[nope]:80"};
    for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++)
        is_int(config_parse_hostport(badv[i], &a, 0), -1, "hostport \"%s\" refused", badv[i]);
    char longv[100];
    memset(longv, '1', sizeof(longv));
    memcpy(longv + sizeof(longv) - 4, ":80", 4);
    is_int(config_parse_hostport(longv, &a, 1), -1, "longer than conf_addr.text refused");
    is_int(config_parse_hostport("nosuch.invalid:80", &a, 1), -1, "unresolvable refused");
}

static const char full_conf[] = "# a full configuration\n"
                                "[main]\n"
                                "workers = 3\n"
                                "error_log = logs/error.log\n"
                                "log_level = warn\n"
                                "access_log = /tmp/portico-unit-access.log\n"
                                "access_log_format = json\n"
                                "max_connections = 1000\n"
                                "shutdown_timeout = 2m\n"
                                "reuseport = off\n"
                                "pid_file = run/portico.pid\n"
                                "\n"
                                "[listener public]\n"
                                "listen = *:8080\n"
                                "listen = [::1]:8081\n"
                                "backlog = 511\n"
                                "header_timeout = 5s\n"
                                "body_timeout = 250ms\n"
                                "idle_timeout = 1h\n"
                                "send_timeout = 7\n"
                                "max_header_size = 32k\n"
                                "max_headers = 50\n"
                                "max_body_size = 1g\n"
                                "max_requests = 99\n"
                                "tls_protocols = TLSv1.3\n"
                                "alpn = http/1.1\n"
                                "tls_session_tickets = no\n"
                                "redirect_to_https = 443\n"
                                "\n"
                                "  [listener admin]   ; indented, with a comment\n"
                                "  listen = 127.0.0.1:9901\n"
                                "\n"
                                "[upstream api]\n"
                                "server = 127.0.0.1:9000 weight=5 max_conns=10 name=api-1\n"
                                "server = [::1]:9001 backup down\n"
                                "balance = ip_hash\n"
                                "keepalive = 0\n"
                                "keepalive_timeout = 90s\n"
                                "connect_timeout = 500ms\n"
                                "read_timeout = 2m\n"
                                "send_timeout = 3m\n"
                                "retries = 2\n"
                                "max_fails = 3\n"
                                "fail_timeout = 20s\n"
                                "tls = on\n"
                                "tls_verify = off\n"
                                "tls_sni = api.internal\n"
                                "host_header = api.example.com\n"
                                "protocol = http\n"
                                "\n"
                                "[upstream other]\n"
                                "server = localhost:9002\n"
                                "host_header = server\n"
                                "\n"
                                "[route api]\n"
                                "listener = public\n"
                                "host = API.Example.com\n"
                                "host = *.example.org www.example.net\n"
                                "path = /api/\n"
                                "methods = GET HEAD, POST\n"
                                "upstream = api\n"
                                "strip_prefix = /api\n"
                                "add_prefix = /v1\n"
                                "request_header = X-Gateway: portico  ; inline comment\n"
                                "request_header = -Cookie\n"
                                "response_header = Strict-Transport-Security: max-age=63072000\n"
                                "max_body_size = 0\n"
                                "access_log = off\n"
                                "expose_upstream = on\n"
                                "\n"
                                "[route exact]\n"
                                "listener = admin, public\n"
                                "path = = /healthz\n"
                                "return = 200 ok, all good\n"
                                "\n"
                                "[route empty]\n"
                                "path = =/nothing\n"
                                "return = 204\n"
                                "\n"
                                "[route moved]\n"
                                "path = /old\n"
                                "redirect = 308 https://$host$request_uri\n";

static void test_full_main(const struct config *c)
{
    char want[512];
    is_int(c->workers, 3, "workers");
    snprintf(want, sizeof(want), "%s/logs/error.log", dir);
    is_str(c->error_log, want, "error_log resolved against the file's directory");
    snprintf(want, sizeof(want), "%s/run/portico.pid", dir);
    is_str(c->pid_file, want, "pid_file resolved");
    is_int(c->log_level, LL_WARN, "log_level");
    is_str(c->access_log, "/tmp/portico-unit-access.log", "absolute access_log kept");
    is_int(c->access_log_format, LOG_FORMAT_JSON, "access_log_format");
    is_int(c->max_connections, 1000, "max_connections");
    is_int(c->shutdown_timeout, 120000, "shutdown_timeout");
    ok(!c->reuseport, "reuseport off");
    is_int(c->nlisteners, 2, "two listeners");
    is_int(c->nupstreams, 2, "two upstreams");
    is_int(c->nroutes, 4, "four routes");
    is_int(c->nservers, 3, "three servers in all");
}

static void test_full_listeners(const struct config *c)
{
    const struct conf_listener *l = &c->listeners[0];
    is_str(l->name, "public", "listener name");
    is_int(l->line, 13, "listener line");
    is_int(l->index, 0, "listener index");
    is_int(l->naddrs, 2, "two listen addresses");
    is_str(l->addrs[0].text, "*:8080", "first listen");
    is_str(l->addrs[1].text, "[::1]:8081", "second listen");
    is_int(l->addrs[1].ss.ss_family, AF_INET6, "second is IPv6");
    is_int(l->backlog, 511, "backlog");
    is_int(l->header_timeout, 5000, "header_timeout");
    is_int(l->body_timeout, 250, "body_timeout");
    is_int(l->idle_timeout, 3600000, "idle_timeout");
    is_int(l->send_timeout, 7000, "bare number is seconds");
    is_int(l->max_header_size, 32768, "max_header_size");
    is_int(l->max_headers, 50, "max_headers");
    is_int(l->max_body_size, 1LL << 30, "max_body_size");
    is_int(l->max_requests, 99, "max_requests");
    is_str(l->tls_protocols, "TLSv1.3", "tls_protocols");
    is_str(l->alpn, "http/1.1", "alpn");
    ok(!l->tls_session_tickets, "tls_session_tickets off");
    is_int(l->redirect_to_https, 443, "redirect_to_https");
    is_int(l->ncertificates, 0, "no certificates");
    l = &c->listeners[1];
    is_str(l->name, "admin", "indented section header");
    is_int(l->index, 1, "second listener index");
    is_str(l->addrs[0].text, "127.0.0.1:9901", "indented key");
    is_int(l->redirect_to_https, 0, "redirect_to_https off by default");
}

static void test_full_upstreams(const struct config *c)
{
    const struct conf_upstream *u = &c->upstreams[0];
    is_str(u->name, "api", "upstream name");
    is_int(u->index, 0, "upstream index");
    is_int(u->nservers, 2, "two servers");
    const struct conf_server *s = &u->servers[0];
    is_str(s->hostport, "127.0.0.1:9000", "server hostport");
    is_str(s->name, "api-1", "server name=");
    is_int(s->weight, 5, "weight");
    is_int(s->max_conns, 10, "max_conns");
    ok(!s->backup && !s->down, "not backup, not down");
    is_int(s->id, 0, "first server id");
    ok(s->upstream == u, "back pointer");
    is_int(port_of(&s->addr), 9000, "server port");
    s = &u->servers[1];
    is_str(s->name, "[::1]:9001", "name defaults to hostport");
    is_int(s->weight, 1, "weight defaults to 1");
    ok(s->backup && s->down, "backup and down");
    is_int(s->id, 1, "second server id");
    is_int(s->addr.ss.ss_family, AF_INET6, "IPv6 server");
    is_int(u->balance, BALANCE_IP_HASH, "ip_hash with a backup server is fine");
    is_int(u->keepalive, 0, "keepalive 0");
    is_int(u->keepalive_timeout, 90000, "keepalive_timeout");
    is_int(u->connect_timeout, 500, "connect_timeout");
    is_int(u->read_timeout, 120000, "read_timeout");
    is_int(u->send_timeout, 180000, "send_timeout");
    is_int(u->retries, 2, "retries");
    is_int(u->max_fails, 3, "max_fails");
    is_int(u->fail_timeout, 20000, "fail_timeout");
    ok(u->tls && !u->tls_verify, "tls on, tls_verify off");
    ok(u->tls_client != NULL, "tls on: the client context is built at load");
    is_str(u->tls_sni, "api.internal", "tls_sni");
    is_int(u->host_header, HOST_HEADER_LITERAL, "literal host_header");
    is_str(u->host_literal, "api.example.com", "host_literal");
    u = &c->upstreams[1];
    is_int(u->servers[0].id, 2, "ids run over all upstreams");
    ok(u->servers[0].upstream == u, "second back pointer");
    is_int(u->host_header, HOST_HEADER_SERVER, "host_header server");
    ok(u->host_literal == NULL, "no literal");
}

static void test_full_route_api(const struct config *c)
{
    const struct conf_route *r = &c->routes[0];
    is_str(r->name, "api", "route name");
    is_int(r->listener_mask, 1, "listener mask: public");
    is_int(r->nhosts, 3, "three hosts");
    is_str(r->hosts[0], "api.example.com", "host lower-cased");
    is_str(r->hosts[1], "*.example.org", "suffix host");
    is_str(r->hosts[2], "www.example.net", "two hosts on one line");
    is_str(r->path, "/api/", "path");
    is_int(r->path_len, 5, "path_len");
    ok(!r->path_exact, "prefix path");
    is_int(r->nmethods, 3, "three methods");
    is_str(r->methods[2], "POST", "methods split on spaces and commas");
    is_str(r->allow, "GET, HEAD, POST", "Allow string");
    is_int(r->action, ACTION_UPSTREAM, "upstream action");
    ok(r->upstream == &c->upstreams[0], "upstream pointer");
    is_str(r->strip_prefix, "/api", "strip_prefix");
    is_str(r->add_prefix, "/v1", "add_prefix");
    is_int(r->nrequest_headers, 2, "two request_header ops");
    is_str(r->request_headers[0].name, "X-Gateway", "set name");
    is_str(r->request_headers[0].value, "portico", "set value, inline comment gone");
    is_int(r->request_headers[0].name_len, 9, "name_len");
    is_int(r->request_headers[0].value_len, 7, "value_len");
    ok(!r->request_headers[0].remove, "set op");
    ok(r->request_headers[1].remove && r->request_headers[1].value == NULL, "remove op");
    is_str(r->request_headers[1].name, "Cookie", "remove name");
    is_int(r->nresponse_headers, 1, "one response_header");
    is_str(r->response_headers[0].value, "max-age=63072000", "response header value");
    is_int(r->max_body_size, 0, "route max_body_size");
    ok(!r->access_log && r->expose_upstream, "access_log off, expose_upstream on");
}

static void test_full_routes(const struct config *c)
{
    test_full_route_api(c);
    const struct conf_route *r = &c->routes[1];
    is_int(r->listener_mask, 3, "listener mask: admin, public");
    ok(r->path_exact, "exact path");
    is_str(r->path, "/healthz", "exact path text");
    is_int(r->action, ACTION_RETURN, "return action");
    is_int(r->return_code, 200, "return code");
    is_str(r->return_body, "ok, all good", "return body is the rest of the line");
    is_int(r->max_body_size, -1, "max_body_size defaults to the listener's");
    ok(r->access_log && !r->expose_upstream, "route defaults");
    ok(r->nhosts == 0 && r->hosts == NULL, "any host");
    ok(r->nmethods == 0 && r->allow == NULL, "any method");
    r = &c->routes[2];
    is_int(r->listener_mask, UINT64_MAX, "no listener key: every listener");
    ok(r->path_exact && strcmp(r->path, "/nothing") == 0, "=/exact without a space");
    is_int(r->return_code, 204, "return without body");
    ok(r->return_body == NULL, "no body");
    r = &c->routes[3];
    is_int(r->action, ACTION_REDIRECT, "redirect action");
    is_int(r->redirect_code, 308, "redirect code");
    is_str(r->redirect_url, "https://$host$request_uri", "redirect url");
}

static void test_full(void)
{
    char errs[4096];
    struct config *c = load("full.ini", full_conf, errs, sizeof(errs));
    ok(c != NULL, "full configuration loads");
    is_str(errs, "", "no errors");
    if (!c) return;
    char want[256];
    snprintf(want, sizeof(want), "%s/full.ini", dir);
    is_str(c->path, want, "path as given");
    test_full_main(c);
    test_full_listeners(c);
    test_full_upstreams(c);
    test_full_routes(c);
    config_free(c);
}

static void test_defaults(void)
{
    char errs[4096];
    struct config *c = load("min.ini",
                            "[listener l]\nlisten = 127.0.0.1:8080\n"
                            "[upstream u]\nserver = 127.0.0.1:9000\n"
                            "[route r]\nupstream = u\n",
                            errs, sizeof(errs));
    ok(c != NULL, "minimal configuration loads");
    if (!c) return;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    is_int(c->workers, cpus > 128 ? 128 : cpus, "workers auto = online CPUs");
    is_str(c->error_log, "stderr", "error_log stderr");
    is_int(c->log_level, LL_INFO, "log_level info");
    ok(c->access_log == NULL, "access_log off");
    is_int(c->access_log_format, LOG_FORMAT_COMBINED, "combined");
    is_int(c->max_connections, 16384, "max_connections");
    is_int(c->shutdown_timeout, 30000, "shutdown_timeout");
    ok(c->reuseport, "reuseport on");
    ok(c->user == NULL && c->pid_file == NULL, "no user, no pid_file");
    const struct conf_listener *l = &c->listeners[0];
    is_int(l->backlog, 4096, "backlog");
    is_int(l->header_timeout, 10000, "header_timeout");
    is_int(l->body_timeout, 30000, "body_timeout");
    is_int(l->idle_timeout, 60000, "idle_timeout");
    is_int(l->send_timeout, 30000, "send_timeout");
    is_int(l->max_header_size, 16384, "max_header_size");
    is_int(l->max_headers, 100, "max_headers");
    is_int(l->max_body_size, 8 << 20, "max_body_size");
    is_int(l->max_requests, 10000, "max_requests");
    is_str(l->tls_protocols, "TLSv1.2 TLSv1.3", "tls_protocols");
    ok(l->tls_session_tickets, "tls_session_tickets on");
    is_str(l->alpn, "http/1.1", "alpn");
    ok(l->tls_ciphers == NULL, "tls_ciphers: library default");
    is_str(l->tls_groups, "secp256r1 x25519 secp384r1", "tls_groups: P-256 first");
    const struct conf_upstream *u = &c->upstreams[0];
    is_int(u->balance, BALANCE_ROUND_ROBIN, "round_robin");
    is_int(u->keepalive, 32, "keepalive");
    is_int(u->keepalive_timeout, 60000, "keepalive_timeout");
    is_int(u->connect_timeout, 3000, "connect_timeout");
    is_int(u->read_timeout, 60000, "read_timeout");
    is_int(u->send_timeout, 60000, "send_timeout");
    is_int(u->retries, 1, "retries");
    is_int(u->max_fails, 1, "max_fails");
    is_int(u->fail_timeout, 10000, "fail_timeout");
    ok(!u->tls && u->tls_verify, "tls off, tls_verify on");
    is_int(u->host_header, HOST_HEADER_PASS, "host_header pass");
    const struct conf_route *r = &c->routes[0];
    is_str(r->path, "/", "path /");
    ok(!r->path_exact, "prefix");
    is_int(r->max_body_size, -1, "route max_body_size -1");
    ok(r->access_log && !r->expose_upstream, "access_log on, expose_upstream off");
    is_int(r->listener_mask, UINT64_MAX, "all listeners");
    config_free(c);
}

/* Each broken file: its text and the exact error line expected (after
 * "FILE:"). Every file is valid except for the one problem. */
static const struct {
    const char *what, *text, *want;
} broken[] = {
    {"unknown key", "[listener public]\nlisten = *:8080\nlistn = *:80\n[route r]\nreturn = 204\n",
     "3: unknown key \"listn\" in [listener public]"},
    {"unknown section", "[listener l]\nlisten = *:8080\n[route r]\nreturn = 204\n[frob x]\na = b\n",
     "5: unknown section \"[frob x]\""},
    {"duplicate section",
     "[listener l]\nlisten = *:8080\n[route r]\nreturn = 204\n[route r]\nreturn = 204\n",
     "5: duplicate section [route r], first at line 3"},
    {"key given twice", "[listener l]\nlisten = *:8080\nbacklog = 1\nbacklog = 2\n",
     "4: \"backlog\" given twice in [listener l], first at line 3"},
    {"bad number", "[listener l]\nlisten = *:8080\nbacklog = 12a\n",
     "3: invalid backlog \"12a\": expected a number"},
    {"out of range", "[main]\nworkers = 129\n[listener l]\nlisten = *:8080\n",
     "2: invalid workers \"129\": expected auto or a number from 1 to 128"},
    {"out of range duration", "[listener l]\nlisten = *:8080\nheader_timeout = 2d\n",
     "3: invalid header_timeout \"2d\": expected a duration like 250ms, 10s, 5m or 1h"},
    {"duration bounds", "[listener l]\nlisten = *:8080\nheader_timeout = 0\n",
     "3: invalid header_timeout \"0\": must be between 1ms and 24h"},
    {"size bounds", "[listener l]\nlisten = *:8080\nmax_header_size = 2m\n",
     "3: invalid max_header_size \"2m\": must be between 1k and 1m"},
    {"bad bool", "[main]\nreuseport = perhaps\n[listener l]\nlisten = *:8080\n",
     "2: invalid reuseport \"perhaps\": expected on or off"},
    {"bad enum", "[main]\nlog_level = loud\n[listener l]\nlisten = *:8080\n",
     "2: invalid log_level \"loud\": expected one of debug, info, notice, warn, error"},
    {"missing action", "[listener l]\nlisten = *:8080\n[route r]\npath = /x\n",
     "3: [route r] has no action (upstream, return or redirect)"},
    {"unknown upstream", "[listener l]\nlisten = *:8080\n[route r]\nupstream = nope\n",
     "4: unknown upstream \"nope\" in [route r]"},
    {"unknown listener",
     "[listener l]\nlisten = *:8080\n[route r]\nlistener = l nol\nreturn = 204\n",
     "4: unknown listener \"nol\" in [route r]"},
    {"two actions", "[listener l]\nlisten = *:8080\n[route r]\nreturn = 204\nredirect = 301 /x\n",
     "5: more than one action in [route r]: \"redirect\" after \"return\""},
    {"bad listen port", "[listener l]\nlisten = 127.0.0.1:99999\n",
     "2: invalid listen \"127.0.0.1:99999\": port must be a number from 1 to 65535 (use "
     "ADDR:PORT, [IPV6]:PORT or *:PORT)"},
    {"listen host name", "[listener l]\nlisten = localhost:80\n",
     "2: invalid listen \"localhost:80\": not an IP address (use ADDR:PORT, [IPV6]:PORT or "
     "*:PORT)"},
    {"listen without brackets", "[listener l]\nlisten = ::1:80\n",
     "2: invalid listen \"::1:80\": IPv6 addresses need brackets, e.g. [::1]:80 (use "
     "ADDR:PORT, [IPV6]:PORT or *:PORT)"},
    {"unresolvable host",
     "[listener l]\nlisten = *:8080\n[upstream u]\nserver = nosuch.invalid:80\n",
     "4: cannot resolve \"nosuch.invalid\": "},
    {"duplicate listen address",
     "[listener a]\nlisten = *:8080\n[listener b]\nlisten = 0.0.0.0:8080\n",
     "4: listen address \"0.0.0.0:8080\" is already used at line 2"},
    {"missing listener", "[main]\nworkers = 1\n\n", "3: no [listener] section"},
    {"listener without listen", "[listener l]\nbacklog = 5\n[listener m]\nlisten = *:80\n",
     "1: [listener l] has no \"listen\""},
    {"upstream without server", "[listener l]\nlisten = *:80\n[upstream u]\nretries = 0\n",
     "3: [upstream u] has no \"server\""},
    {"bad weight", "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1 weight=0\n",
     "4: invalid server \"127.0.0.1:1 weight=0\": weight must be from 1 to 1000"},
    {"unknown server option",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1 fast\n",
     "4: invalid server \"127.0.0.1:1 fast\": unknown option \"fast\""},
    {"return code", "[listener l]\nlisten = *:80\n[route r]\nreturn = 99 x\n",
     "4: invalid return \"99 x\": expected CODE [BODY] with CODE from 100 to 599"},
    {"redirect code", "[listener l]\nlisten = *:80\n[route r]\nredirect = 200 /x\n",
     "4: invalid redirect \"200 /x\": expected CODE URL with CODE 301, 302, 303, 307 or 308"},
    {"redirect url", "[listener l]\nlisten = *:80\n[route r]\nredirect = 301\n",
     "4: invalid redirect \"301\": expected one URL after the code"},
    {"path", "[listener l]\nlisten = *:80\n[route r]\npath = api\nreturn = 204\n",
     "4: invalid path \"api\": expected /prefix or = /exact"},
    {"methods", "[listener l]\nlisten = *:80\n[route r]\nmethods = get\nreturn = 204\n",
     "4: invalid methods \"get\": method names are upper-case, like GET HEAD"},
    {"header op", "[listener l]\nlisten = *:80\n[route r]\nrequest_header = X A: b\nreturn = 204\n",
     "4: invalid request_header \"X A: b\": expected \"NAME: VALUE\" or \"-NAME\""},
    {"strip_prefix", "[listener l]\nlisten = *:80\n[route r]\nstrip_prefix = api\nreturn = 204\n",
     "4: invalid strip_prefix \"api\": expected a path starting with /"},
    {"host", "[listener l]\nlisten = *:80\n[route r]\nhost = a*b.com\nreturn = 204\n",
     "4: invalid host \"a*b.com\": expected a host name or *.suffix"},
    {"phase 2 key",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1\n"
     "health_check = /health\n",
     "5: \"health_check\" is not supported yet"},
    {"phase 2 value",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1\n"
     "protocol = fastcgi\n",
     "5: \"protocol = fastcgi\" is not supported yet"},
    {"phase 2 balance",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1\n"
     "balance = hash $remote_addr\n",
     "5: \"balance = hash\" is not supported yet"},
    {"phase 2 section", "[listener l]\nlisten = *:80\n[limit api]\nrate = 5r/s\n",
     "3: \"[limit]\" is not supported yet"},
    {"tls_ca not PEM",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1\ntls = on\n"
     "tls_ca = broken.ini\n",
     "6: tls_ca \""},
    {"tls_ca without a certificate",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1\ntls = on\n"
     "tls_ca = /dev/null\n",
     "6: tls_ca \"/dev/null\": no usable CA certificate"},
    {"tls_sni an IP",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1\ntls = on\n"
     "tls_sni = 10.0.0.1\n",
     "6: invalid tls_sni \"10.0.0.1\": an IP address is not a name: leave tls_sni unset, the "
     "certificate's IP addresses are then checked"},
    {"tls_sni not a name",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1\ntls = on\n"
     "tls_sni = api example\n",
     "6: invalid tls_sni \"api example\": expected a DNS host name"},
    {"tls_sni label",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1\ntls_sni = -a.b\n",
     "5: invalid tls_sni \"-a.b\": expected a DNS host name"},
    {"tls not a bool",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1\ntls = https\n",
     "5: invalid tls \"https\": expected on or off"},
    {"certificate not PEM", "[listener l]\nlisten = *:80\ncertificate = full.ini full.ini\n",
     "3: certificate \""},
    {"tls_ca unreadable",
     "[listener l]\nlisten = *:80\n[upstream u]\nserver = 127.0.0.1:1\ntls_ca = nope.pem\n",
     "5: cannot read \""},
    {"outside a section", "workers = 1\n[listener l]\nlisten = *:80\n",
     "1: \"workers\" outside any section; start with [main] or [listener NAME]"},
    {"syntax", "[listener l]\nlisten = *:80\njust words\n",
     "3: syntax error: expected \"KEY = VALUE\" or \"[SECTION]\""},
    {"section bracket", "[listener l\nlisten = *:80\n", "1: missing ']' in section header"},
    {"section name", "[listener a/b]\nlisten = *:80\n",
     "1: invalid section name \"a/b\" in [listener a/b]: use 1 to 63 of A-Z a-z 0-9 - _ ."},
    {"section without name", "[route]\nreturn = 204\n[listener l]\nlisten = *:80\n",
     "1: [route] needs a name, e.g. [route NAME]"},
    {"empty value", "[listener l]\nlisten = *:80\nbacklog =\n", "3: \"backlog\" needs a value"},
    {"user", "[main]\nuser = no-such-user-here\n[listener l]\nlisten = *:80\n",
     "2: unknown user \"no-such-user-here\""},
    {"alpn h2", "[listener l]\nlisten = *:80\nalpn = h2 http/1.1\n",
     "3: \"alpn = h2\" is not supported yet"},
};

static void test_broken(void)
{
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        char errs[4096], want[512];
        struct config *c = load("broken.ini", broken[i].text, errs, sizeof(errs));
        ok(c == NULL, "%s: refused", broken[i].what);
        config_free(c);
        snprintf(want, sizeof(want), "%s/broken.ini:%s", dir, broken[i].want);
        char *hit = strstr(errs, want);
        ok(hit && (hit == errs || hit[-1] == '\n'), "%s: \"%s\"", broken[i].what, broken[i].want);
        if (!hit) printf("#   got: %s", errs);
    }
}

/* All errors are reported, not only the first; each on its own line. */
static void test_many_errors(void)
{
    char errs[4096], want[1024];
    struct config *c = load("many.ini",
                            "[listener l]\nlisten = *:80\nbogus_one = 1\n[route r]\n"
                            "return = 204\nbogus_two = 2\n[upstream u]\n",
                            errs, sizeof(errs));
    ok(c == NULL, "many errors: refused");
    snprintf(want, sizeof(want),
             "%s/many.ini:3: unknown key \"bogus_one\" in [listener l]\n"
             "%s/many.ini:6: unknown key \"bogus_two\" in [route r]\n"
             "%s/many.ini:7: [upstream u] has no \"server\"\n",
             dir, dir, dir);
    is_str(errs, want, "three errors, three lines");

    c = load("none.ini", "", errs, sizeof(errs));
    ok(c == NULL, "empty file refused");
    snprintf(want, sizeof(want), "%s/none.ini:1: no [listener] section\n", dir);
    is_str(errs, want, "empty file: no listener");

    c = config_load("/nonexistent/portico.ini", NULL);
    ok(c == NULL, "missing file refused (NULL errf is fine)");
}

static void test_long_lines(void)
{
    size_t big = 100000;
    char *text = malloc(big), errs[4096];
    int n = snprintf(text, big,
                     "[listener l]\nlisten = *:80\n[route r]\nreturn = 204\n"
                     "response_header = X-Long: ");
    for (int i = 0; i < 600; i++)
        text[n++] = (char)('a' + i % 26);
    n += snprintf(text + n, big - (size_t)n, "   ; a comment\nrequest_header = X-Short: s\n");
    struct config *c = load("long.ini", text, errs, sizeof(errs));
    ok(c != NULL, "a 630-byte line loads");
    is_str(errs, "", "no errors for a long line");
    if (c) {
        const struct conf_route *r = &c->routes[0];
        is_int(r->response_headers[0].value_len, 600, "long value kept whole, comment cut");
        ok(r->response_headers[0].value[599] == 'a' + 599 % 26, "last byte right");
        is_str(r->request_headers[0].value, "s", "line after a long one");
        config_free(c);
    }
    n = snprintf(text, big, "[listener l]\nlisten = *:80\nbacklog = ");
    memset(text + n, '1', 70000);
    strcpy(text + n + 70000, "\n");
    c = load("huge.ini", text, errs, sizeof(errs));
    ok(c == NULL, "a 70000-byte line is refused");
    char want[256];
    snprintf(want, sizeof(want), "%s/huge.ini:3: line too long", dir);
    ok(strncmp(errs, want, strlen(want)) == 0, "line too long, with its line number");
    if (strncmp(errs, want, strlen(want)) != 0) printf("#   got: %s", errs);

    n = snprintf(text, big, "[listener l]\nlisten = *:80\n");
    memset(text + n, 'x', 500);
    strcpy(text + n + 500, "\n[route r]\nreturn = 204\n");
    c = load("longjunk.ini", text, errs, sizeof(errs));
    snprintf(want, sizeof(want), "%s/longjunk.ini:3: syntax error", dir);
    ok(c == NULL && strncmp(errs, want, strlen(want)) == 0, "long line without '=' refused");
    free(text);
}

static void test_line_endings(void)
{
    char errs[4096];
    struct config *c = load("crlf.ini",
                            "\xEF\xBB\xBF[listener l]\r\nlisten = *:80\r\n[route r]\r\n"
                            "return = 200 crlf \r\n",
                            errs, sizeof(errs));
    ok(c != NULL, "BOM and CRLF load");
    if (c) {
        is_str(c->routes[0].return_body, "crlf", "CR stripped");
        config_free(c);
    }
    c = load("noeol.ini", "[listener l]\nlisten = *:80\n[route r]\nreturn = 204", errs,
             sizeof(errs));
    ok(c != NULL, "no newline at the end");
    config_free(c);
}

static void test_paths(void)
{
    char errs[4096], want[512];
    write_file("ca.pem", "not really a CA\n");
    struct config *c = load("paths.ini",
                            "[main]\naccess_log = stdout\n[listener l]\nlisten = *:80\n"
                            "[upstream u]\nserver = 127.0.0.1:1\ntls_ca = ca.pem\n"
                            "[route r]\nupstream = u\n",
                            errs, sizeof(errs));
    ok(c != NULL, "readable tls_ca accepted");
    if (!c) return;
    snprintf(want, sizeof(want), "%s/ca.pem", dir);
    is_str(c->upstreams[0].tls_ca, want, "tls_ca resolved");
    is_str(c->access_log, "stdout", "access_log stdout kept");
    snprintf(want, sizeof(want),
             "%s/paths.ini:7: warning: [upstream u]: tls_ca has no effect without tls = on\n", dir);
    is_str(errs, want, "tls_ca without tls = on: a warning");
    config_free(c);
}

/* tls = on: the client context is built at load; tls_verify = on without
 * tls_ca takes the system CAs, shared by every upstream that uses them. */
static void test_upstream_tls(void)
{
    char errs[4096], want[512];
    const char *text = "[listener l]\nlisten = *:80\n"
                       "[upstream a]\nserver = localhost:443\ntls = on\n"
                       "[upstream b]\nserver = 127.0.0.1:443\ntls = yes\n"
                       "[upstream c]\nserver = 127.0.0.1:443\ntls = on\ntls_verify = off\n"
                       "tls_ca = /nonexistent/ca.pem\n";
    struct config *c = load("up-tls.ini", text, errs, sizeof(errs));
    ok(c == NULL, "tls_ca unreadable even with tls_verify off: refused");
    snprintf(want, sizeof(want), "%s/up-tls.ini:13: cannot read \"/nonexistent/ca.pem\"", dir);
    ok(strncmp(errs, want, strlen(want)) == 0, "unreadable tls_ca names its line");
    config_free(c);
    write_file("some.pem", "x");
    char text2[1024];
    snprintf(text2, sizeof(text2), "%.*ssome.pem\n", (int)(strlen(text) - 20), text);
    c = load("up-tls.ini", text2, errs, sizeof(errs));
    snprintf(want, sizeof(want),
             "%s/up-tls.ini:13: warning: [upstream c]: tls_ca is not used with tls_verify = off\n",
             dir);
    if (access(TLS_SYSTEM_CA, R_OK) == 0) {
        ok(c != NULL, "tls = on with the system CAs loads");
        is_str(errs, want, "tls_ca with tls_verify = off: a warning");
        ok(c && c->upstreams[0].tls_client && c->upstreams[1].tls_client &&
               c->upstreams[2].tls_client,
           "three client contexts");
    } else {
        ok(c == NULL, "no system CA file: refused");
        snprintf(want, sizeof(want), "%s/up-tls.ini:5: tls_verify is on and no tls_ca is set", dir);
        ok(strncmp(errs, want, strlen(want)) == 0, "no system CA file: the message says so");
        ok(1, "skipped: no system CA file");
    }
    config_free(c);
}

static char *dump_string(const struct config *c)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    config_dump(c, f);
    fclose(f);
    /* The first line names the file dumped; the rest must match. */
    char *body = strchr(buf, '\n');
    char *copy = strdup(body ? body : "");
    free(buf);
    return copy;
}

static void test_dump_roundtrip(void)
{
    char errs[4096];
    struct config *c = load("rt.ini", full_conf, errs, sizeof(errs));
    ok(c != NULL, "round trip: load");
    if (!c) return;
    char *d1 = dump_string(c);
    config_free(c);
    c = load("rt2.ini", d1, errs, sizeof(errs));
    ok(c != NULL, "round trip: the dump loads");
    is_str(errs, "", "round trip: no errors");
    if (!c) {
        free(d1);
        return;
    }
    char *d2 = dump_string(c);
    is_str(d2, d1, "round trip: dump of the dump is identical");
    ok(strstr(d1, "\nworkers = 3\n") && strstr(d1, "\nbody_timeout = 250ms\n") &&
           strstr(d1, "\nmax_body_size = 1g\n") && strstr(d1, "\nidle_timeout = 1h\n") &&
           strstr(d1, "\nheader_timeout = 5s\n"),
       "values print in their natural unit");
    ok(strstr(d1, "\nserver = 127.0.0.1:9000 weight=5 max_conns=10 name=api-1\n") &&
           strstr(d1, "\nserver = [::1]:9001 backup down\n"),
       "server lines");
    ok(strstr(d1, "\npath = = /healthz\n") && strstr(d1, "\nreturn = 200 ok, all good\n"),
       "exact path and return");
    ok(strstr(d1, "\nlistener = public\n") && strstr(d1, "\nlistener = admin\n"), "listeners");
    ok(strstr(d1, "\nrequest_header = -Cookie\n") != NULL, "remove op");
    ok(strstr(d1, "\n[route moved]\npath = /old\nredirect = 308 https://$host$request_uri\n"),
       "a route with defaults left out");
    free(d1);
    free(d2);
    config_free(c);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/portico-test-config-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    char logs[sizeof(dir) + 8];
    snprintf(logs, sizeof(logs), "%s/logs", dir); /* log directories must exist */
    if (mkdir(logs, 0755) < 0) return 1;
    snprintf(logs, sizeof(logs), "%s/run", dir);
    if (mkdir(logs, 0755) < 0) return 1;
    is_str(config_library_version(), "55", "inih version");
    test_durations();
    test_sizes();
    test_bools();
    test_hostport();
    test_full();
    test_defaults();
    test_broken();
    test_many_errors();
    test_long_lines();
    test_line_endings();
    test_paths();
    test_upstream_tls();
    test_dump_roundtrip();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
    return tap_done();
}
