# Bodies both ways: Content-Length and chunked requests, 10 MiB up and down,
# chunked and close-delimited responses, no body for HEAD/204/304, and
# Expect: 100-continue.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::MD5 qw(md5_hex);
use Time::HiRes qw(sleep);
use Portico;
use Upstream;

my $up = Upstream->new(name => 'app');

my $p = Portico->start(<<'EOF', upstreams => { app => $up });
[listener web]
listen = 127.0.0.1:{port}
max_body_size = 20m

[upstream app]
server = {up:app}

[route all]
upstream = app

[route small]
path = /small/
upstream = app
max_body_size = 1k
EOF
my $port = $p->port;

sub last_req { my @r = $up->requests; return $r[-1] }

sub framing_ok {
    my ($q, $name) = @_;
    my $cl = scalar $q->header_values('content-length');
    my $te = scalar $q->header_values('transfer-encoding');
    ok !($cl && $te), "$name: never both Content-Length and Transfer-Encoding upstream";
    ok $cl <= 1, "$name: at most one Content-Length upstream";
    if ($te) {
        is lc $q->header('transfer-encoding'), 'chunked', "$name: Transfer-Encoding is chunked";
    }
}

# Content-Length body.
{
    my $body = join '', map { chr(($_ * 7) % 256) } 0 .. 999;
    my $r = http_request($port, 'POST', '/cl', body => $body);
    is $r->status, 200, 'POST with Content-Length' or diag $r->summary;
    my $q = last_req();
    is $q->{method}, 'POST', 'method';
    is $q->{body_len}, 1000, 'body length upstream';
    bytes_is $q->{body}, $body, 'body bytes intact (binary)';
    is $q->header('content-length'), '1000', 'forwarded with Content-Length';
    ok !$q->has_header('transfer-encoding'), 'no Transfer-Encoding upstream';
    framing_ok($q, 'CL body');
}

# Empty POST.
{
    my $r = http_request($port, 'POST', '/empty', body => '');
    is $r->status, 200, 'POST with Content-Length: 0';
    my $q = last_req();
    is $q->{body_len}, 0, 'empty body upstream';
    framing_ok($q, 'empty body');
}

# Chunked request body.
{
    my $body = "chunk-data-" x 500;
    my $raw = "POST /chunked HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n"
      . "10\r\n" . substr($body, 0, 16) . "\r\n"
      . sprintf("%x;ext=1\r\n", length($body) - 16) . substr($body, 16) . "\r\n"
      . "0\r\n\r\n";
    my $c = Portico::Client->new($port);
    $c->send($raw);
    my $r = $c->read_final;
    is $r->status, 200, 'chunked POST' or diag $r->summary;
    my $q = last_req();
    is $q->{body_len}, length $body, 'chunked body length upstream';
    is $q->{body_md5}, md5_hex($body), 'chunked body intact';
    framing_ok($q, 'chunked body');
    my $r2 = $c->request('GET', '/after-chunked');
    is $r2->status, 200, 'keep-alive after a chunked request';
    is last_req()->{target}, '/after-chunked', 'next request framed right';
}

# Chunked request body with trailers.
{
    my $raw = "POST /trailers HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n"
      . "5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n";
    my $c = Portico::Client->new($port);
    $c->send($raw);
    my $r = $c->read_final;
    is $r->status, 200, 'chunked POST with trailers' or diag $r->summary;
    is last_req()->{body}, 'hello', 'body with trailers intact';
    ok !defined last_req()->header('x-trailer'), 'a trailer in the same read is not forwarded as a header';
    my $r2 = $c->request('GET', '/after-trailers');
    is $r2->status, 200, 'keep-alive after trailers';
}

# Trailer fields are never forwarded as header fields, and a long trailer
# that arrives over several reads, after the buffer was compacted, is
# parsed safely (found by fuzz_request: stale offsets read past the buffer).
{
    my $body = 'b' x 70000;
    my $c = Portico::Client->new($port);
    $c->send("POST /trailers2 HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n"
      . sprintf("%x\r\n%s\r\n", length $body, $body) . "0\r\nX-Long-Trailer: ");
    sleep 0.2;
    $c->send(('t' x 3000) . "\r\nHost: evil.test\r\n\r\n");
    my $r = $c->read_final;
    is $r->status, 200, 'chunked POST with a long trailer split over reads' or diag $r->summary;
    my $q = last_req();
    is length($q->{body}), 70000, 'body intact';
    ok !defined $q->header('x-long-trailer'), 'trailer not forwarded as a header';
    is $q->header('host'), 'h.test', 'a Host trailer does not replace the Host header';
    is $c->request('GET', '/after-long-trailer')->status, 200, 'keep-alive after the long trailer';
}

