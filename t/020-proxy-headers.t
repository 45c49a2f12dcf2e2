# Headers on the way up and down: X-Forwarded-*, Via, X-Request-ID,
# hop-by-hop removal both ways, expose_upstream, strip/add_prefix,
# request_header / response_header, host_header.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;
use Upstream;

my $plain = Upstream->new(name => 'plain');
my $hoppy = Upstream->new(name => 'hoppy', headers => [
    'Connection: X-Secret-Hop, keep-alive',
    'X-Secret-Hop: 1',
    'Keep-Alive: timeout=10, max=100',
    'Proxy-Connection: keep-alive',
    'Upgrade: h2c',
    'Trailer: X-Checksum',
    'X-Powered-By: upstream-framework',
    'X-Frame-Options: ALLOWALL',
    'X-Kept: yes',
    'Via: 1.0 inner',
    'Date: Tue, 01 Dec 2026 10:00:00 GMT',
    'Set-Cookie: a=1; Path=/',
    'Set-Cookie: b=2; Path=/',
]);
my $named = Upstream->new(name => 'named');
my $srv   = Upstream->new(name => 'srv');
my $lit   = Upstream->new(name => 'lit');

my $p = Portico->start(<<'EOF', upstreams => { plain => $plain, hoppy => $hoppy, named => $named, srv => $srv, lit => $lit });
[listener web]
listen = 127.0.0.1:{port}

[upstream plain]
server = {up:plain}

[upstream hoppy]
server = {up:hoppy}

[upstream named]
server = {up:named} name=backend-7

[upstream unnamed]
server = {up:plain}

[upstream srv]
server = {up:srv}
host_header = server

[upstream lit]
server = {up:lit}
host_header = backend.internal

[route plain]
upstream = plain

[route hoppy]
path = /hoppy/
upstream = hoppy
response_header = Strict-Transport-Security: max-age=63072000
response_header = -X-Powered-By
response_header = X-Frame-Options: DENY

[route strip]
path = /api/
strip_prefix = /api
upstream = plain

[route stripall]
path = /bare
strip_prefix = /bare
upstream = plain

[route add]
path = /users/
add_prefix = /v2
upstream = plain

[route both]
path = /old/
strip_prefix = /old
add_prefix = /new
upstream = plain

[route rh]
path = /rh/
upstream = plain
request_header = X-Added: yes
request_header = X-Replaced: by-portico
request_header = -X-Remove-Me
request_header = -User-Agent

[route exposed]
path = /exposed/
upstream = named
expose_upstream = on

[route exposed_unnamed]
path = /exposed-unnamed/
upstream = unnamed
expose_upstream = on

[route srv]
path = /srv/
upstream = srv

[route lit]
path = /lit/
upstream = lit
EOF
my $port = $p->port;

sub last_req { my ($u) = @_; my @r = $u->requests; return $r[-1] }

# X-Forwarded-*, Via, X-Request-ID generated.
{
    my $r = http_get($port, '/fwd', host => 'www.example.test');
    is $r->status, 200, 'proxied' or diag $r->summary;
    my $q = last_req($plain);
    is $q->header('x-forwarded-for'), '127.0.0.1', 'X-Forwarded-For added';
    is $q->header('x-forwarded-proto'), 'http', 'X-Forwarded-Proto http';
    is $q->header('x-forwarded-host'), 'www.example.test', 'X-Forwarded-Host = client Host';
    is $q->header('host'), 'www.example.test', 'Host passed by default';
    like $q->header('via') // '', qr/(^|,\s*)1\.1 portico$/, 'Via: 1.1 portico';
    my $id = $q->header('x-request-id');
    ok defined $id && $id =~ /^[\x21-\x7e]{8,200}$/, 'X-Request-ID generated' or diag $id;
    is $r->header('x-request-id'), $id, 'X-Request-ID echoed on the response';
    like $r->header('via') // '', qr/\b1\.1 portico\b/, 'Via on the response';
    is scalar(my @x = $q->header_values('x-request-id')), 1, 'one X-Request-ID upstream';

    my $r2 = http_get($port, '/fwd2');
    my $id2 = last_req($plain)->header('x-request-id');
    isnt $id2, $id, 'request ids differ between requests';
}

# Client values kept / appended.
{
    my $r = http_get($port, '/fwd', host => 'h.test', headers => [
        'X-Forwarded-For: 10.1.2.3',
        'Via: 1.0 fred',
        'X-Request-ID: client-id-123_ABC',
    ]);
    is $r->status, 200;
    my $q = last_req($plain);
    is $q->header('x-forwarded-for'), '10.1.2.3, 127.0.0.1', 'X-Forwarded-For appended';
    my $via = $q->header('via') // '';
    like $via, qr/^1\.0 fred,\s*1\.1 portico$/, 'Via appended to the client value' or diag $via;
    is $q->header('x-request-id'), 'client-id-123_ABC', 'valid client X-Request-ID kept';
    is $r->header('x-request-id'), 'client-id-123_ABC', 'and echoed';
}

