# Limits and timeouts of a listener: 414, 431 (size and count), 413,
# 408 on header_timeout, idle_timeout closing keep-alive connections.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Portico;
use Upstream;

my $up = Upstream->new(name => 'app');

my $p = Portico->start(<<'EOF', upstreams => { app => $up });
[listener web]
listen = 127.0.0.1:{port}
max_header_size = 2k
max_headers = 20
max_body_size = 1k
header_timeout = 1s
idle_timeout = 1s
body_timeout = 1s
send_timeout = 1s

[upstream app]
server = {up:app}

[route all]
upstream = app
EOF
my $port = $p->port;

sub nothing_upstream {
    my ($name) = @_;
    my @got = $up->received;
    ok !@got, "$name: nothing reached the upstream"
      or diag explain [map { $_->{head} // $_->{data} } @got];
    $up->reset_log;
}

sub raw {
    my ($bytes) = @_;
    my $c = Portico::Client->new($port);
    $c->send($bytes);
    my $r = $c->read_response(timeout => T(5));
    return ($r, $c);
}

# Within limits works.
{
    my ($r) = raw(build_request('GET', '/ok', headers => [map { "X-H$_: v" } 1 .. 10]));
    is $r->status, 200, 'request within limits' or diag $r->summary;
    $up->reset_log;
}

# A long target that fits is forwarded intact.
{
    my $t = '/long/' . join('/', map { "seg$_" } 1 .. 200);
    $t = substr($t, 0, 1500);
    my ($r) = raw("GET $t HTTP/1.1\r\nHost: h.test\r\n\r\n");
    is $r->status, 200, 'a 1500-byte target under max_header_size' or diag $r->summary;
    my ($q) = $up->requests;
    is $q->{target}, $t, 'forwarded intact';
    $up->reset_log;
}

# Request line too long: 414.
{
    my ($r, $c) = raw("GET /" . ('a' x 3000) . " HTTP/1.1\r\nHost: h.test\r\n\r\n");
    is $r->status, 414, 'request line over max_header_size: 414' or diag $r->summary;
    ok $c->closed(T(3)), '414: connection closed';
    nothing_upstream('414');
}

# Headers too big: 431.
{
    my ($r, $c) = raw("GET /x HTTP/1.1\r\nHost: h.test\r\nX-Big: " . ('b' x 3000) . "\r\n\r\n");
    is $r->status, 431, 'header over max_header_size: 431' or diag $r->summary;
    ok $c->closed(T(3)), '431: connection closed';
    nothing_upstream('431 size');

    # many headers that together are too big
    ($r, $c) = raw("GET /x HTTP/1.1\r\nHost: h.test\r\n" . join('', map { "X-M$_: " . ('m' x 150) . "\r\n" } 1 .. 15) . "\r\n");
    is $r->status, 431, 'headers together over max_header_size: 431' or diag $r->summary;
    nothing_upstream('431 total size');
}

# Too many headers: 431.
{
    my ($r, $c) = raw(build_request('GET', '/x', headers => [map { "X-H$_: v" } 1 .. 25]));
    is $r->status, 431, 'more than max_headers: 431' or diag $r->summary;
    ok $c->closed(T(3)), '431: connection closed';
    nothing_upstream('431 count');
}

# Body over max_body_size (Content-Length): 413, nothing upstream.
{
    my $c = Portico::Client->new($port);
    $c->send("POST /big HTTP/1.1\r\nHost: h.test\r\nContent-Length: 1000000\r\n\r\n");
    my $r = $c->read_response(timeout => T(5));
    is $r->status, 413, 'Content-Length over max_body_size: 413 before the body' or diag $r->summary;
    nothing_upstream('413');

    my ($r2) = raw(build_request('POST', '/big2', body => 'x' x 1025));
    is $r2->status, 413, 'body of max_body_size + 1: 413';
    nothing_upstream('413 +1');

    my ($r3) = raw(build_request('POST', '/fits', body => 'x' x 1024));
    is $r3->status, 200, 'body of exactly max_body_size passes';
    $up->reset_log;
}

# Chunked body over max_body_size: 413 and no complete request upstream.
{
    my ($r, $c) = raw(build_request('POST', '/bigchunked', body => 'y' x 4000, chunked => 1, chunk_size => 500));
    is $r->status, 413, 'chunked body over max_body_size: 413' or diag $r->summary;
    ok !$up->requests, 'no complete request upstream';
    $up->reset_log;
}

# header_timeout: a partial head gets 408, then the connection is closed.
{
    my $c = Portico::Client->new($port);
    my $t0 = time;
    $c->send("GET /slow HTTP/1.1\r\nHost: h.test\r\nX-Partial: ");
    my $r = $c->read_response(timeout => T(6));
    my $dt = time - $t0;
    is $r->status, 408, 'partial head: 408 after header_timeout' or diag $r->summary;
    ok $dt >= 0.8, sprintf('not before the timeout (%.2fs)', $dt);
    ok $c->closed(T(3)), '408: connection closed';
    nothing_upstream('408');

    # A head trickled byte by byte is bounded by header_timeout too.
    $c = Portico::Client->new($port);
    $t0 = time;
    my $head = "GET /trickle HTTP/1.1\r\nHost: h.test\r\nX-A: " . ('a' x 100) . "\r\n\r\n";
    my $closed = 0;
    for my $i (0 .. length($head) - 1) {
        last unless $c->send(substr($head, $i, 1));
        sleep 0.05;
        if ($c->closed(0)) { $closed = 1; last }
        last if length $c->buffered;
        last if time - $t0 > T(6);
    }
    $r = $c->read_response(timeout => T(3));
    ok time - $t0 < T(5), 'slowloris head cut off by header_timeout';
    is $r->status, 408, 'slowloris: 408' or diag $r->summary;
    nothing_upstream('slowloris');
}

# idle_timeout: an idle keep-alive connection is closed.
{
    my $c = Portico::Client->new($port);
    my $r = $c->request('GET', '/idle');
    is $r->status, 200, 'request before idling';
    my $t0 = time;
    ok $c->closed(T(5)), 'idle keep-alive connection closed';
    my $dt = time - $t0;
    ok $dt >= 0.8, sprintf('not before idle_timeout (%.2fs)', $dt);
    is $c->buffered, '', 'closed without sending anything';

    # A fresh connection that sends nothing is closed too.
    my $c2 = Portico::Client->new($port);
    ok $c2->closed(T(5)), 'silent new connection closed';
    $up->reset_log;
}

# The client-side timeouts do not fire while the upstream is working.
{
    my $c = Portico::Client->new($port);
    my $r = $c->request('GET', '/slow-upstream', headers => ['X-Up-Delay: 2.5'], timeout => T(10));
    is $r->status, 200, 'slow upstream (2.5 s) answered despite 1 s client timeouts' or diag $r->summary;
    my $r2 = $c->request('POST', '/slow-upstream-post', body => 'abc', headers => ['X-Up-Delay: 2.5'], timeout => T(10));
    is $r2->status, 200, 'same for a request with a body' or diag $r2->summary;
    $up->reset_log;
}

# send_timeout: a client that stops reading is dropped.
{
    my $c = Portico::Client->new($port);
    setsockopt($c->sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 65536);
    $c->send(build_request('GET', '/huge', headers => ['X-Up-Size: 40000000']));
    sleep 3.5;
    my $r = $c->read_response(timeout => T(20));
    ok !$r->{complete}, 'a client that does not read for longer than send_timeout does not get the whole body';
    ok length($r->body) < 40000000, 'short body (' . length($r->body) . ' bytes)';
    ok $c->{eof}, 'connection closed by portico';
    $up->reset_log;
}

# body_timeout: a body that stops arriving.
{
    my $c = Portico::Client->new($port);
    $c->send("POST /stall HTTP/1.1\r\nHost: h.test\r\nContent-Length: 100\r\n\r\n0123456789");
    my $r = $c->read_response(timeout => T(6));
    ok $c->closed(T(5)) || $r->status >= 400, 'stalled body: error or close after body_timeout';
    ok !$up->requests, 'no complete request upstream';
}

$p->expect_errors(qr/upstream|body|timeout|timed out|reset|closed/i);
$p->finish;
done_testing;