# Valid variants that must not be refused: a tab as OWS, TE case.
{
    my $c = Portico::Client->new($port);
    $c->send("POST /tab HTTP/1.1\r\nHost: h.test\r\nContent-Length:\t5\r\n\r\nhello");
    my $r = $c->read_final;
    is $r->status, 200, 'Content-Length with a tab as whitespace' or diag $r->summary;
    is last_req()->{body}, 'hello', 'body forwarded';
    $c->send("POST /te-case HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    $r = $c->read_final;
    is $r->status, 200, 'Transfer-Encoding: Chunked (case-insensitive)' or diag $r->summary;
    is last_req()->{body}, 'hello', 'body forwarded';
}

# Many one-byte chunks; chunk extensions with quoted strings.
{
    my $body = join '', map { chr(65 + $_ % 26) } 0 .. 4999;
    my $raw = "POST /tiny-chunks HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n"
      . join('', map { "1\r\n$_\r\n" } split //, $body) . "0\r\n\r\n";
    my $c = Portico::Client->new($port);
    $c->send($raw);
    my $r = $c->read_final;
    is $r->status, 200, '5000 one-byte chunks' or diag $r->summary;
    bytes_is last_req()->{body}, $body, 'reassembled';

    $raw = "POST /chunk-ext HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n"
      . "5;name=\"quoted;value\"\r\nhello\r\n6;a=b;c\r\n world\r\n0\r\n\r\n";
    $c->send($raw);
    $r = $c->read_final;
    is $r->status, 200, 'chunk extensions accepted' or diag $r->summary;
    is last_req()->{body}, 'hello world', 'chunk extensions stripped from the body';
}

# Chunked body sent slowly in pieces.
{
    my $c = Portico::Client->new($port);
    my $raw = build_request('PUT', '/slow', body => 'x' x 3000, chunked => 1, chunk_size => 700);
    $c->send_slowly($raw, 500, 0.05);
    my $r = $c->read_final;
    is $r->status, 200, 'chunked body sent in pieces';
    bytes_is last_req()->{body}, 'x' x 3000, 'pieces reassembled';
}

# 10 MiB upload with Content-Length, then chunked.
my $ten = 10 * 1024 * 1024;
my $big = Upstream::pattern($ten);
my $big_md5 = md5_hex($big);
{
    my $c = Portico::Client->new($port);
    my $r = $c->request('POST', '/upload', body => $big, timeout => T(60));
    is $r->status, 200, '10 MiB upload (Content-Length)' or diag $r->summary;
    my $q = last_req();
    is $q->{body_len}, $ten, '10 MiB arrived upstream';
    is $q->{body_md5}, $big_md5, '10 MiB upload intact';
    framing_ok($q, '10 MiB CL upload');

    $r = $c->request('POST', '/upload-chunked', body => $big, chunked => 1, chunk_size => 100000,
                     timeout => T(60));
    is $r->status, 200, '10 MiB upload (chunked)' or diag $r->summary;
    $q = last_req();
    is $q->{body_len}, $ten, '10 MiB chunked arrived upstream';
    is $q->{body_md5}, $big_md5, '10 MiB chunked upload intact';
    framing_ok($q, '10 MiB chunked upload');
}

# 10 MiB download, with Content-Length and chunked.
{
    my $c = Portico::Client->new($port);
    my $r = $c->request('GET', '/download', headers => ["X-Up-Size: $ten"], timeout => T(60));
    is $r->status, 200, '10 MiB download' or diag $r->summary;
    is length $r->body, $ten, '10 MiB download length';
    is md5_hex($r->body), $big_md5, '10 MiB download intact';
    is $r->header('content-length'), $ten, 'Content-Length passed through';

    $r = $c->request('GET', '/download-chunked', headers => ["X-Up-Size: $ten", 'X-Up-Chunked: 1'],
                     timeout => T(60));
    is $r->status, 200, '10 MiB chunked download' or diag $r->summary;
    is length $r->body, $ten, '10 MiB chunked download length';
    is md5_hex($r->body), $big_md5, '10 MiB chunked download intact';
    ok !(defined $r->header('content-length') && defined $r->header('transfer-encoding')),
      'response never has both framings';
}

# Small chunked response.
{
    my $r = http_get($port, '/chunked-resp', headers => ['X-Up-Chunked: 1', 'X-Up-Size: 5000', 'X-Up-Chunk: 100']);
    is $r->status, 200, 'chunked response';
    bytes_is $r->body, Upstream::pattern(5000), 'chunked response body intact';
    my $r2 = $r->conn->request('GET', '/after');
    is $r2->status, 200, 'keep-alive after a chunked response';
}

# Close-delimited upstream response to an HTTP/1.1 client: delivered intact,
# chunked, and the client connection stays open.
{
    my $c = Portico::Client->new($port);
    my $r = $c->request('GET', '/close-delimited', headers => ['X-Up-Close-Delimited: 1', 'X-Up-Size: 100000']);
    is $r->status, 200, 'close-delimited upstream response' or diag $r->summary;
    ok $r->{complete}, 'complete response' or diag "error: " . ($r->error // '') . '; ' . substr($r->summary, 0, 300);
    bytes_is $r->body, Upstream::pattern(100000), 'close-delimited body intact';
    is $r->framing, 'chunked', 'delivered chunked to the HTTP/1.1 client';
    my $r2 = $c->request('GET', '/after-close-delimited');
    is $r2->status, 200, 'client connection kept alive';
}

# HEAD, 204, 304: no body, and the connection stays in sync.
{
    my $c = Portico::Client->new($port);
    my $r = $c->request('HEAD', '/head', headers => ['X-Up-Size: 1000']);
    is $r->status, 200, 'HEAD proxied';
    is $r->header('content-length'), '1000', 'HEAD keeps the Content-Length';
    ok !length $c->buffered, 'HEAD: no body bytes';
    is last_req()->{method}, 'HEAD', 'upstream got HEAD';

    $r = $c->request('GET', '/no-content', headers => ['X-Up-Status: 204']);
    is $r->status, 204, '204 proxied';
    ok !defined $r->header('transfer-encoding'), '204 without Transfer-Encoding';
    ok !length $c->buffered, '204: no body bytes';

    $r = $c->request('GET', '/not-modified', headers => ['X-Up-Status: 304', 'If-None-Match: "x"']);
    is $r->status, 304, '304 proxied';
    ok !defined $r->header('transfer-encoding'), '304 without Transfer-Encoding';
    ok !length $c->buffered, '304: no body bytes';

    $r = $c->request('GET', '/sync');
    is $r->status, 200, 'next request on the same connection';
    is $r->body, "hello from app\n", 'and its body is right';
    ok $c->closed(0.3) == 0, 'connection still open';
}

# Expect: 100-continue.
{
    my $c = Portico::Client->new($port);
    $c->send("POST /expect HTTP/1.1\r\nHost: h.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    my $r = $c->read_response(timeout => T(5));
    is $r->status, 100, 'Expect: 100-continue gets 100 Continue' or diag $r->summary;
    like $r->head, qr{^HTTP/1\.1 100 Continue\r\n}, '100 status line';
    $c->send('hello world');
    $r = $c->read_final;
    is $r->status, 200, 'then the final response' or diag $r->summary;
    is last_req()->{body}, 'hello world', 'body forwarded after 100';

    # Over max_body_size: the final status instead of 100, nothing upstream.
    my $before = $up->request_count;
    my $c2 = Portico::Client->new($port);
    $c2->send("POST /small/x HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
    my $r2 = $c2->read_response(timeout => T(5));
    is $r2->status, 413, 'Expect with a too big body: 413 without 100' or diag $r2->summary;
    is $up->request_count, $before, 'nothing reached the upstream';
}

# Route max_body_size.
{
    my $r = http_request($port, 'POST', '/small/ok', body => 'x' x 1024);
    is $r->status, 200, 'body at the route limit passes';
    $r = http_request($port, 'POST', '/small/big', body => 'x' x 1025);
    is $r->status, 413, 'body over the route limit: 413';
}

$p->finish;
done_testing;
