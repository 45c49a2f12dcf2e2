# Keep-alive: many requests per client connection, upstream connection
# reuse, HTTP/1.0, Connection: close, max_requests, pipelining.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;
use Upstream;

my $up = Upstream->new(name => 'app', echo => 1);
my $nopool = Upstream->new(name => 'nopool');
my $short = Upstream->new(name => 'short');

my $p = Portico->start(<<'EOF', upstreams => { app => $up, nopool => $nopool, short => $short });
[listener web]
listen = 127.0.0.1:{port}

[listener limited]
listen = 127.0.0.1:{port:limited}
max_requests = 3

[upstream app]
server = {up:app}

[upstream nopool]
server = {up:nopool}
keepalive = 0

[upstream short]
server = {up:short}
keepalive_timeout = 1s

[route nopool]
path = /nopool/
upstream = nopool

[route short]
path = /short/
upstream = short

[route local]
path = /local/
return = 200 local

[route all]
upstream = app
EOF
my $port = $p->port;

# Many requests on one client connection.
{
    my $c = Portico::Client->new($port);
    my $ok = 0;
    for my $i (1 .. 50) {
        my $r = $c->request('GET', "/many/$i");
        $ok++ if $r->status == 200 && $r->body =~ m{"target":"/many/$i"};
    }
    is $ok, 50, '50 requests on one client connection';
    ok !$c->closed(0.2), 'connection still open';
    my $conns = $up->connections;
    ok $conns < 50, "upstream connections reused ($conns connections for 50 requests)";
    ok $conns <= 2, 'sequential requests use at most 2 upstream connections';
}

# Upstream reuse across client connections.
{
    $up->reset_log;
    for my $i (1 .. 10) {
        my $r = http_get($port, "/new-client/$i");
        $r->conn->close;
    }
    my $conns = $up->connections;
    is $up->request_count, 10, '10 requests reached the upstream';
    ok $conns < 10, "upstream pool shared by client connections ($conns connections)";
}

# keepalive = 0: no upstream connection is kept.
{
    my $c = Portico::Client->new($port);
    my $ok = 0;
    for my $i (1 .. 5) { $ok++ if $c->request('GET', "/nopool/$i")->status == 200 }
    is $ok, 5, 'keepalive = 0: requests served';
    is $nopool->connections, 5, 'keepalive = 0: one upstream connection per request';
    ok wait_for(sub { $nopool->active == 0 }, T(3)), 'keepalive = 0: no upstream connection left open';
}

# keepalive_timeout: an idle pooled upstream connection is closed.
{
    my $r = http_get($port, '/short/x');
    is $r->status, 200, 'keepalive_timeout: request served';
    ok wait_for(sub { $short->active == 1 }, T(2)), 'pooled upstream connection open';
    ok wait_for(sub { $short->active == 0 }, T(5)), 'pooled upstream connection closed after keepalive_timeout';
    my $r2 = $r->conn->request('GET', '/short/y');
    is $r2->status, 200, 'next request opens a new one';
    is $short->connections, 2, 'two upstream connections in all';
}

