# Robustness: many concurrent connections, clients that go away mid-way,
# bodies sent to routes that do not read them, and a slow reader that must
# not make portico buffer a whole response.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::MD5 qw(md5_hex);
use Time::HiRes qw(time sleep);
use Portico;
use Upstream;

my $up = Upstream->new(name => 'app');
my $slow = Upstream->new(name => 'slow', delay => 1);

my $p = Portico->start(<<'EOF', upstreams => { app => $up, slow => $slow });
[main]
workers = 2

[listener web]
listen = 127.0.0.1:{port}
max_body_size = 100m

[upstream app]
server = {up:app}

[upstream slow]
server = {up:slow}

[route local]
path = /local/
return = 200 local

[route slow]
path = /slow/
upstream = slow

[route all]
upstream = app
EOF
my $port = $p->port;

# 200 connections at once, one request each (no Connection: close).
{
    my @c = grep { defined } map { Portico::Client->new($port) } 1 .. 200;
    is scalar(@c), 200, '200 connections open';
    $_->send(build_request('GET', '/concurrent')) for @c;
    my $ok = grep { $_->read_response(timeout => T(20))->status == 200 } @c;
    is $ok, 200, 'all 200 concurrent requests answered';
    $_->close for @c;
}

# Bodies sent to routes that answer without reading them: either the body
# is skipped and the connection stays in sync, or the response says
# Connection: close and the connection is closed. Never is the body taken
# as a request.
{
    my $c = Portico::Client->new($port);
    my $next = sub {
        my ($r, $name) = @_;
        if (($r->header('connection') // '') =~ /close/i) {
            ok $c->closed(T(3)), "$name: Connection: close, and closed";
            $c = Portico::Client->new($port);
        } else {
            pass("$name: kept alive");
        }
    };
    my $r = $c->request('POST', '/local/a', body => 'x' x 5000);
    is $r->status, 200, 'POST with a body to a return route';
    $next->($r, 'POST with a body');
    $r = $c->request('GET', '/local/b');
    is $r->status, 200, 'next request';
    like $r->body, qr/^local/, 'and it is answered right';

    $r = $c->request('POST', '/local/c', body => 'y' x 3000, chunked => 1, chunk_size => 1000);
    is $r->status, 200, 'chunked POST to a return route';
    $next->($r, 'chunked POST');
    $r = $c->request('GET', '/local/d');
    is $r->status, 200, 'next request after the chunked body';

    $r = $c->request('POST', '/local/e', body => "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n");
    is $r->status, 200, 'POST whose body looks like a request';
    $next->($r, 'POST with a request-like body');
    $r = $c->request('GET', '/local/f');
    is $r->status, 200, 'next request';
    ok !grep({ $_->{target} eq '/smuggled' } $up->requests), 'the body was not taken as a request';
}

# A client that closes in the middle of a big download.
{
    my $c = Portico::Client->new($port);
    $c->send(build_request('GET', '/big', headers => ['X-Up-Size: 20000000']));
    $c->read_more(T(5));
    $c->close;
    my $c2 = Portico::Client->new($port);
    $c2->send(build_request('GET', '/big2', headers => ['X-Up-Size: 20000000']));
    $c2->read_more(T(5));
    $c2->reset;
    my $r = http_get($port, '/after-abort');
    is $r->status, 200, 'serving after clients aborted downloads';
    my %conn = map { $_->{conn} => 1 } grep { $_->{target} =~ m{^/big2?$} } $up->heads;
    is scalar(keys %conn), 2, 'both downloads reached the upstream';
    ok wait_for(sub { my @c = grep { $_->{ev} eq 'close' && $conn{ $_->{conn} } } $up->events; @c == 2 }, T(5)),
      'the aborted downloads\' upstream connections were closed';
}

# A client that goes away while the upstream is still thinking.
{
    my $c = Portico::Client->new($port);
    $c->send(build_request('GET', '/slow/x'));
    ok wait_for(sub { $slow->heads >= 1 }, T(5)), 'request reached the slow server';
    $c->close;
    sleep 1.3;
    my $r = http_get($port, '/slow/y');
    is $r->status, 200, 'slow route still works after a client left';
}

# A client that does not read: portico must not buffer the response.
{
    my @w = $p->workers;
    my $rss = sub { my $t = 0; for (@w) { $t += $1 if slurp("/proc/$_/status") =~ /VmRSS:\s+(\d+)/ } $t };
    my $before = $rss->();
    my $c = Portico::Client->new($port);
    setsockopt($c->sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 65536);
    $c->send(build_request('GET', '/huge', headers => ['X-Up-Size: 40000000']));
    sleep 2;
    my $after = $rss->();
    my $grow = $after - $before;
    ok $grow < 16 * 1024, "workers' RSS grew by ${grow} KiB while a 40 MB response waits for a slow reader";
    # now read it all, intact
    my $r = $c->read_response(timeout => T(60));
    is length($r->body), 40000000, 'the slow reader gets the whole body';
    is md5_hex($r->body), Upstream::pattern_md5(40000000), 'intact';
}

$p->finish;
done_testing;
