/* The small common helpers: str (slices, tokens, word splitting), arena
 * (alignment, zeroing, growth, big blocks) and net (formatting, hashing,
 * parsing addresses, socket tuning). */
#include "t/unit/tap.h"
#include "common/arena.h"
#include "common/net.h"
#include "common/str.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <unistd.h>

static void test_str(void)
{
    ok(str_ieq("Content-Length", 14, "content-length"), "ieq ignores case");
    ok(!str_ieq("Content-Length", 13, "content-length"), "ieq compares lengths");
    ok(str_ieqn("AbC", 3, "aBc", 3), "ieqn");
    ok(!str_ieqn("abc", 3, "abd", 3), "ieqn differs");
    ok(!str_ieq("\xc3\x84", 2, "\xc3\xa4"), "no locale folding of non-ASCII");
    const char *list = " gzip, Chunked ,, x";
    ok(str_list_has(list, strlen(list), "chunked"), "list has a trimmed item");
    ok(str_list_has(list, strlen(list), "x"), "list has the last item");
    ok(!str_list_has(list, strlen(list), "chunk"), "no prefix match");
    ok(!str_list_has("", 0, "x"), "empty list");
    struct slice s = str_trim(" \t ab c\t ", 9);
    ok(s.n == 4 && memcmp(s.p, "ab c", 4) == 0, "trim both ends");
    s = str_trim("   ", 3);
    is_int(s.n, 0, "trim to nothing");
    ok(str_is_tchar('a') && str_is_tchar('~') && str_is_tchar('9'), "tchars");
    ok(!str_is_tchar(' ') && !str_is_tchar(':') && !str_is_tchar(0) && !str_is_tchar(0x80),
       "not tchars");
    ok(str_has_ctl("a\rb") && str_has_ctl("\x7f") && !str_has_ctl("a\tb"), "has_ctl");
    char buf[] = "  GET, HEAD  POST ,";
    char *cur = buf, *w;
    const char *want[] = {"GET", "HEAD", "POST"};
    int n = 0;
    while ((w = str_word_next(&cur, " ,")))
        ok(n < 3 && strcmp(w, want[n++]) == 0, "word %d", n);
    is_int(n, 3, "three words");
}

static void test_arena(void)
{
    struct arena *a = arena_new();
    ok(a != NULL, "arena_new");
    char *p = arena_alloc(a, 3), *q = arena_alloc(a, 1);
    ok(((uintptr_t)p & 15) == 0 && ((uintptr_t)q & 15) == 0, "16-byte aligned");
    ok(q >= p + 3 || q + 1 <= p, "no overlap");
    unsigned char *big = arena_alloc(a, 100000);
    int zero = 1;
    for (size_t i = 0; i < 100000; i++)
        zero &= big[i] == 0;
    ok(zero, "big block zeroed");
    memset(big, 0xff, 100000);
    unsigned char *after = arena_alloc(a, 64);
    ok(after && after[0] == 0 && after[63] == 0, "small block after a big one zeroed");
    is_str(arena_strdup(a, "hello"), "hello", "strdup");
    is_str(arena_strndup(a, "hello", 3), "hel", "strndup stops at n");
    is_str(arena_strndup(a, "hi", 10), "hi", "strndup stops at NUL");
    int *v = NULL;
    for (int i = 0; i < 1000; i++) {
        v = arena_grow(a, v, (size_t)i, sizeof(int));
        v[i] = i;
    }
    int good = 1;
    for (int i = 0; i < 1000; i++)
        good &= v[i] == i;
    ok(good, "grow keeps the elements");
    ok(arena_alloc(a, SIZE_MAX) == NULL, "huge request fails cleanly");
    ok(arena_grow(a, v, SIZE_MAX / 2, 4) == NULL, "overflowing grow fails cleanly");
    arena_free(a);
    arena_free(NULL);
    ok(1, "arena_free(NULL)");
}

static void test_net(void)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why;
    char buf[64];
    ok(net_addr_parse("10.1.2.3:8080", 0, &ss, &len, &why) == 0, "parse v4");
    net_addr_str((struct sockaddr *)&ss, buf, sizeof(buf));
    is_str(buf, "10.1.2.3:8080", "format v4");
    net_addr_ip((struct sockaddr *)&ss, buf, sizeof(buf));
    is_str(buf, "10.1.2.3", "ip v4");
    /* net_addr_ip formats IPv4 itself: every digit count, and a short buffer. */
    static const char *const quads[] = {"0.0.0.0", "255.255.255.255", "100.9.10.199", "1.20.250.7"};
    for (size_t i = 0; i < sizeof(quads) / sizeof(quads[0]); i++) {
        char in[32];
        snprintf(in, sizeof(in), "%s:1", quads[i]);
        net_addr_parse(in, 0, &ss, &len, &why);
        is_int((int)net_addr_ip((struct sockaddr *)&ss, buf, sizeof(buf)), (int)strlen(quads[i]),
               "ip v4 length");
        is_str(buf, quads[i], "ip v4 digits");
    }
    is_int((int)net_addr_ip((struct sockaddr *)&ss, buf, 8), 1, "ip v4 into a short buffer");
    is_str(buf, "-", "ip v4 into a short buffer: -");
    net_addr_parse("10.1.2.3:8080", 0, &ss, &len, &why);
    uint32_t h4 = net_addr_hash((struct sockaddr *)&ss);
    ok(net_addr_parse("[2001:db8::1]:443", 0, &ss, &len, &why) == 0, "parse v6");
    net_addr_str((struct sockaddr *)&ss, buf, sizeof(buf));
    is_str(buf, "[2001:db8::1]:443", "format v6");
    ok(net_addr_parse("[::ffff:10.1.2.3]:1", 0, &ss, &len, &why) == 0, "parse v4-mapped");
    is_int(net_addr_hash((struct sockaddr *)&ss), h4, "v4-mapped hashes like v4");
    ok(net_addr_parse("10.1.2.4:8080", 0, &ss, &len, &why) == 0, "parse another");
    ok(net_addr_hash((struct sockaddr *)&ss) != h4, "another address, another hash");
    is_int(net_addr_parse("nosuch.invalid:1", 1, &ss, &len, &why), -2, "unresolvable is -2");
    is_int(net_addr_parse("1.2.3.4", 1, &ss, &len, &why), -1, "malformed is -1");
    is_str(why, "missing :PORT", "reason");
    net_addr_parse("10.1.2.3:8080", 0, &ss, &len, &why);
    net_addr_str((struct sockaddr *)&ss, buf, 4);
    is_int(strlen(buf), 3, "format truncates to the buffer");

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    is_int(net_tune_stream(fd), 0, "tune a socket");
    ok(fcntl(fd, F_GETFL) & O_NONBLOCK, "non-blocking");
    int nd = 0;
    socklen_t sl = sizeof(nd);
    getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nd, &sl);
    ok(nd, "TCP_NODELAY");
    close(fd);
    is_int(net_tune_stream(-1), -1, "bad fd fails");
}

int main(void)
{
    test_str();
    test_arena();
    test_net();
    return tap_done();
}
