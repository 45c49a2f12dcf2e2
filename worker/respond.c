/* Responses portico makes itself: errors, `return`, `redirect`. Each is one
 * contiguous buffer written with a single write. */
#include <stdio.h>
#include <string.h>

#include "worker/core.h"

const char *respond_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 418:
        return "I'm a teapot";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 200   ? "Informational"
               : status < 300 ? "OK"
               : status < 400 ? "Redirect"
               : status < 500 ? "Client Error"
                              : "Server Error";
    }
}

size_t respond_build(struct worker *w, struct buf *b, int status, const char *rid, size_t rid_len,
                     bool close, const char *extra_headers, const char *body, size_t body_len,
                     bool head)
{
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    int n = snprintf(b->data, b->cap,
                     "HTTP/1.1 %d %s\r\nServer: portico\r\nDate: %s\r\n%s%s%s"
                     "X-Request-ID: %.*s\r\n%s%s\r\n",
                     status, respond_reason(status), w->date,
                     no_body ? "" : "Content-Type: text/plain\r\n",
                     no_body ? "" : "Content-Length: ", "", (int)rid_len, rid,
                     extra_headers ? extra_headers : "", close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= b->cap) return 0;
    size_t len = (size_t)n;
    if (!no_body) {
        /* Content-Length goes in its slot: rebuild the head with the number. */
        n = snprintf(b->data, b->cap,
                     "HTTP/1.1 %d %s\r\nServer: portico\r\nDate: %s\r\n"
                     "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "X-Request-ID: %.*s\r\n%s%s\r\n",
                     status, respond_reason(status), w->date, body_len, (int)rid_len, rid,
                     extra_headers ? extra_headers : "", close ? "Connection: close\r\n" : "");
        if (n < 0 || (size_t)n >= b->cap) return 0;
        len = (size_t)n;
        if (!head) {
            if (len + body_len > b->cap) return 0;
            memcpy(b->data + len, body, body_len);
            len += body_len;
        }
    }
    return len;
}
