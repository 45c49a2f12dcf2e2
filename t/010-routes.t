# Routing: host exact / *.suffix / any, longest prefix, `= /exact`, ties to
# the first route, 404, methods -> 405 with Allow, return, redirect, and
# listener= restricting a route to one listener.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;
use Upstream;

my $up = Upstream->new(name => 'app', echo => 1);

my $p = Portico->start(<<'EOF', upstreams => { app => $up });
[listener one]
listen = 127.0.0.1:{port}

[listener two]
listen = 127.0.0.1:{port:two}

[upstream app]
server = {up:app}

[route any_root]
return = 200 any-root

[route wild]
host = *.example.com
return = 200 wild

[route exact_host]
host = api.example.com
return = 200 exact-host

[route exact_host_v2]
host = api.example.com
path = /v2/
return = 200 exact-host-v2

[route api]
path = /api
return = 200 api

[route api_v2]
path = /api/v2/
return = 200 api-v2

[route docs]
path = /docs/
return = 200 docs

[route status]
path = = /status
return = 200 status-exact

[route tie_first]
path = /tie/
return = 200 tie-first

[route tie_second]
path = /tie/
return = 200 tie-second

[route get_only]
path = /ro/
methods = GET HEAD
return = 200 read-only

[route empty]
path = /empty
return = 204

[route moved]
path = /old/
redirect = 301 https://$host$request_uri

[route moved_scheme]
path = /scheme
redirect = 302 $scheme://elsewhere.test/x

[route proxied]
path = /app/
upstream = app

[route only_two]
listener = two
path = /only-two
return = 200 only-two
EOF

my $port = $p->port;
my $port2 = $p->port('two');

