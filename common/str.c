/* Byte-string helpers on slices. ASCII only on purpose: HTTP tokens and
 * header names are ASCII, and locale-dependent tolower() must not change how
 * a request is parsed. */
#include "common/str.h"

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

bool str_ieqn(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn) return false;
    for (size_t i = 0; i < an; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return false;
    return true;
}

bool str_ieq(const char *a, size_t an, const char *b)
{
    return str_ieqn(a, an, b, strlen(b));
}

struct slice str_trim(const char *p, size_t n)
{
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return (struct slice){p, n};
}

bool str_list_has(const char *p, size_t n, const char *token)
{
    size_t tn = strlen(token);
    const char *end = p + n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        struct slice item = str_trim(p, (size_t)(stop - p));
        if (str_ieqn(item.p, item.n, token, tn)) return true;
        p = comma ? comma + 1 : end;
    }
    return false;
}

bool str_is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

bool str_has_ctl(const char *s)
{
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f) return true;
    return false;
}

char *str_word_next(char **cursor, const char *sep)
{
    char *s = *cursor + strspn(*cursor, sep);
    if (!*s) return NULL;
    size_t n = strcspn(s, sep);
    *cursor = s[n] ? s + n + 1 : s + n;
    s[n] = '\0';
    return s;
}
