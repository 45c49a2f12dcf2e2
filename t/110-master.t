# Master: a killed worker is replaced and the replacement serves; TERM and
# INT stop everything and nothing is left listening; a fast stop still lets
# each worker log what it served.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Portico;
use Upstream;

my $up = Upstream->new(name => 'app');

my $conf = <<'EOF';
[main]
workers = 2

[listener web]
listen = 127.0.0.1:{port}

[upstream app]
server = {up:app}

[route all]
upstream = app
EOF

# Sum of the "worker exiting: N requests on M connections" lines of PIDS:
# (lines found, requests, connections).
sub exit_counts {
    my ($p, @pids) = @_;
    my %want = map { $_ => 1 } @pids;
    my ($n, $req, $conns) = (0, 0, 0);
    for ($p->error_lines) {
        next unless / (\d+)#\d+ worker exiting: (\d+) requests on (\d+) connections$/ && $want{$1};
        ($n, $req, $conns) = ($n + 1, $req + $2, $conns + $3);
    }
    return ($n, $req, $conns);
}

sub serve_all {
    my ($port, $n) = @_;
    my $ok = 0;
    for my $i (1 .. $n) {
        my $r = http_get($port, "/r$i", timeout => T(5));
        $ok++ if $r->status == 200;
        $r->conn->close if $r->conn;
    }
    return $ok;
}

{
    my $p = Portico->start($conf, upstreams => { app => $up },
        errors_ok => [qr/worker|signal|exited|died|killed|respawn/i]);
    my $port = $p->port;
    my @w = sort { $a <=> $b } $p->workers;
    is scalar(@w), 2, 'two workers' or diag "children: @w";
    is serve_all($port, 10), 10, 'serving before the kill';

    my $victim = $w[0];
    kill 'KILL', $victim;
    my @now;
    my $replaced = wait_for(sub {
        @now = $p->workers;
        @now == 2 && !grep { $_ == $victim } @now;
    }, T(5));
    ok $replaced, "killed worker $victim replaced (now: @now)";
    my %old = map { $_ => 1 } @w;
    my @new = grep { !$old{$_} } @now;
    is scalar(@new), 1, 'exactly one new worker';
    ok $p->alive, 'master still running';
    # New connections hash over both SO_REUSEPORT sockets: all must be served.
    is serve_all($port, 30), 30, 'the replacement serves (30 new connections all answered)';

    # Kill both, one after the other.
    kill 'KILL', $p->workers;
    ok wait_for(sub { my @k = $p->workers; @k == 2 && !grep { $old{$_} || $_ == $new[0] } @k }, T(5)),
      'both workers replaced after both were killed';
    is serve_all($port, 10), 10, 'still serving';

    my @last = $p->workers;
    $p->finish;    # TERM: checks exit, workers gone, logs
    my $c = Portico::Client->new($port);
    ok !$c, 'nothing listening after TERM';
    ok !grep({ -e "/proc/$_" && slurp("/proc/$_/stat") !~ /\) Z/ } @last), 'workers gone after TERM';
}

# INT stops as TERM does.
{
    my $p = Portico->start($conf, upstreams => { app => $up });
    my $port = $p->port;
    is serve_all($port, 3), 3, 'second instance serves';
    my @w = $p->workers;
    ok $p->stop('INT'), 'master exits on INT';
    my $st = $p->{exit_status};
    is $st & 127, 0, 'INT: exited normally, not killed by the signal';
    ok !Portico::Client->new($port), 'nothing listening after INT';
    ok wait_for(sub { !grep { -e "/proc/$_" && slurp("/proc/$_/stat") !~ /\) Z/ } @w }, T(5)),
      'workers gone after INT';
    # 3 connections of one request each, and wait_ready's probe.
    is_deeply [exit_counts($p, @w)], [2, 3, 4], 'INT: both workers log their counts (3 requests on 4 connections)';
    $p->check_logs;
}

# reuseport = off: one shared socket, both workers serve.
{
    (my $c2 = $conf) =~ s/workers = 2/workers = 2\nreuseport = off/;
    my $p = Portico->start($c2, upstreams => { app => $up });
    is scalar(my @w = $p->workers), 2, 'reuseport = off: two workers';
    is serve_all($p->port, 20), 20, 'reuseport = off: serving';
    $p->finish;
    is_deeply [exit_counts($p, @w)], [2, 20, 21],
      'TERM: both workers log their counts (20 requests on 21 connections)';
}

# A worker exits when its master dies.
{
    my $p = Portico->start($conf, upstreams => { app => $up });
    my @w = $p->workers;
    is scalar(@w), 2, 'third instance: two workers';
    $p->stop('KILL');
    ok wait_for(sub { !grep { -e "/proc/$_" && slurp("/proc/$_/stat") !~ /\) Z/ } @w }, T(5)),
      'workers exit when the master is killed';
    $p->check_logs;
}

done_testing;
