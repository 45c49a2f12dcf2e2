# Workers that send no heartbeat because they get no CPU are not hung, and
# killing them would turn an overload into lost connections.
#
# 1. The whole host paused (master and workers stopped for 4 s, the master
#    resumed first, as after a VM pause): the master sees that it did not
#    run itself and moves the heartbeat deadlines; no worker is killed.
#    Before (main at e9bcd50): both workers killed, "sent no heartbeat for
#    4297 ms, killing it".
# 2. One worker starved: moved alone into a cgroup with a CPU quota of 1 ms
#    per second while 300 keep-alive connections keep 8 pipelined requests
#    each in flight, so that each loop turn needs several ms of CPU, i.e.
#    seconds of wall time. The master reads /proc/PID/stat: runnable ('R')
#    with its CPU time not moving means starved, and it is left alone,
#    logged once at [warn] (also across a pause of the master itself); out
#    of the group it serves as before. Before:
#    killed 2.0 s after its last heartbeat in each of 5 runs ("sent no
#    heartbeat for 2001-2055 ms, killing it"), about 2 s into the
#    throttling. Now: silent for the whole 6.5 s (one gap of ~6.7 s, 0-20
#    ms of CPU and 1000-3000 requests answered meanwhile) and kept.
# A stopped worker (SIGSTOP) is still killed after 2 s: t/220-crash.t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);
use Portico;

sub write_to {
    my ($path, $data) = @_;
    open my $fh, '>', $path or return 0;
    my $ok = print $fh $data;
    return close($fh) && $ok;
}

# The cpu controller: cgroup v1 (cpu.cfs_quota_us) or v2 (cpu.max). The
# throttled group is made under the test's own group, or else under the
# hierarchy's root.
my %mnt;
for (split /\n/, slurp('/proc/mounts')) {
    my (undef, $dir, $type, $opts) = split ' ';
    $mnt{1} //= $dir if $type eq 'cgroup' && grep { $_ eq 'cpu' } split /,/, $opts;
    $mnt{2} //= $dir if $type eq 'cgroup2';
}

# PID's group in hierarchy V, as a directory.
sub cgroup_of {
    my ($pid, $v) = @_;
    for (split /\n/, slurp("/proc/$pid/cgroup")) {
        my ($id, $ctl, $path) = split /:/, $_, 3;
        my $match = $v == 1 ? grep({ $_ eq 'cpu' } split /,/, $ctl) : $id eq '0' && $ctl eq '';
        return "$mnt{$v}$path" =~ s{/+$}{}r if $match;
    }
    return undef;
}

sub cgroup_make {
    for my $v (1, 2) {
        next unless $mnt{$v};
        my $own = cgroup_of($$, $v);
        for my $parent (grep { defined } $own, $mnt{$v}) {
            next unless -w "$parent/cgroup.procs";
            next if $v == 2 && slurp("$parent/cgroup.subtree_control") !~ /\bcpu\b/;
            my $g = "$parent/portico-t225-$$";
            mkdir $g or next;
            my $ok = $v == 1
              ? write_to("$g/cpu.cfs_period_us", 1000000) && write_to("$g/cpu.cfs_quota_us", 1000)
              : write_to("$g/cpu.max", '1000 1000000');
            return { v => $v, dir => $g } if $ok;
            rmdir $g;
        }
    }
    return undef;
}

# 1. The whole host paused.
{
    my $p = Portico->start(<<'EOF', workers => 2);
[listener web]
listen = 127.0.0.1:{port}

[route hello]
return = 200 hello
EOF
    my @w = sort { $a <=> $b } $p->workers;
    sleep 0.3;
    kill 'STOP', $p->pid, @w;
    sleep 4;
    kill 'CONT', $p->pid;
    sleep 0.3;
    kill 'CONT', @w;
    sleep 0.5;
    my @lines = $p->error_lines;
    note $_ for grep { /did not run|heartbeat/ } @lines;
    is_deeply [sort { $a <=> $b } $p->workers], \@w, 'after a pause of the whole host no worker is killed';
    ok !grep({ /killing it/ } @lines), 'no kill was logged';
    my @pause = grep { /did not run/ } @lines;
    is scalar(@pause), 1, 'the pause is logged once';
    like $pause[0] // '', qr/ \[warn\] \d+#m the master did not run for \d+ ms \(host paused or overloaded\); heartbeat deadlines moved$/,
      'at [warn], with its length';
    my ($ms) = ($pause[0] // '') =~ /for (\d+) ms/;
    cmp_ok $ms // 0, ">=", 3900, "its length: " . ($ms // "?") . " ms (stopped for 4 s)";
    is http_get($p->port, '/x', timeout => T(5))->status, 200, 'serving';
    $p->finish;
}

# 2. A starved worker.
my $cg = cgroup_make();
if (!$cg) {
    diag 'no writable cgroup cpu controller (v1 cpu.cfs_quota_us or v2 cpu.max): '
      . 'the starved worker is not tested';
    done_testing;
    exit 0;
}
my %home;    # pid => its group before the test moved it
sub release {
    for my $pid (keys %home) {
        write_to("$home{$pid}/cgroup.procs", $pid) if -e "/proc/$pid";
        delete $home{$pid};
    }
}
my $loader;
END {
    if ($loader) { kill 'KILL', $loader; waitpid $loader, 0 }
    if ($cg) { release(); rmdir $cg->{dir} }
}
$SIG{INT} = $SIG{TERM} = sub { exit 1 };

# utime + stime of PID in ms (the fields after the command name, which may
# hold spaces and parentheses).
sub cpu_ms {
    my ($pid) = @_;
    my ($rest) = slurp("/proc/$pid/stat") =~ /.*\) (.*)/s or return 0;
    my @f = split ' ', $rest;
    return ($f[11] + $f[12]) * 1000 / POSIX::sysconf(POSIX::_SC_CLK_TCK());
}