sub body_is {
    my ($host, $path, $want, $name, %o) = @_;
    my $r = http_get($o{port} // $port, $path, host => $host);
    is $r->status, 200, "$name: status 200" or diag $r->summary;
    like $r->body, qr/^\Q$want\E\n?$/, "$name: routed to $want" or diag $r->summary;
}

# Hosts.
body_is('api.example.com', '/', 'exact-host', 'exact host');
body_is('API.Example.COM', '/', 'exact-host', 'host match is case-insensitive');
body_is('api.example.com:8080', '/', 'exact-host', 'host with a port');
body_is('api.example.com', '/v2/x', 'exact-host-v2', 'exact host, longer path');
body_is('www.example.com', '/', 'wild', '*.suffix');
body_is('a.b.example.com', '/', 'wild', '*.suffix, deeper name');
body_is('example.com', '/', 'any-root', '*.example.com does not match example.com');
body_is('other.test', '/', 'any-root', 'any host');
body_is('notexample.com', '/', 'any-root', '*.example.com does not match notexample.com');

# Paths: longest prefix; a prefix not ending in / matches at a segment edge.
body_is('h.test', '/api', 'api', '/api exact');
body_is('h.test', '/api/', 'api', '/api/');
body_is('h.test', '/api/users', 'api', '/api/users');
body_is('h.test', '/api?q=1', 'api', '/api?q=1');
body_is('h.test', '/apiary', 'any-root', '/apiary does not match /api');
body_is('h.test', '/api/v2/x', 'api-v2', 'longest prefix /api/v2/');
body_is('h.test', '/api/v2/', 'api-v2', '/api/v2/ itself');
body_is('h.test', '/api/v2', 'api', '/api/v2 without slash is not under /api/v2/');
body_is('h.test', '/docs/a/b', 'docs', '/docs/ prefix');
body_is('h.test', '/docs', 'any-root', '/docs does not match prefix /docs/');
body_is('h.test', '/docsx', 'any-root', '/docsx does not match /docs/');

# Exact path.
body_is('h.test', '/status', 'status-exact', '= /status');
body_is('h.test', '/status?verbose=1', 'status-exact', '= /status ignores the query');
body_is('h.test', '/status/', 'any-root', '= /status does not match /status/');
body_is('h.test', '/statusx', 'any-root', '= /status does not match /statusx');

# Ties go to the first route.
body_is('h.test', '/tie/x', 'tie-first', 'tie goes to the first route');

# Methods.
{
    my $r = http_request($port, 'POST', '/ro/x', body => 'x');
    is $r->status, 405, 'POST to a GET HEAD route: 405' or diag $r->summary;
    my $allow = $r->header('allow') // '';
    like $allow, qr/\bGET\b/, 'Allow lists GET';
    like $allow, qr/\bHEAD\b/, 'Allow lists HEAD';
    unlike $allow, qr/\bPOST\b/, 'Allow does not list POST';
    $r = http_request($port, 'DELETE', '/ro/x');
    is $r->status, 405, 'DELETE: 405';
    $r = http_get($port, '/ro/x');
    is $r->status, 200, 'GET allowed';
    like $r->body, qr/^read-only\n?$/, 'GET body';
    $r = http_request($port, 'HEAD', '/ro/x');
    is $r->status, 200, 'HEAD allowed';
    is $r->body, '', 'HEAD: no body';
    # the connection stays usable after HEAD (no body bytes leaked)
    my $r2 = $r->conn->request('GET', '/ro/y');
    is $r2->status, 200, 'GET after HEAD on the same connection';
    like $r2->body, qr/^read-only\n?$/, 'GET after HEAD: right body';
}

# return = 204
{
    my $r = http_get($port, '/empty');
    is $r->status, 204, 'return = 204';
    is $r->body, '', '204 has no body';
    ok !defined $r->header('transfer-encoding'), '204 has no Transfer-Encoding';
    my $cl = $r->header('content-length');
    ok !defined $cl || $cl eq '0', '204 has no Content-Length (or 0)';
    my $r2 = $r->conn->request('GET', '/empty');
    is $r2->status, 204, 'keep-alive after 204';
}

# return = 200 BODY
{
    my $r = http_get($port, '/anything');
    is $r->status, 200, 'return = 200 any-root';
    like $r->body, qr/^any-root\n?$/, 'return body';
    ok defined $r->header('content-length') || $r->framing eq 'chunked', 'return body is framed';
}

# Redirects.
{
    my $r = http_get($port, '/old/a/b?c=d&e=f', host => 'www.example.org');
    is $r->status, 301, 'redirect = 301';
    is $r->header('location'), 'https://www.example.org/old/a/b?c=d&e=f',
      'Location expands $host$request_uri';
    $r = http_get($port, '/scheme', host => 'h.test');
    is $r->status, 302, 'redirect = 302';
    is $r->header('location'), 'http://elsewhere.test/x', '$scheme expands to http';
}

# Proxied route with a prefix.
{
    my $r = http_get($port, '/app/x?y=1', host => 'h.test');
    is $r->status, 200, 'proxied route' or diag $r->summary;
    my ($req) = $up->requests;
    is $req->{target}, '/app/x?y=1', 'upstream got the path unchanged';
}

# Listener restriction.
body_is('h.test', '/only-two', 'only-two', 'route on listener two', port => $port2);
body_is('h.test', '/only-two', 'any-root', 'route of listener two is not on listener one');

# No route: a config where / is not covered.
{
    my $q = Portico->start(<<'EOF');
[listener one]
listen = 127.0.0.1:{port}
[route only]
path = /only/
return = 200 only
[route host_only]
host = h.example
return = 200 host-only
EOF
    my $r = http_get($q->port, '/other', host => 'x.test');
    is $r->status, 404, 'no matching route: 404' or diag $r->summary;
    like $r->header('content-type') // '', qr{^text/plain}, '404 is text/plain';
    my $r2 = $r->conn->request('GET', '/only/x', host => 'x.test');
    is $r2->status, 200, 'connection usable after 404';
    $r = http_get($q->port, '/', host => 'h.example');
    is $r->status, 200, 'host route';
    $q->finish;
}

$p->finish;
done_testing;
