# Every error portico makes itself (400 404 405 408 413 414 431 502 503
# 504) is a short text/plain body carrying the request id.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;
use Upstream;

my $never = Upstream->new(name => 'never', never => 1);
my $dead = Upstream->refused(name => 'dead');
my $hold = Portico::test_dir() . '/release';
my $busy = Upstream->new(name => 'busy', hold => $hold);

my %opts = (upstreams => { never => $never, dead => $dead, busy => $busy },
            errors_ok => [qr/upstream|connect|refused|timed? ?out|fail|available|down/i]);
my $p = Portico->start(<<'EOF', %opts);
[listener web]
listen = 127.0.0.1:{port}
max_header_size = 1k
max_headers = 10
max_body_size = 100
header_timeout = 1s

[upstream dead]
server = {up:dead}
retries = 0

[upstream never]
server = {up:never}
read_timeout = 1s
retries = 0

[upstream busy]
server = {up:busy} max_conns=1
retries = 0

[route dead]
path = /dead/
upstream = dead

[route never]
path = /never/
upstream = never

[route busy]
path = /busy/
upstream = busy

[route ro]
path = /ro/
methods = GET
return = 200 ro

[route any]
path = /any/
return = 200 any
EOF
my $port = $p->port;

sub check {
    my ($r, $code, $name, $id) = @_;
    is $r->status, $code, "$name: $code" or diag $r->summary;
    like $r->header('content-type') // '', qr{^text/plain\b}, "$name: Content-Type text/plain";
    ok $r->{complete}, "$name: complete, well-framed response";
    ok length($r->body) > 0 && length($r->body) < 1024, "$name: short body";
    my $rid = $r->header('x-request-id');
    ok defined $rid && length $rid, "$name: X-Request-ID on the response";
    if (defined $id) {
        is $rid, $id, "$name: the client's request id";
    }
    ok defined $rid && index($r->body, $rid) >= 0, "$name: request id in the body"
      or diag $r->body;
}

sub raw {
    my ($bytes, %o) = @_;
    my $c = Portico::Client->new($port);
    $c->send($bytes);
    return $c->read_response(timeout => $o{timeout} // T(5));
}

check(raw("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\nHost: h\r\n\r\n"), 400, '400');
check(http_get($port, '/nowhere', headers => ['X-Request-ID: my-id-404']), 404, '404', 'my-id-404');
check(http_get($port, '/nowhere'), 404, '404 generated id');
check(http_request($port, 'POST', '/ro/x', body => 'x', headers => ['X-Request-ID: my-id-405']), 405, '405', 'my-id-405');
check(raw("GET /ro/x HTTP/1.1\r\nHost: h\r\nX-Part"), 408, '408');
check(http_request($port, 'POST', '/any/x', body => 'x' x 101, headers => ['X-Request-ID: my-id-413']), 413, '413', 'my-id-413');
check(raw("GET /" . ('x' x 2000) . " HTTP/1.1\r\nHost: h\r\n\r\n"), 414, '414');
check(raw("GET /ro/ HTTP/1.1\r\nHost: h\r\nX-Big: " . ('y' x 2000) . "\r\n\r\n"), 431, '431 size');
check(raw(build_request('GET', '/ro/', headers => [map { "X-N$_: 1" } 1 .. 15])), 431, '431 count');
check(http_get($port, '/dead/x', headers => ['X-Request-ID: my-id-502']), 502, '502', 'my-id-502');
check(http_get($port, '/never/x', headers => ['X-Request-ID: my-id-504']), 504, '504', 'my-id-504');

# Versions (RFC 9112 2.3): another major version gets 505 and the
# connection closes; a higher 1.x minor is served as HTTP/1.1.
check(raw("GET /ro/x HTTP/2.0\r\nHost: h\r\n\r\n"), 505, '505 HTTP/2.0');
check(raw("GET /ro/x HTTP/3.0\r\nHost: h\r\n\r\n"), 505, '505 HTTP/3.0');
{
    my $c = Portico::Client->new($port);
    $c->send("GET /ro/x HTTP/1.2\r\nHost: h\r\n\r\n");
    my $r = $c->read_response(timeout => T(5));
    is $r->status, 200, 'HTTP/1.2 served as 1.1' or diag $r->summary;
    is $r->body, 'ro', 'HTTP/1.2: the body';
    is $c->request('GET', '/ro/y')->status, 200, 'HTTP/1.2: kept alive like 1.1';
    check(raw("GET /ro/x HTTP/1.2\r\n\r\n"), 400, '400 HTTP/1.2 without Host');
}
# CONNECT is not tunnelled: 501, and the connection closes (what follows
# would be tunnel bytes). It was a 400 while on_headers_complete's status
# was lost to llhttp's own error code.
{
    my $c = Portico::Client->new($port);
    $c->send("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n\x16\x03\x01");
    my $r = $c->read_response(timeout => T(5));
    check($r, 501, '501 CONNECT');
    ok $c->closed(T(3)), 'CONNECT: connection closed after the 501';
}

# 503: max_conns reached.
{
    unlink $hold;
    my $c = Portico::Client->new($port);
    $c->send(build_request('GET', '/busy/1'));
    wait_for(sub { $busy->heads >= 1 }, T(5));
    check(http_get($port, '/busy/2', headers => ['X-Request-ID: my-id-503']), 503, '503', 'my-id-503');
    write_file($hold, '');
    is $c->read_response->status, 200, 'held request completes';
}

# HEAD to an error: no body, but the headers.
{
    my $r = http_request($port, 'HEAD', '/nowhere');
    is $r->status, 404, 'HEAD 404';
    is $r->body, '', 'HEAD 404 has no body';
    my $r2 = $r->conn->request('GET', '/ro/x');
    is $r2->status, 200, 'connection in sync after HEAD 404';
}

$p->finish;
done_testing;
