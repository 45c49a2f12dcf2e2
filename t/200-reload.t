# Reload (HUP) under load: no failed request with keep-alive clients nor
# with a new connection per request, across repeated reloads, worker count
# changes and listen address changes; a broken configuration is refused
# with FILE:LINE and the old one keeps serving.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Portico;
use Upstream;
use Load;

my $up = Upstream->new(name => 'app');

my $tmpl = <<'EOF2';
[main]
workers = WORKERS
shutdown_timeout = 5s

[listener web]
listen = 127.0.0.1:{port}
EXTRA
[upstream app]
server = {up:app}

[route all]
upstream = app
EOF2

sub conf {
    my ($workers, $extra) = @_;
    (my $c = $tmpl) =~ s/WORKERS/$workers/;
    $c =~ s/EXTRA/$extra \/\/ ''/e;
    return $c;
}

my $p = Portico->start(conf(2), upstreams => { app => $up },
    errors_ok => [qr/reload refused|portico\.ini:\d+:/]);
my $port = $p->port;

sub count_log { my ($re) = @_; scalar grep { /$re/ } $p->error_lines }

# Rewrite the configuration file, send HUP, wait until the reload is done.
sub reload {
    my ($text) = @_;
    write_file($p->config_file, $p->_inject_main($p->expand($text))) if defined $text;
    my $before = count_log(qr/reload done|reload refused|reload aborted/);
    $p->signal('HUP');
    return wait_for(sub { count_log(qr/reload done|reload refused|reload aborted/) > $before },
                    T(10));
}

sub live_workers {
    my @w = $p->workers;
    # Draining old workers are children too: wait for them to go.
    return scalar @w;
}

for my $mode (qw(keepalive close)) {
    my $load = Load->start($port, clients => 4, mode => $mode);
    my $t0 = time;
    for my $i (1 .. 5) {
        ok reload(), "$mode: reload $i done";
        sleep 0.2;
    }
    my $r = $load->stop;
    is $r->{failed}, 0, "$mode: 5 reloads, no failed request ($r->{ok} answered)"
      or diag join "\n", @{ $r->{errors} };
    is $r->{non2xx}, 0, "$mode: 5 reloads, no non-2xx response";
    cmp_ok $r->{ok}, '>', 50, "$mode: the load ran ($r->{ok} requests)";
    diag sprintf "%s: %d requests, %d failed, %d non-2xx during 5 reloads in %.1f s",
      $mode, $r->{ok}, $r->{failed}, $r->{non2xx}, time - $t0;
    is count_log(qr/reload done: generation/), ($mode eq 'keepalive' ? 5 : 10), 'every reload committed';
}

# Growing and shrinking the worker count under load, then adding and
# removing a listen address.
{
    my $load = Load->start($port, clients => 4, mode => 'keepalive');
    my $load2 = Load->start($port, clients => 2, mode => 'close');
    for my $n (4, 1, 3, 2) {
        ok reload(conf($n)), "reload to workers = $n";
        ok wait_for(sub { scalar($p->workers) == $n }, T(8)), "workers = $n: $n workers left"
          or diag "children: " . join ' ', $p->workers;
        sleep 0.3;
    }
    ok reload(conf(2, "listen = 127.0.0.1:{port:second}\n")), 'reload adds a listen address';
    my $r2 = http_get($p->port('second'), '/second', timeout => T(5));
    is $r2->status, 200, 'the added address serves';
    ok reload(conf(2)), 'reload removes it again';
    ok wait_for(sub { !Portico::Client->new($p->port('second')) }, T(8)),
      'the removed address stops listening';
    my $r = $load->stop;
    my $rc = $load2->stop;
    is $r->{failed} + $r->{non2xx}, 0,
      "worker count 2->4->1->3->2 and address changes, keep-alive: no failure ($r->{ok} answered)"
      or diag join "\n", @{ $r->{errors} };
    is $rc->{failed} + $rc->{non2xx}, 0,
      "the same, a connection per request: no failure ($rc->{ok} answered)"
      or diag join "\n", @{ $rc->{errors} };
    diag sprintf "worker count changes: keep-alive %d ok %d failed; per-request %d ok %d failed",
      $r->{ok}, $r->{failed}, $rc->{ok}, $rc->{failed};
}

# A broken configuration: refused, logged with FILE:LINE, old one serves.
{
    wait_for(sub { scalar($p->workers) == 2 }, T(5)); # the last drain is over
    my @before = sort $p->workers;
    my $bad = conf(2) . "\n[route broken]\nupstrem = app\n";
    ok reload($bad), 'reload with a broken configuration finished';
    my @err = grep { /\[error\]/ } $p->error_lines;
    ok scalar(grep { /\Q${\ $p->config_file}\E:\d+: .*upstrem/ } @err),
      'the error is logged at [error] as FILE:LINE: message'
      or diag join "\n", @err;
    ok scalar(grep { /reload refused/ } @err), 'and the reload is refused';
    is_deeply [sort $p->workers], \@before, 'the old workers keep running';
    my $r = http_get($port, '/after-bad', timeout => T(5));
    is $r->status, 200, 'and keep serving';
    ok reload(conf(2)), 'a good configuration reloads again';
    is http_get($port, '/after-good', timeout => T(5))->status, 200, 'serving';
}

# pid_file and user cannot change on a reload: a warning, and the running
# values stay (the master keeps owning the pid_file it wrote).
{
    my $other = $p->dir . '/other.pid';
    (my $c = conf(2)) =~ s/\[main\]\n/[main]\npid_file = $other\n/;
    ok reload($c), 'reload with another pid_file';
    ok scalar(grep { /\[warn\].*pid_file = \Q$other\E needs a restart/ } $p->error_lines),
      'a warning says the pid_file needs a restart'
      or diag join "\n", $p->error_lines;
    ok !-e $other, 'the new pid_file is not written';
    (my $pid = slurp($p->pid_file)) =~ s/\s+//g;
    is $pid, $p->pid, 'the running pid_file still names the master';
    ok reload(conf(2)), 'back to the first configuration';
    is http_get($port, '/after-pid-file', timeout => T(5))->status, 200, 'serving';
}

$p->finish;
ok !-e $p->pid_file, 'the pid_file is removed at exit';
done_testing;
