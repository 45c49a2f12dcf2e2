# Crashes: a worker killed with SIGKILL under load loses only the requests
# on its own open connections; its replacement accepts within 100 ms; its
# shared-memory row is released, so least_conn counts stay right; a worker
# whose heartbeat stops (SIGSTOP) is killed and replaced.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use Portico;
use Upstream;
use Load;

my $ua = Upstream->new(name => 'a');
my $ub = Upstream->new(name => 'b');
my $conf = <<'EOF2';
[main]
workers = 2

[listener web]
listen = 127.0.0.1:{port}

[upstream app]
server = {up:a}
server = {up:b}
balance = least_conn

[route all]
upstream = app
EOF2

my $errors_ok = [qr/killed by signal 9|no heartbeat|killed by signal 19/];

sub gone { my $pid = shift; !-e "/proc/$pid" || slurp("/proc/$pid/stat") =~ /^\d+ \(.*?\) Z/ }

# Established client connections of PORT held by process PID.
sub conns_of {
    my ($pid, $port) = @_;
    my %ino;
    for my $fd (glob "/proc/$pid/fd/*") {
        my $l = readlink($fd) // next;
        $ino{$1} = 1 if $l =~ /^socket:\[(\d+)\]/;
    }
    my $n = 0;
    for my $line (split /\n/, slurp("/proc/$pid/net/tcp")) {
        my @f = split ' ', $line;
        next unless @f > 9 && $f[1] =~ /:([0-9A-F]{4})$/;
        $n++ if hex($1) == $port && $f[3] eq '01' && $ino{ $f[9] };
    }
    return $n;
}