# Field values: obs-text bytes, empty values, repeated fields, case of names.
{
    my $r = http_get($port, '/values', headers => [
        "X-Utf8: caf\xc3\xa9 \xff",
        'X-Empty:',
        'X-Spaces:    padded value   ',
        'Cookie: a=1',
        'Cookie: b=2',
        'x-lower-case: yes',
    ]);
    is $r->status, 200, 'request with obs-text, empty and repeated fields' or diag $r->summary;
    my $q = last_req($plain);
    is $q->header('x-utf8'), "caf\xc3\xa9 \xff", 'obs-text bytes forwarded as they are';
    ok $q->has_header('x-empty'), 'empty field forwarded';
    is $q->header('x-empty'), '', 'with an empty value';
    is $q->header('x-spaces'), 'padded value', 'surrounding whitespace trimmed';
    my $ck = join '|', $q->header_values('cookie');
    ok $ck eq 'a=1|b=2' || $ck eq 'a=1; b=2', 'both Cookie fields forwarded (as they are, or joined with "; ")'
      or diag $ck;
    is $q->header('x-lower-case'), 'yes', 'lower-case field name forwarded';
}

# Several X-Forwarded-For fields: all kept, in order, the client appended.
{
    http_get($port, '/xff', headers => ['X-Forwarded-For: 1.1.1.1', 'X-Forwarded-For: 2.2.2.2, 3.3.3.3']);
    is last_req($plain)->header('x-forwarded-for'), '1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1',
      'X-Forwarded-For fields combined in order, client address last';
}

# Hop-by-hop request headers removed.
{
    my $r = http_get($port, '/hop', headers => [
        'Connection: keep-alive, X-Hop-One, X-Hop-Two',
        'X-Hop-One: 1',
        'X-Hop-Two: 2',
        'Keep-Alive: timeout=5',
        'Proxy-Connection: keep-alive',
        'TE: gzip',
        'Trailer: X-Foo',
        'Upgrade: websocket',
        'X-End-To-End: stays',
    ]);
    is $r->status, 200 or diag $r->summary;
    my $q = last_req($plain);
    for my $h (qw(X-Hop-One X-Hop-Two Keep-Alive Proxy-Connection TE Trailer Upgrade Transfer-Encoding)) {
        ok !$q->has_header($h), "request hop-by-hop $h removed";
    }
    my $conn = $q->header('connection') // '';
    unlike $conn, qr/x-hop/i, 'Connection does not carry the client\'s tokens';
    like $conn, qr/^(|keep-alive|close)$/i, 'Connection only portico\'s own value';
    is $q->header('x-end-to-end'), 'stays', 'end-to-end header kept';
}

# Hop-by-hop response headers removed; response_header set/remove.
{
    my $r = http_get($port, '/hoppy/x');
    is $r->status, 200 or diag $r->summary;
    for my $h (qw(X-Secret-Hop Keep-Alive Proxy-Connection Upgrade Trailer)) {
        ok !defined $r->header($h), "response hop-by-hop $h removed";
    }
    my $conn = $r->header('connection') // '';
    unlike $conn, qr/x-secret-hop/i, 'response Connection does not name the upstream\'s tokens';
    is $r->header('x-kept'), 'yes', 'end-to-end response header kept';
    is $r->header('strict-transport-security'), 'max-age=63072000', 'response_header sets';
    ok !defined $r->header('x-powered-by'), 'response_header -NAME removes';
    is $r->header('x-frame-options'), 'DENY', 'response_header replaces the upstream value';
    like $r->header('via') // '', qr/^1\.0 inner,\s*1\.1 portico$/, 'Via appended to the upstream\'s';
    is $r->body, "hello from hoppy\n", 'body intact';
    is_deeply [$r->headers_named('date')], ['Tue, 01 Dec 2026 10:00:00 GMT'], 'the upstream\'s Date kept, not doubled';
    # RFC 9110 6.6.1: a forwarded response without Date gets one.
    my $rp = http_get($port, '/plain/x');
    like $rp->header('date') // '', qr/^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/,
      'Date added to an upstream response that had none' or diag $rp->summary;
    is_deeply [$r->headers_named('set-cookie')], ['a=1; Path=/', 'b=2; Path=/'],
      'two Set-Cookie headers kept separate';
    my $r2 = $r->conn->request('GET', '/hoppy/y');
    is $r2->status, 200, 'keep-alive after hop-by-hop response';
}

