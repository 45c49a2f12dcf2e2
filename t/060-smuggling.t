# Request smuggling and malformed requests: every case gets 400, the
# connection is closed, and not one byte of it reaches the upstream.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;
use Upstream;

my $up = Upstream->new(name => 'app');

my $p = Portico->start(<<'EOF', upstreams => { app => $up });
[listener web]
listen = 127.0.0.1:{port}
header_timeout = 2s

[upstream app]
server = {up:app}

[route all]
upstream = app
EOF
my $port = $p->port;

my $H = "Host: h.test\r\n";
my @cases = (
    ['CL and TE both',
     "POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    ['TE and CL both (TE first)',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"],
    ['two different Content-Length',
     "POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"],
    ['two identical Content-Length',
     "POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"],
    ['Content-Length with +',
     "POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello"],
    ['Content-Length negative',
     "POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n"],
    ['Content-Length with a space inside',
     "POST / HTTP/1.1\r\n${H}Content-Length: 1 0\r\n\r\nhellohello"],
    ['Content-Length hex',
     "POST / HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\nhello"],
    ['Content-Length list',
     "POST / HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello"],
    ['Content-Length empty',
     "POST / HTTP/1.1\r\n${H}Content-Length: \r\n\r\n"],
    ['Content-Length with trailing letters',
     "POST / HTTP/1.1\r\n${H}Content-Length: 5a\r\n\r\nhello"],
    ['Content-Length overflow',
     "POST / HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\nhello"],
    ['Transfer-Encoding: chunked, identity',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"],
    ['Transfer-Encoding: identity',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n\r\nhello"],
    ['Transfer-Encoding: xchunked',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"],
    ['Transfer-Encoding: chunked, gzip (chunked not final)',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"],
    ['Transfer-Encoding: chunked, chunked',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"],
    ['two Transfer-Encoding headers, last not chunked',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"],
    ['Transfer-Encoding with obs-fold',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"],
    ['space before colon',
     "POST / HTTP/1.1\r\n${H}Content-Length : 5\r\n\r\nhello"],
    ['space before colon in Transfer-Encoding',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"],
    ['bare LF line endings',
     "GET / HTTP/1.1\nHost: h.test\n\n"],
    ['bare LF after a header',
     "GET / HTTP/1.1\r\n${H}X-A: 1\nX-B: 2\r\n\r\n"],
    ['bare CR inside a header line',
     "GET / HTTP/1.1\r\n${H}X-A: 1\rX-B: 2\r\n\r\n"],
    ['bare CR in the request line',
     "GET / HTTP/1.1\r${H}\r\n"],
    ['obs-fold continuation line',
     "GET / HTTP/1.1\r\n${H}X-Folded: a\r\n b\r\n\r\n"],
    ['obs-fold with a tab',
     "GET / HTTP/1.1\r\n${H}X-Folded: a\r\n\tb\r\n\r\n"],
    ['NUL in a header value',
     "GET / HTTP/1.1\r\n${H}X-Nul: a\0b\r\n\r\n"],
    ['control char in a header value',
     "GET / HTTP/1.1\r\n${H}X-Ctl: a\x01b\r\n\r\n"],
    ['control char in a header name',
     "GET / HTTP/1.1\r\n${H}X-C\x01tl: a\r\n\r\n"],
    ['DEL in a header name',
     "GET / HTTP/1.1\r\n${H}X-D\x7fel: a\r\n\r\n"],
    ['invalid header name character',
     "GET / HTTP/1.1\r\n${H}X\@Foo: bar\r\n\r\n"],
    ['space inside a header name',
     "GET / HTTP/1.1\r\n${H}X Foo: bar\r\n\r\n"],
    ['empty header name',
     "GET / HTTP/1.1\r\n${H}: bar\r\n\r\n"],
    ['header line without a colon',
     "GET / HTTP/1.1\r\n${H}NoColonHere\r\n\r\n"],
    ['invalid chunk size',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"],
    ['chunk size overflow',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n"],
    ['chunk size with trailing garbage',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5zz\r\nhello\r\n0\r\n\r\n"],
    ['chunk size with a sign',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"],
    ['missing CRLF after chunk data',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"],
    ['chunk size line with bare LF',
     "POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"],
    ['invalid method characters',
     "G(ET / HTTP/1.1\r\n${H}\r\n"],
    ['control char in the method',
     "GE\x01T / HTTP/1.1\r\n${H}\r\n"],
    ['Transfer-Encoding in an HTTP/1.0 request',
     "POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
    ['fragment in the request target',
     "GET /public#/../admin HTTP/1.1\r\n${H}\r\n"],
    ['two spaces in the request line',
     "GET  / HTTP/1.1\r\n${H}\r\n"],
    ['missing HTTP version',
     "GET /\r\n${H}\r\n"],
    ['garbage version',
     "GET / HTTX/1.1\r\n${H}\r\n"],
    ['space inside the target',
     "GET /a b HTTP/1.1\r\n${H}\r\n"],
    ['trailing space after the version',
     "GET / HTTP/1.1 \r\n${H}\r\n"],
    ['userinfo in an absolute-form target',
     "GET http://user\@h.test/ HTTP/1.1\r\n${H}\r\n"],
    ['HTTP/1.1 without Host',
     "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"],
    ['two Host headers',
     "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"],
    ['Host with a space inside',
     "GET / HTTP/1.1\r\nHost: a.test b.test\r\n\r\n"],
    ['smuggled second request behind CL+TE',
     "POST / HTTP/1.1\r\n${H}Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h.test\r\n\r\n"],
);

for my $case (@cases) {
    my ($name, $bytes) = @$case;
    my $c = Portico::Client->new($port) or BAIL_OUT("cannot connect: $!");
    $c->send($bytes);
    my $r = $c->read_response(timeout => T(5));
    is $r->status, 400, "$name: 400" or diag $r->summary;
    ok $c->closed(T(3)), "$name: connection closed";
    my @got = $up->received;
    ok !@got, "$name: nothing reached the upstream"
      or diag explain [map { $_->{head} // $_->{data} } @got];
    $up->reset_log;
}

cmp_ok scalar(@cases), '>=', 20, 'at least 20 cases';

# Still serving normally afterwards.
my $r = http_get($port, '/fine');
is $r->status, 200, 'a valid request still works';

$p->finish;
done_testing;