# HTTP/1.0 without keep-alive: response, then close.
{
    my $c = Portico::Client->new($port);
    $c->send("GET /ten HTTP/1.0\r\nHost: h.test\r\n\r\n");
    my $r = $c->read_response;
    is $r->status, 200, 'HTTP/1.0 request' or diag $r->summary;
    ok $r->{complete}, 'complete response';
    like $r->body, qr{"target":"/ten"}, 'HTTP/1.0 body';
    isnt $r->framing, 'chunked', 'no chunked encoding to an HTTP/1.0 client';
    ok $c->closed(T(3)), 'connection closed after the HTTP/1.0 response';

    # HTTP/1.0, upstream close-delimited: the body still arrives whole.
    $c = Portico::Client->new($port);
    $c->send("GET /ten-cd HTTP/1.0\r\nHost: h.test\r\nX-Up-Close-Delimited: 1\r\nX-Up-Size: 3000\r\nX-Up-Echo: 0\r\n\r\n");
    $r = $c->read_response;
    is $r->status, 200, 'HTTP/1.0 request, close-delimited upstream response';
    bytes_is $r->body, Upstream::pattern(3000), 'HTTP/1.0: body intact';
    isnt $r->framing, 'chunked', 'HTTP/1.0: not chunked' or diag $r->summary;
    ok $c->closed(T(3)), 'closed afterwards'
      or diag $r->summary . "\nthen: " . $c->buffered . ($c->read_all(1) // '');

    # return route over HTTP/1.0
    $c = Portico::Client->new($port);
    $c->send("GET /local/x HTTP/1.0\r\n\r\n");
    $r = $c->read_response;
    is $r->status, 200, 'HTTP/1.0 request without Host to a return route';
    ok $c->closed(T(3)), 'closed afterwards';
}

# HTTP/1.0 with Connection: keep-alive (ab -k): keep-alive is optional, but
# the answer must be consistent: keep-alive announced and a length, or closed.
for my $path ('/local/k', '/k10') {
    my $c = Portico::Client->new($port);
    $c->send("GET $path HTTP/1.0\r\nHost: h.test\r\nConnection: keep-alive\r\n\r\n");
    my $r = $c->read_response;
    is $r->status, 200, "HTTP/1.0 keep-alive request $path";
    isnt $r->framing, 'chunked', 'not chunked to HTTP/1.0';
    if (($r->header('connection') // '') =~ /keep-alive/i) {
        is $r->framing, 'length', 'keep-alive announced: Content-Length given';
        my $r2 = $c->request('GET', $path, version => '1.0', headers => ['Connection: keep-alive']);
        is $r2->status, 200, 'second HTTP/1.0 request on the kept connection';
    } else {
        ok $c->closed(T(3)), 'no keep-alive announced: connection closed';
    }
}

# Connection: close from the client.
{
    my $c = Portico::Client->new($port);
    my $r = $c->request('GET', '/bye', headers => ['Connection: close']);
    is $r->status, 200, 'request with Connection: close';
    like $r->header('connection') // '', qr/close/i, 'response says Connection: close';
    ok $c->closed(T(3)), 'connection closed';
}

# max_requests.
{
    my $c = Portico::Client->new($p->port('limited'));
    for my $i (1 .. 2) {
        my $r = $c->request('GET', "/local/$i");
        is $r->status, 200, "max_requests: request $i";
        unlike $r->header('connection') // '', qr/close/i, "request $i: no Connection: close";
    }
    my $r = $c->request('GET', '/local/3');
    is $r->status, 200, 'max_requests: request 3';
    like $r->header('connection') // '', qr/close/i, 'request 3: Connection: close';
    ok $c->closed(T(3)), 'closed after max_requests';
}

# Pipelining: three requests in one write, answered in order, even when the
# first one is slow upstream.
{
    my $c = Portico::Client->new($port);
    $c->send(build_request('GET', '/p1', headers => ['X-Up-Delay: 0.5'])
      . build_request('GET', '/p2') . build_request('GET', '/p3'));
    for my $i (1 .. 3) {
        my $r = $c->read_response;
        is $r->status, 200, "pipelined response $i";
        like $r->body, qr{"target":"/p$i"}, "pipelined response $i in order";
    }
    # mixed: local, proxied with a body, local
    $c->send(build_request('GET', '/local/a')
      . build_request('POST', '/pb', body => 'pipelined-body')
      . build_request('GET', '/local/c', headers => ['Connection: close']));
    my $r = $c->read_response;
    like $r->body, qr/^local/, 'mixed pipeline 1';
    $r = $c->read_response;
    like $r->body, qr{"target":"/pb"}, 'mixed pipeline 2';
    like $r->body, qr{"body":"pipelined-body"}, 'mixed pipeline 2 body';
    $r = $c->read_response;
    like $r->body, qr/^local/, 'mixed pipeline 3';
    ok $c->closed(T(3)), 'closed after the last pipelined request with Connection: close';
}

# 50 requests pipelined in one write, GETs and POSTs, all answered in order.
{
    my $c = Portico::Client->new($port);
    my $raw = join '', map {
        $_ % 3 ? build_request('GET', "/pipe/$_") : build_request('POST', "/pipe/$_", body => "body-$_")
    } 1 .. 50;
    $c->send($raw);
    my $in_order = 0;
    for my $i (1 .. 50) {
        my $r = $c->read_response;
        $in_order++ if $r->status == 200 && $r->body =~ m{"target":"/pipe/$i"};
    }
    is $in_order, 50, '50 pipelined requests answered in order';
}

# Nothing after a request with Connection: close is processed.
{
    $up->reset_log;
    my $c = Portico::Client->new($port);
    $c->send(build_request('GET', '/last', headers => ['Connection: close'])
      . build_request('GET', '/after-last'));
    my $r = $c->read_response;
    is $r->status, 200, 'request with Connection: close answered';
    ok $c->closed(T(3)), 'then closed';
    is $c->buffered, '', 'no second response';
    ok !grep({ $_->{target} eq '/after-last' } $up->heads), 'the request after it never reached the upstream';
}

# A valid request followed by garbage: the first is answered, then 400.
{
    my $c = Portico::Client->new($port);
    $c->send(build_request('GET', '/valid') . "GARBAGE\r\n\r\n");
    my $r = $c->read_response;
    is $r->status, 200, 'valid pipelined request answered';
    like $r->body, qr{"target":"/valid"}, 'with its own response';
    $r = $c->read_response;
    is $r->status, 400, 'the garbage after it gets 400';
    ok $c->closed(T(3)), 'and the connection is closed';
}

$p->finish;
done_testing;