# The upstream address never appears unless expose_upstream.
{
    my $r = http_get($port, '/plain');
    my $addr = $plain->addr;
    my $pp = $plain->port;
    unlike $r->head, qr/\Q$pp\E/, 'upstream port not in the response head';
    ok !defined $r->header('x-upstream'), 'no X-Upstream by default';

    $r = http_get($port, '/exposed/x');
    is $r->status, 200;
    is $r->header('x-upstream'), 'backend-7', 'expose_upstream: X-Upstream is the name=';
    $r = http_get($port, '/exposed-unnamed/x');
    is $r->header('x-upstream'), $plain->addr, 'expose_upstream: X-Upstream HOST:PORT without name=';
}

# strip_prefix / add_prefix.
{
    my @cases = (
        ['/api/users?x=1', '/users?x=1', 'strip_prefix'],
        ['/api/', '/', 'strip_prefix to /'],
        ['/bare', '/', 'strip_prefix of the whole path gives /'],
        ['/bare?q=2', '/?q=2', 'strip_prefix of the whole path keeps the query'],
        ['/users/42', '/v2/users/42', 'add_prefix'],
        ['/old/a/b?c', '/new/a/b?c', 'strip_prefix then add_prefix'],
    );
    for my $c (@cases) {
        my ($in, $out, $name) = @$c;
        my $r = http_get($port, $in);
        is $r->status, 200, "$name: 200" or diag $r->summary;
        is last_req($plain)->{target}, $out, "$name: $in -> $out";
    }
}

# request_header set / remove.
{
    my $r = http_get($port, '/rh/x', headers => [
        'X-Replaced: by-client', 'X-Remove-Me: secret', 'User-Agent: test-agent', 'X-Other: kept',
    ]);
    is $r->status, 200;
    my $q = last_req($plain);
    is $q->header('x-added'), 'yes', 'request_header adds';
    is $q->header('x-replaced'), 'by-portico', 'request_header replaces';
    ok !$q->has_header('x-remove-me'), 'request_header -NAME removes';
    ok !$q->has_header('user-agent'), 'request_header -User-Agent removes';
    is $q->header('x-other'), 'kept', 'other headers kept';
}

# host_header.
{
    http_get($port, '/srv/x', host => 'client.test');
    is last_req($srv)->header('host'), $srv->addr, 'host_header = server: HOST:PORT';
    http_get($port, '/lit/x', host => 'client.test');
    is last_req($lit)->header('host'), 'backend.internal', 'host_header = literal';
    is last_req($lit)->header('x-forwarded-host'), 'client.test', 'X-Forwarded-Host still the client Host';
    http_get($port, '/x', host => 'client.test');
    is last_req($plain)->header('host'), 'client.test', 'host_header = pass';
    is scalar(my @h = last_req($plain)->header_values('host')), 1, 'one Host upstream';
}

# Header names are recognised in any letter case, and only exactly: names
# that differ by one byte, or by '_' for '-', are ordinary headers.
{
    my $r = http_get($port, '/case', headers => [
        'x-FORWARDED-for: 9.9.9.9',
        'VIA: 1.0 front',
        'cONNECTION: X-Drop-Me',
        'X-DROP-ME: 1',
        'KEEP-alive: timeout=5',
        'x-request-ID: case-id-1',
        'X-Forwarded-Fo: near-1',
        'Vias: near-2',
        'Connectiom: near-3',
        'x_forwarded_for: near-4',
        'Hosts: near-5',
    ]);
    is $r->status, 200 or diag $r->summary;
    my $q = last_req($plain);
    is_deeply [$q->header_values('x-forwarded-for')], ['9.9.9.9, 127.0.0.1'],
      'x-FORWARDED-for appended to, in one field';
    is_deeply [$q->header_values('via')], ['1.0 front, 1.1 portico'], 'VIA joined in one field';
    is_deeply [$q->header_values('x-request-id')], ['case-id-1'], 'one X-Request-ID field';
    ok !$q->has_header('x-drop-me'), 'a header named by cONNECTION removed';
    ok !$q->has_header('keep-alive'), 'KEEP-alive removed';
    is $q->header('x-request-id'), 'case-id-1', 'x-request-ID passed as the request id';
    is $r->header('x-request-id'), 'case-id-1', 'and returned to the client';
    is $q->header('x-forwarded-fo'), 'near-1', 'X-Forwarded-Fo is an ordinary header';
    is $q->header('vias'), 'near-2', 'Vias is an ordinary header';
    is $q->header('connectiom'), 'near-3', 'Connectiom is an ordinary header';
    is $q->header('x_forwarded_for'), 'near-4', 'x_forwarded_for is an ordinary header';
    is $q->header('hosts'), 'near-5', 'Hosts is an ordinary header';
}

$p->finish;
done_testing;