# The shared-memory region, read through the master's memfd: per-server
# sums of the connection counts and the owner of each row.
sub shm_view {
    my ($master) = @_;
    my ($path) = grep { (readlink($_) // '') =~ m{^/memfd:portico} } glob "/proc/$master/fd/*";
    return undef unless $path;
    open my $fh, '<:raw', $path or return undef;
    my $hdr;
    read($fh, $hdr, 40 + 512 * 4) or return undef;
    my ($magic, $ver, $rows, $servers, $size, $off, $used) = unpack 'L L L L Q Q L', $hdr;
    my @owner = unpack 'l512', substr($hdr, 40);
    my @sum = (0, 0);
    for my $r (0 .. $used - 1) {
        seek $fh, $off + $r * $servers * 4, 0;
        read $fh, my $row, 8;
        my @c = unpack 'L2', $row;
        $sum[$_] += $c[$_] for 0, 1;
    }
    return { sum => \@sum, owners => [grep { $_ } @owner] };
}

sub iso_epoch {
    my ($iso) = @_;
    my ($Y, $M, $D, $h, $m, $s, $ms) = $iso =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d+)Z/ or return 0;
    return timegm($s, $m, $h, $D, $M - 1, $Y) + $ms / 1000;
}

# 1. SIGKILL under load; the replacement's first accepted connection.
{
    my $p = Portico->start($conf, upstreams => { a => $ua, b => $ub }, errors_ok => $errors_ok,
                           log_level => 'debug');
    my $port = $p->port;
    my $ka = Load->start($port, clients => 4, mode => 'keepalive');
    my $cl = Load->start($port, clients => 2, mode => 'close');
    sleep 0.5;
    my ($victim) = sort { $a <=> $b } $p->workers;
    kill 'STOP', $victim;    # freeze its connection set while we count it
    my $open = conns_of($victim, $port);
    my $t_kill = time;
    kill 'KILL', $victim;
    # New connections until one is served by a new pid (half of them hash
    # to the dead worker's socket and wait in its queue for the replacement).
    my ($new, $t_first);
    my $deadline = time + T(3);
    while (time < $deadline && !$t_first) {
        my $r = http_get($port, '/probe', headers => ['Connection: close'], timeout => T(3));
        ($new) = grep { $_ != $victim } grep { my $w = $_; !grep { $_ == $w } @{ $p->{workers_seen} } } $p->workers;
        next unless $new;
        for my $l ($p->error_lines) {
            next unless $l =~ /^(\S+) \[debug\] $new#\d+ close client connection/;
            $t_first = iso_epoch($1);
            last;
        }
    }
    ok $t_first, "replacement pid $new served a connection";
    my $ms = ($t_first - $t_kill) * 1000;
    # The log clock has ms resolution: allow the 1 ms it rounds away.
    cmp_ok $ms, '<=', T(0.1) * 1000 + 1, sprintf 'the replacement accepted %.1f ms after the kill', $ms;
    my ($logged) = map { /accepting (\d+) ms after/ ? $1 : () } $p->error_lines;
    diag sprintf "respawn: first connection accepted by the replacement %.1f ms after kill -9; "
      . "master: READY %s ms after the reap", $ms, $logged // '?';
    sleep 0.5;
    my $r1 = $ka->stop;
    my $r2 = $cl->stop;
    my $failed = $r1->{failed} + $r2->{failed};
    cmp_ok $failed, '<=', $open,
      "failed requests ($failed) <= connections the killed worker had open ($open)"
      or diag join "\n", @{ $r1->{errors} }, @{ $r2->{errors} };
    is $r1->{non2xx} + $r2->{non2xx}, 0, 'no non-2xx response';
    diag sprintf "kill -9 under load: %d keep-alive + %d per-request answered, %d failed, "
      . "%d connections were open on the killed worker",
      $r1->{ok}, $r2->{ok}, $failed, $open;
    $p->finish;
}

# 2. least_conn counts after a crash: the dead worker's row is released.
{
    (my $c1 = $conf) =~ s/workers = 2/workers = 1/;
    my $p = Portico->start($c1, upstreams => { a => $ua, b => $ub }, errors_ok => $errors_ok);
    my $port = $p->port;
    my @slow = map {
        my $c = Portico::Client->new($port);
        $c->send(Portico::build_request('GET', "/slow$_", headers => ['X-Up-Delay: 4']));
        $c;
    } 1 .. 3;
    my $v;
    ok wait_for(sub { $v = shm_view($p->pid); $v && $v->{sum}[0] + $v->{sum}[1] == 3 }, T(5)),
      'three upstream connections counted in shared memory'
      or diag explain $v;
    my @w = $p->workers;
    is_deeply [sort @{ $v->{owners} }], [sort @w], 'the shm rows are owned by the live workers';
    kill 'KILL', @w;
    ok wait_for(sub { my @n = $p->workers; @n == 1 && $n[0] != $w[0] }, T(5)), 'worker replaced'
      or diag "workers: @{[ $p->workers ]} (killed @w)";
    ok wait_for(sub { $v = shm_view($p->pid); $v->{sum}[0] + $v->{sum}[1] == 0 }, T(5)),
      'after the crash the counts are back to 0 (the dead row was released)'
      or diag explain $v;
    is_deeply $v->{owners}, [$p->workers], 'only the replacement owns a row';
    # least_conn alternates again over idle servers.
    my %seen;
    for (1 .. 4) {
        my $r = http_get($port, "/after$_", timeout => T(5));
        $seen{ $r->header('X-Backend') // '?' }++;
    }
    is_deeply \%seen, { a => 2, b => 2 }, 'least_conn spreads evenly after the crash'
      or diag explain \%seen;
    $_->close for @slow;
    $p->finish;
}

# 3. A stopped worker sends no heartbeat: killed after ~2 s and replaced.
{
    my $p = Portico->start($conf, upstreams => { a => $ua, b => $ub }, errors_ok => $errors_ok);
    my ($victim) = $p->workers;
    my $t = time;
    kill 'STOP', $victim;
    ok wait_for(sub { gone($victim) }, T(5)), 'the silent worker is killed';
    my $dt = time - $t;
    cmp_ok $dt, '>=', 1.5, sprintf 'not before the heartbeat timeout (%.2f s)', $dt;
    ok scalar(grep { /pid $victim\) sent no heartbeat/ } $p->error_lines), 'and the reason logged';
    ok wait_for(sub { scalar($p->workers) == 2 }, T(5)), 'and replaced';
    is http_get($p->port, '/x', timeout => T(5))->status, 200, 'serving';
    $p->finish;
}

done_testing;
