# 50,000 idle keep-alive connections, each after one request: the workers'
# memory growth per connection stays within DESIGN.md's budget (400 B of
# RSS per idle keep-alive connection), and a new client is still served
# promptly. The descriptor limit here is 20000 per process (a hard limit
# this test cannot raise), so 4 workers share the connections (SO_REUSEPORT)
# and 5 client processes open 10,000 each from their own source address
# (127.0.0.2-6: no ephemeral port exhaustion). Under ASan (memory figures
# meaningless, everything slower) the count drops to 5,000 and only
# promptness is checked. PORTICO_IDLE_CONNS overrides the count.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Socket qw(:all);
use POSIX ();
use Portico;

my $bin = Portico::portico_bin();
my $asan = do { local $/; open my $f, '<', $bin or die; my $b = <$f>; $b =~ /__asan_init/ };
my $TOTAL = $ENV{PORTICO_IDLE_CONNS} // ($asan ? 5000 : 50000);
my $CLIENTS = 5;
my $PER = int($TOTAL / $CLIENTS);
my $BUDGET = 400;    # bytes of RSS per idle keep-alive connection (DESIGN.md)

my $p = Portico->start(<<'EOF', workers => 4);
[main]
max_connections = 19000

[listener web]
listen = 127.0.0.1:{port}
idle_timeout = 5m
header_timeout = 1m

[route all]
return = 200 ok
EOF
my $port = $p->port;
my @w = $p->workers;
is scalar @w, 4, 'four workers';

sub mem {
    my ($rss, $pss) = (0, 0);
    for my $pid (@w) {
        my $s = Portico::slurp("/proc/$pid/status");
        $rss += $1 * 1024 if $s =~ /^VmRSS:\s+(\d+) kB/m;
        my $r = Portico::slurp("/proc/$pid/smaps_rollup");
        $pss += $1 * 1024 if $r =~ /^Pss:\s+(\d+) kB/m;
    }
    return ($rss, $pss);
}

# Warm up: every worker serves some connections, so allocator pools and the
# first pages are there before the baseline.
my @warm = map { Portico::http_get($port, '/') } 1 .. 200;
is scalar(grep { ($_->status // 0) == 200 } @warm), 200, 'warm-up served';
$_->{conn}->close for @warm;
sleep 0.5;
my ($rss0, $pss0) = mem();

# A client process: PER connections from SRC, one request each, then hold
# them until told to go (a byte on its stdin pipe). Reports "ok N" once all
# are idle.
sub client {
    my ($src, $wfh) = @_;
    my @s;
    my $req = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    my $ok = 0;
    my $batch = 500;
    for (my $i = 0; $i < $PER; $i += $batch) {
        my @b;
        for my $j (1 .. ($PER - $i < $batch ? $PER - $i : $batch)) {
            socket(my $s, PF_INET, SOCK_STREAM, 0) or last;
            bind($s, pack_sockaddr_in(0, inet_aton($src))) or last;
            connect($s, pack_sockaddr_in($port, inet_aton('127.0.0.1'))) or last;
            syswrite($s, $req);
            push @b, $s;
        }
        for my $s (@b) {
            my $buf = '';
            my $rin = '';
            vec($rin, fileno($s), 1) = 1;
            while ($buf !~ /\r\n\r\nok/) {
                select(my $r = $rin, undef, undef, 10) or last;
                sysread($s, $buf, 4096, length $buf) or last;
            }
            $ok++ if $buf =~ m{^HTTP/1.1 200};
        }
        push @s, @b;
    }
    syswrite $wfh, "ok $ok\n";
    return \@s;
}

my $t0 = time;
my (@pids, @rd, @go);
for my $i (0 .. $CLIENTS - 1) {
    pipe(my $r, my $w) or die;
    pipe(my $gr, my $gw) or die;
    my $pid = fork // die;
    if (!$pid) {
        close $r;
        close $gw;
        my $held = client('127.0.0.' . (2 + $i), $w);
        sysread $gr, my $x, 1;    # hold until told (or the parent died)
        POSIX::_exit(0);
    }
    close $w;
    close $gr;
    push @pids, $pid;
    push @rd, $r;
    push @go, $gw;
}
my $served = 0;
for my $r (@rd) {
    my $line = <$r> // '';
    $served += $1 if $line =~ /^ok (\d+)/;
}
my $open_s = time - $t0;
is $served, $PER * $CLIENTS, "$served keep-alive connections opened and served once";
my $nconn = 0;
for my $pid (@w) { $nconn += () = grep { (readlink($_) // '') =~ /^socket:/ } glob "/proc/$pid/fd/*" }
ok $nconn >= $served, "the workers hold them ($nconn sockets)";

sleep 0.5;
my ($rss1, $pss1) = mem();
my $per_rss = ($rss1 - $rss0) / ($served || 1);
my $per_pss = ($pss1 - $pss0) / ($served || 1);

# A new client while they are all open.
my @lat;
for (1 .. 20) {
    my $s = time;
    my $r = Portico::http_get($port, '/', local_addr => '127.0.0.1');
    push @lat, time - $s if ($r->status // 0) == 200;
}
@lat = sort { $a <=> $b } @lat;
is scalar @lat, 20, 'a new client is served with all of them open';
ok @lat && $lat[-1] < T(0.5), sprintf 'promptly (slowest of 20: %.1f ms)', ($lat[-1] // 9) * 1000;

diag sprintf '%d idle connections opened in %.1f s over 4 workers; worker RSS %.1f -> %.1f MiB '
    . '(%.0f B per connection), PSS %.0f B per connection; new client p50 %.1f ms',
    $served, $open_s, $rss0 / 1048576, $rss1 / 1048576, $per_rss, $per_pss,
    ($lat[ $#lat / 2 ] // 0) * 1000;
SKIP: {
    skip 'memory per connection is not meaningful under ASan', 1 if $asan;
    ok $per_rss <= $BUDGET, sprintf 'RSS growth %.0f B per idle connection (budget %d B)', $per_rss,
        $BUDGET;
}

close $_ for @go;
waitpid $_, 0 for @pids;
ok wait_for(sub {
        my $n = 0;
        for my $pid (@w) { $n += () = grep { (readlink($_) // '') =~ /^socket:/ } glob "/proc/$pid/fd/*" }
        $n < 100;
    }, T(20)), 'the workers let go of them once the clients close';

$p->finish;
done_testing;
