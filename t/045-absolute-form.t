# Absolute-form request targets route by their authority; the upstream gets
# origin-form and the authority as Host (RFC 9112 3.2.2).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;
use Upstream;

my $ex = Upstream->new(name => 'example');

my $p = Portico->start(<<'EOF', upstreams => { ex => $ex });
[listener web]
listen = 127.0.0.1:{port}

[upstream ex]
server = {up:ex}

[route example]
host = example.com
upstream = ex

[route other]
return = 200 other
EOF
my $port = $p->port;

sub last_req { my @r = $ex->requests; return $r[-1] }

{
    my $c = Portico::Client->new($port);
    $c->send("GET http://example.com/path?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    my $r = $c->read_response;
    is $r->status, 200, 'absolute-form request' or diag $r->summary;
    is $r->header('x-backend'), 'example', 'routed by the authority';
    my $q = last_req();
    is $q->{target}, '/path?x=1', 'upstream got origin-form';
    is $q->header('host'), 'example.com', 'upstream Host is the authority';
}

{
    # The Host header is ignored when the target is absolute.
    my $c = Portico::Client->new($port);
    $c->send("GET http://example.com/p2 HTTP/1.1\r\nHost: other.test\r\n\r\n");
    my $r = $c->read_response;
    is $r->status, 200, 'absolute-form with a different Host header';
    is $r->header('x-backend'), 'example', 'routed by the target, not the Host header';
    my $q = last_req();
    is $q->{target}, '/p2', 'origin-form upstream';
    is $q->header('host'), 'example.com', 'Host replaced by the authority';
    is scalar(my @h = $q->header_values('host')), 1, 'exactly one Host upstream';
    is $q->header('x-forwarded-host'), 'example.com', 'X-Forwarded-Host is the authority';
}

{
    my $c = Portico::Client->new($port);
    $c->send("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    my $r = $c->read_response;
    is $r->status, 200, 'absolute-form without a path';
    is $r->header('x-backend'), 'example', 'absolute-form without a path: routed by the authority';
    is last_req()->{target}, '/', 'empty path becomes /';
}

{
    my $c = Portico::Client->new($port);
    $c->send("GET http://Example.COM:8080/with-port HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
    my $r = $c->read_response;
    is $r->status, 200, 'absolute-form with a port';
    is $r->header('x-backend'), 'example', 'routed by the host part';
    is last_req()->{target}, '/with-port', 'origin-form upstream';
    like last_req()->header('host'), qr/^example\.com:8080$/i, 'Host carries the port';
}

{
    my $c = Portico::Client->new($port);
    $c->send("GET http://elsewhere.test/x HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n");
    my $r = $c->read_response;
    is $r->status, 200, 'absolute-form to another host';
    like $r->body, qr/^other\n?$/, 'routed to the catch-all';
}

# The asterisk-form (RFC 9112 3.2.4): OPTIONS * asks about the server as a
# whole, so portico answers it itself (200, no body) and forwards nothing;
# with any other method it is a 400.
{
    my $before = scalar $ex->requests;
    my $c = Portico::Client->new($port);
    $c->send("OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n");
    my $r = $c->read_response;
    is $r->status, 200, 'OPTIONS *: 200' or diag $r->summary;
    is $r->body, '', 'OPTIONS *: no body';
    is $c->request('GET', '/k')->status, 200, 'OPTIONS *: the connection stays usable';
    $c = Portico::Client->new($port);
    $c->send("GET * HTTP/1.1\r\nHost: example.com\r\n\r\n");
    is $c->read_response->status, 400, 'GET *: 400';
    is scalar $ex->requests, $before, 'no asterisk-form request reached the upstream';
}

$p->finish;
done_testing;
