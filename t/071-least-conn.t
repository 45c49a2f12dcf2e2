# least_conn with 2 workers: while one server holds requests in flight,
# new requests from any worker go to the idle server (active counts are
# shared by all workers).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use Portico;
use Upstream;

my $dir = Portico::test_dir();
my $hold_slow = "$dir/release-slow";
my $hold_fast = "$dir/release-fast";
# Both servers hold their answers until their file exists.
my $slow = Upstream->new(name => 'slow', hold => $hold_slow);
my $fast = Upstream->new(name => 'fast', hold => $hold_fast);

my $p = Portico->start(<<'EOF', upstreams => { slow => $slow, fast => $fast });
[main]
workers = 2

[listener web]
listen = 127.0.0.1:{port}

[upstream lc]
balance = least_conn
server = {up:slow}
server = {up:fast}
read_timeout = 60s

[route all]
upstream = lc
EOF
my $port = $p->port;

my @w = $p->workers;
is scalar(@w), 2, 'two workers running';

# Send N requests on N connections (SO_REUSEPORT spreads them over both
# workers) while both servers hold; wait until all arrived.
sub load {
    my ($n, $tag) = @_;
    my @c;
    my $base = $slow->heads + $fast->heads;
    for my $i (1 .. $n) {
        my $c = Portico::Client->new($port);
        $c->send(build_request('GET', "/$tag/$i"));
        push @c, $c;
    }
    wait_for(sub { $slow->heads + $fast->heads >= $base + $n }, T(10));
    return @c;
}

# Phase 1: 8 requests in flight, spread over both servers by least_conn.
unlink $hold_slow, $hold_fast;
my @conns = load(8, 'load');
my ($ps, $pf) = ($slow->pending, $fast->pending);
is $ps + $pf, 8, "8 requests in flight (slow $ps, fast $pf)";
ok $ps >= 2 && $pf >= 2, 'least_conn spread the in-flight requests over both servers';

# Release the fast server: its requests complete, the slow one keeps its own.
write_file($hold_fast, '');
ok wait_for(sub { $fast->pending == 0 }, T(10)), 'fast server answered its requests';
# read the fast server's answers: portico is done with them then
{
    my @still;
    for my $c (@conns) {
        my $r = $c->read_response(timeout => 0.3);
        push @still, $c unless $r->status;
    }
    @conns = @still;
}
sleep 0.2;
my $inflight = $slow->pending;
cmp_ok $inflight, '>=', 1, "slow server holds $inflight requests";

# Phase 2: new requests on new connections (both workers) must all go to
# the server with fewer active connections: the fast one.
my %who;
for my $i (1 .. 30) {
    my $r = http_get($port, "/fast/$i", timeout => T(3));
    $who{ $r->status == 200 ? $r->header('x-backend') : 'none(' . $r->status . ')' }++;
    $r->conn->close;
    sleep 0.05;    # the worker releases the server just after the client has the answer
}
is $who{fast}, 30, 'all 30 new requests went to the idle server' or diag explain \%who;
is $slow->pending, $inflight, 'no new request reached the busy server';

# Release everything: all held requests complete.
write_file($hold_slow, '');
my $done = 0;
for my $c (@conns) {
    my $r = $c->read_response(timeout => T(10));
    $done++ if $r->status == 200;
}
is $done, $inflight, 'all held requests completed';

# Rounds with a single request held on the slow server, from whichever
# worker took it: the other worker must see it too.
for my $round (1 .. 4) {
    unlink $hold_slow, $hold_fast;
    $slow->reset_log;
    $fast->reset_log;
    my @h;
    my $n = 0;
    until ($slow->pending >= 1 || $n >= 10) {
        push @h, load(1, "r$round-$n");
        $n++;
    }
    write_file($hold_fast, '');
    wait_for(sub { $fast->pending == 0 }, T(10));
    # read the fast server's answers: portico is done with them then
    my @still;
    for my $c (@h) {
        my $r = $c->read_response(timeout => 0.3);
        push @still, $c unless $r->status;
    }
    @h = @still;
    sleep 0.2;
    my $held = $slow->pending;
    my $bad = 0;
    for my $i (1 .. 10) {
        my $r = http_get($port, "/r$round/fast/$i", timeout => T(3));
        unless (($r->header('x-backend') // '') eq 'fast') {
            $bad++;
            diag "round $round request $i: " . substr($r->summary, 0, 200);
        }
        $r->conn->close;
        sleep 0.05;
    }
    is $bad, 0, "round $round: with $held held on the slow server, no request went there"
      or diag sprintf 'slow pending %d, fast pending %d', $slow->pending, $fast->pending;
    write_file($hold_slow, '');
    $_->read_response(timeout => T(10)) for @h;
}

$p->expect_errors(qr/timeout|timed out|closed|reset|upstream/i);
$p->finish;
done_testing;
