# body_min_rate: a request body must average at least this many bytes per
# second once body_timeout has passed as a grace. A trickle whose every gap
# stays under body_timeout is still cut off; a slow but steady client is
# not; time the upstream holds the body back does not count against it.
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
body_timeout = 2s
body_min_rate = 100

[listener norate]
listen = 127.0.0.1:{port:norate}
body_timeout = 2s
body_min_rate = 0

[upstream app]
server = {up:app}

[route all]
upstream = app
EOF

# Send a 1000-byte body one byte every 0.5 s (every gap well under
# body_timeout) until the server closes or LIMIT seconds pass. Returns
# (seconds until closed or undef, bytes sent).
sub trickle {
    my ($port, $limit) = @_;
    my $c = Portico::Client->new($port);
    $c->send("POST /trickle HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n");
    my $t0 = time;
    my $sent = 0;
    while (time - $t0 < $limit) {
        return (time - $t0, $sent) if $c->closed(0.5);
        $c->send('x', timeout => 1) or return (time - $t0, $sent);
        $sent++;
    }
    return (undef, $sent);
}

# 2 s of grace plus 10 ms per byte: cut off after about 2.1 s.
my ($t, $sent) = trickle($p->port, T(8));
ok defined $t, 'a one-byte-per-0.5-s trickle is cut off' . (defined $t ? sprintf(' after %.1f s', $t) : '');
ok defined $t && $t >= 1.5, 'not before the grace of body_timeout';
ok !$up->requests, 'no complete request upstream';

# The same trickle without a minimum rate lives on (each gap < body_timeout).
($t, $sent) = trickle($p->port('norate'), T(4));
ok !defined $t, "body_min_rate = 0: the trickle is still open after 4 s ($sent bytes)";

# A slow but steady body above the rate: 800 bytes at 200 B/s.
{
    my $c = Portico::Client->new($p->port);
    $c->send("POST /steady HTTP/1.1\r\nHost: h\r\nContent-Length: 800\r\n\r\n");
    $c->send_slowly('y' x 800, 40, 0.2);
    my $r = $c->read_response(timeout => T(10));
    is $r->status, 200, 'a steady 200 B/s body (4 s, over body_timeout) gets through';
    my ($req) = grep { ($_->{head} // '') =~ m{^POST /steady} } $up->requests;
    is length($req->{body} // ''), 800, 'the upstream got the whole body';
}

$p->expect_errors(qr/upstream|body|timeout|reset|closed/i);
$p->finish;
done_testing;
