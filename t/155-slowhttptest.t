# slowhttptest against portico (nginx behind it): slowloris (-H), slow body
# (-B) and slow read (-X), ~8 s each with hundreds of connections. During
# each attack another client keeps being served (its requests and latency
# are counted and printed); slowloris and slow body connections are cut by
# portico itself (header_timeout, body_min_rate) well before the attack
# ends; afterwards portico's client connections go back down. A slow
# reader that keeps reading is not cut (send_timeout is per gap).
# Skipped when slowhttptest or nginx is missing (scripts/deps.sh installs
# both).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use Portico;

my ($slow) = grep { -x } map { "$_/slowhttptest" } split(/:/, $ENV{PATH}), '/usr/bin';
plan skip_all => 'slowhttptest is not installed (scripts/deps.sh installs it)' unless $slow;
my ($nginx) = grep { -x } map { "$_/nginx" } split(/:/, $ENV{PATH}), '/usr/sbin';
plan skip_all => 'nginx is not installed' unless $nginx;

my $SECS = 8;
my $dir = test_dir() . '/nginx';
mkdir $dir;
mkdir "$dir/logs";
# 256 KiB: hundreds of slow readers of megabytes would push the whole
# machine's TCP into memory pressure (tcp_mem), slowing every process on it.
write_file("$dir/big.bin", 'b' x (1 << 18));
my $up_port = free_port();
# /upload: nginx buffers the whole body before proxying it to itself, so a
# slow body stays a slow body all the way.
write_file("$dir/nginx.conf", <<"EOF");
user root; worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log; daemon off;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000; client_max_body_size 20m;
  server { listen 127.0.0.1:$up_port; root $dir;
    location = /small { default_type text/plain; return 200 "small\\n"; }
    location = /upload { proxy_pass http://127.0.0.1:$up_port/small; }
    location = /big.bin { } } }
EOF
my $npid = fork // die;
if (!$npid) {
    open STDERR, '>', "$dir/stderr.log";
    exec $nginx, '-p', $dir, '-c', "$dir/nginx.conf";
    exit 127;
}
END { kill 'TERM', $npid if $npid }
ok wait_for(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$up_port") }, T(5)), 'nginx is up';

my $p = Portico->start(<<"EOF", workers => 1);
[listener web]
listen = 127.0.0.1:{port}
header_timeout = 3s
body_timeout = 3s
send_timeout = 3s

[upstream app]
server = 127.0.0.1:$up_port
# Like the client side: a connection held back by the upstream (its send or
# read side, 60 s by default) must not outlive the wait below.
send_timeout = 5s
read_timeout = 5s

[route all]
upstream = app
EOF
my $port = $p->port;
my ($worker) = $p->workers;

sub sockets {
    my $n = 0;
    for my $fd (glob "/proc/$worker/fd/*") {
        my $l = readlink($fd) // next;
        $n++ if $l =~ /^socket:/;
    }
    return $n;
}
# Client connections portico holds: established or half-closed sockets on
# its listening port (its idle upstream keep-alive pool is not counted).
sub client_conns {
    my $hex = sprintf '%04X', $port;
    my $n = 0;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        while (<$fh>) {
            my @c = split;
            $n++ if ($c[1] // '') =~ /:$hex$/ && ($c[3] eq '01' || $c[3] eq '08');
        }
    }
    return $n;
}
sub cpu_ticks {
    open my $f, '<', "/proc/$worker/stat" or return 0;
    my @f = split ' ', (split /\)/, <$f>)[1];
    return $f[11] + $f[12];
}

is Portico::http_get($port, '/small')->status, 200, 'served before the attacks';
my $base = sockets();

for my $attack (
    ['slowloris (-H)', '-H', '-i', 1, '-u', "http://127.0.0.1:$port/small"],
    ['slow body (-B)', '-B', '-i', 1, '-s', 100000, '-u', "http://127.0.0.1:$port/upload"],
    ['slow read (-X)', '-X', '-w', 1, '-y', 64, '-n', 1, '-z', 16, '-k', 1,
        '-u', "http://127.0.0.1:$port/big.bin"],
) {
    my ($name, @args) = @$attack;
    my $log = "$dir/slow-$args[0].log";
    my $t0 = time;
    my $cpu0 = cpu_ticks();
    my $apid = fork // die;
    if (!$apid) {
        open STDOUT, '>', $log;
        open STDERR, '>&', \*STDOUT;
        exec $slow, @args, '-c', 500, '-r', 250, '-l', $SECS, '-p', 3
            or POSIX::_exit(127);
    }
    # The other client: a new connection per request, all through the attack.
    my ($ok, $fail, @lat, $peak) = (0, 0);
    $peak = 0;
    sleep 1;    # let the attack ramp up
    while (time - $t0 < $SECS) {
        my $s = time;
        my $r = Portico::http_get($port, '/small', timeout => T(5));
        if (($r->status // 0) == 200) { $ok++; push @lat, time - $s } else { $fail++ }
        my $n = sockets();
        $peak = $n if $n > $peak;
        sleep 0.05;
    }
    waitpid $apid, 0;
    my $cpu = (cpu_ticks() - $cpu0) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
    @lat = sort { $a <=> $b } @lat;
    my $p50 = @lat ? $lat[ $#lat / 2 ] * 1000 : 0;
    my $max = @lat ? $lat[-1] * 1000 : 0;
    diag sprintf '%s: other client %d served, %d failed, latency p50 %.1f ms max %.1f ms; '
        . 'worker sockets peak %d; worker CPU %.2f s over %.1f s', $name, $ok, $fail, $p50, $max,
        $peak - $base, $cpu, time - $t0;
    ok $peak - $base >= 50, "$name: the attack held connections (peak " . ($peak - $base) . ')'
        or diag Portico::slurp($log);
    ok $ok >= 10 && $fail == 0, "$name: the other client was served throughout ($ok ok, $fail failed)";
    ok $max < T(2) * 1000, sprintf "$name: its slowest request took %.0f ms", $max;
    # slowhttptest's last status: how many of its connections the server
    # closed before the attack ended.
    (my $out = Portico::slurp($log)) =~ s/\e\[[0-9;]*[A-Za-z]//g;
    my @closed = $out =~ /closed:\s+(\d+)/g;
    my @connected = $out =~ /connected:\s+(\d+)/g;
    diag "$name: slowhttptest's last status: connected $connected[-1], closed $closed[-1]"
        if @closed && @connected;
    if ($args[0] ne '-X') {
        ok @closed && $closed[-1] >= 150, "$name: portico cut the attack's connections itself ("
            . ($closed[-1] // '?') . ' closed before the end)';
    }
    my $tw = time;
    my $down = wait_for(sub { client_conns() == 0 }, T(30));
    ok $down, sprintf "$name: client connections back down %.1f s after the attack (%d left)",
        time - $tw, client_conns()
        or diag `ss -tanoe 'sport = :$port' 2>&1`, Portico::slurp($p->error_log) =~ s/.*\n(?=(?:.*\n){0,40}\z)//sr;
}

is Portico::http_get($port, '/small')->status, 200, 'served after the attacks';
$p->expect_errors(qr/upstream|timeout|reset|closed|broken pipe/i);
$p->finish;
done_testing;
