/* Access log lines: nginx's combined format plus upstream, timings and the
 * request id, or one JSON object per line. Formatted into a stack buffer and
 * handed to the per-process buffered writer in common/log.c. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/net.h"
#include "worker/core.h"

static void times_update(struct worker *w)
{
    if (w->log_sec == w->wall_sec) return;
    struct tm tm;
    time_t t = (time_t)w->wall_sec;
    gmtime_r(&t, &tm);
    strftime(w->clf_time, sizeof(w->clf_time), "%d/%b/%Y:%H:%M:%S +0000", &tm);
    strftime(w->iso_time, sizeof(w->iso_time), "%Y-%m-%dT%H:%M:%SZ", &tm);
    w->log_sec = w->wall_sec;
}

/* Copy S into DST escaped: JSON style (\" \\ \u00XX) or nginx style (\xXX). */
static size_t escape(char *dst, size_t cap, const char *s, size_t n, bool json)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 7 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f) {
            if (json && (ch == '"' || ch == '\\'))
                o += (size_t)snprintf(dst + o, cap - o, "\\%c", ch);
            else if (json)
                o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", ch);
            else
                o += (size_t)snprintf(dst + o, cap - o, "\\x%02X", ch);
        } else {
            dst[o++] = (char)ch;
        }
    }
    dst[o] = 0;
    return o;
}

void access_log_exchange(struct worker *w, struct exchange *x)
{
    if (!w->cfg->access_log || (x->route && !x->route->access_log) || !x->status) return;
    times_update(w);
    bool json = w->cfg->access_log_format == LOG_FORMAT_JSON;
    char ip[64], req[1100], host[600], ref[600], ua[600], up[80];
    net_addr_ip(&x->c->peer.sa, ip, sizeof(ip));
    /* A request refused before its line was complete logs as "-". */
    if (x->log_req_len)
        escape(req, sizeof(req), x->log_req, x->log_req_len, json);
    else
        strcpy(req, "-");
    const char *meta = x->log_meta, *end = x->log_meta + x->log_meta_len;
    const char *f[3] = {"", "", ""};
    for (int i = 0; i < 3 && meta <= end; i++) {
        f[i] = meta;
        meta += strlen(meta) + 1;
    }
    escape(host, sizeof(host), f[0], strlen(f[0]), json);
    escape(ref, sizeof(ref), f[1], strlen(f[1]), json);
    escape(ua, sizeof(ua), f[2], strlen(f[2]), json);
    if (x->server)
        net_addr_str((const struct sockaddr *)&x->server->addr.ss, up, sizeof(up));
    else
        strcpy(up, "-");
    double rt = (double)(w->now - x->start_ms) / 1000.0;
    double ut = (double)x->upstream_ms / 1000.0;
    char line[4096];
    int n;
    if (json)
        n = snprintf(
            line, sizeof(line),
            "{\"time\":\"%s\",\"remote_addr\":\"%s\",\"host\":\"%s\",\"request\":\"%s\","
            "\"status\":%u,\"body_bytes_sent\":%llu,\"referer\":\"%s\",\"user_agent\":\"%s\","
            "\"upstream\":\"%s\",\"upstream_time\":%.3f,\"request_time\":%.3f,\"id\":\"%.*s\"}\n",
            w->iso_time, ip, host, req, x->status, (unsigned long long)x->resp_bytes, ref, ua, up,
            ut, rt, (int)x->rid_len, x->rid);
    else
        n = snprintf(line, sizeof(line),
                     "%s - - [%s] \"%s\" %u %llu \"%s\" \"%s\" upstream=%s upstream_time=%.3f "
                     "request_time=%.3f id=%.*s\n",
                     ip, w->clf_time, req, x->status, (unsigned long long)x->resp_bytes,
                     *ref ? ref : "-", *ua ? ua : "-", up, ut, rt, (int)x->rid_len, x->rid);
    if (n > 0) log_access_append(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}