my $p = Portico->start(<<'EOF');
[main]
max_connections = 4096

[listener web]
listen = 127.0.0.1:{port}
idle_timeout = 60s

[route hello]
return = 200 hello
EOF
my $port = $p->port;
my ($worker) = $p->workers;

# The load: every connection keeps PIPELINE requests in flight, a new one
# sent for each response. Under the quota the loader mostly waits.
my ($NCONN, $PIPELINE) = (300, 8);
my $stats = test_dir() . '/served';
sub served { slurp($stats) || 0 }
$loader = fork // die "fork: $!";
if (!$loader) {
    my $req = "GET /l HTTP/1.1\r\nHost: x\r\n\r\n";
    my %buf;
    my $sel = IO::Select->new;
    my $open = sub {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or return;
        $s->blocking(0);
        $buf{ fileno $s } = '';
        $sel->add($s);
        syswrite $s, $req x $PIPELINE;
    };
    $open->() for 1 .. $NCONN;
    my ($n, $saved) = (0, 0);
    while (1) {
        for my $s ($sel->can_read(0.2)) {
            my $fd = fileno $s;
            my $r = sysread $s, $buf{$fd}, 65536, length $buf{$fd};
            next if !defined $r && $!{EAGAIN};
            if (!$r) {
                $sel->remove($s);
                close $s;
                $open->();
                next;
            }
            my $k = 0;
            $k++ while $buf{$fd} =~ s/^HTTP\/1\.1 200 [^\r]*\r\n.*?\r\n\r\nhello//s;
            $n += $k;
            syswrite $s, $req x $k if $k;
        }
        if (time - $saved > 0.2) {
            write_to("$stats.tmp", $n) and rename "$stats.tmp", $stats;
            $saved = time;
        }
    }
}
ok wait_for(sub { served() > 1000 }, T(10)), 'the load is served';

# Throttle the worker alone: the master stays out of the group.
$home{$worker} = cgroup_of($worker, $cg->{v});
ok write_to("$cg->{dir}/cgroup.procs", $worker), "worker $worker moved into the throttled group";
my ($t0, $served0, $cpu0) = (time, served(), cpu_ms($worker));
sleep 3;
my @lines = $p->error_lines;
ok scalar(grep { /\[warn\] .* worker 0 \(pid $worker\) sent no heartbeat for \d+ ms but is waiting for a CPU \(used \d+ ms of CPU in the last \d+ ms\): not killed$/ } @lines),
  'why the starved worker is spared is logged';
# Meanwhile the master is paused too (as when the whole service is
# throttled): its deadlines move, and the starved worker's silence goes on
# as one episode.
kill 'STOP', $p->pid;
sleep 2.5;
kill 'CONT', $p->pid;
sleep 1;
my @w = $p->workers;
@lines = $p->error_lines;
diag sprintf 'throttled for %.1f s: %d requests answered, %d ms of CPU used',
  time - $t0, served() - $served0, cpu_ms($worker) - $cpu0;
note $_ for grep { /heartbeat|did not run/ } @lines;
is_deeply \@w, [$worker], 'the starved worker was not killed';
ok !grep({ /killing it/ } @lines), 'no kill was logged';
is scalar(grep { /the master did not run for/ } @lines), 1, "the master's own pause is logged";
ok !grep({ /runs again/ } @lines), 'no recovery is logged while the worker is starved';

release();
my $served1 = served();
ok wait_for(sub { served() > $served1 + 1000 }, T(10)), 'out of the group it serves the load again';
is http_get($port, '/x', timeout => T(5))->status, 200, 'and new connections';
is_deeply [$p->workers], [$worker], 'the same worker';
ok wait_for(sub { grep { /pid $worker\) runs again after \d+ ms without a heartbeat/ } $p->error_lines }, T(5)),
  'its recovery is logged';
@lines = $p->error_lines;
my $warned = grep { /waiting for a CPU/ } @lines;
my $episodes = grep { /runs again after/ } @lines;
is $warned, $episodes, "the [warn] came once per silence ($episodes)";

kill 'KILL', $loader;
waitpid $loader, 0;
$loader = 0;
$p->finish;
done_testing;
