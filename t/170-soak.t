# Soak (~50 s): mixed traffic through portico to nginx for the whole run:
# wrk keep-alive load, plus clients doing Connection: close, chunked
# uploads, 1 MiB downloads, aborted downloads, 404s and 502s (an upstream
# that refuses), and a reload in the middle. Asserts: every request of the
# mixed clients got its expected status, the workers' RSS is flat after
# warm-up (last two thirds grow less than 512 KiB per worker), portico's
# CPU per request is printed, and the error log has nothing unexpected.
# PORTICO_SOAK_SECS sets the length.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use Portico;

my ($nginx) = grep { -x } map { "$_/nginx" } split(/:/, $ENV{PATH}), '/usr/sbin';
plan skip_all => 'nginx is not installed' unless $nginx;
my ($wrk) = grep { -x } map { "$_/wrk" } split(/:/, $ENV{PATH});

my $SECS = $ENV{PORTICO_SOAK_SECS} // 45;
# Under ASan freed memory sits in a quarantine that grows RSS by design.
my $asan = do { local $/; open my $f, '<', Portico::portico_bin() or die; my $b = <$f>; $b =~ /__asan_init/ };
my $dir = test_dir() . '/nginx';
mkdir $dir;
mkdir "$dir/logs";
write_file("$dir/big.bin", 'z' x (1 << 20));
my $up_port = free_port();
write_file("$dir/nginx.conf", <<"EOF");
user root; worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log; daemon off;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; client_max_body_size 20m;
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

my $dead = free_port();
my $p = Portico->start(<<"EOF", workers => 2, errors_ok => [qr/connect|refused|upstream/i]);
[listener web]
listen = 127.0.0.1:{port}
max_body_size = 20m

[upstream ngx]
server = 127.0.0.1:$up_port

[upstream dead]
server = 127.0.0.1:$dead
max_fails = 0

[route dead]
path = /dead
upstream = dead

[route missing]
path = /missing
return = 404 not here

[route all]
upstream = ngx
EOF
my $port = $p->port;

sub worker_pids { grep { my $c = Portico::slurp("/proc/$_/cmdline"); 1 } $p->workers }
sub rss_of {
    my ($pid) = @_;
    my $s = Portico::slurp("/proc/$pid/status");
    return $s =~ /^VmRSS:\s+(\d+) kB/m ? $1 * 1024 : 0;
}
sub cpu_of {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/stat" or return 0;
    my @f = split ' ', (split /\)/, <$f>)[1];
    return ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
}

# One mixed client: loops over the kinds until the deadline; reports
# "kind ok fail" lines on its pipe.
sub mixed_client {
    my ($deadline, $seed) = @_;
    my %ok;
    my %fail;
    my @kinds = qw(close chunked big abort missing dead keepalive);
    my $i = $seed;
    while (time < $deadline) {
        my $k = $kinds[ $i++ % @kinds ];
        my $good = eval {
            if ($k eq 'close') {
                my $r = http_get($port, '/small', headers => ['Connection: close']);
                $r->status == 200 && $r->body eq "small\n";
            } elsif ($k eq 'chunked') {
                my $r = Portico::http_request($port, 'POST', '/upload', body => 'q' x 70000,
                    chunked => 1, chunk_size => 7000);
                $r->status == 200;
            } elsif ($k eq 'big') {
                my $r = http_get($port, '/big.bin', timeout => T(20));
                $r->status == 200 && length($r->body) == (1 << 20);
            } elsif ($k eq 'abort') {
                my $c = Portico::Client->new($port);
                $c->send("GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n");
                $c->read_more(T(5));
                $c->reset;
                1;
            } elsif ($k eq 'missing') {
                http_get($port, '/missing')->status == 404;
            } elsif ($k eq 'dead') {
                http_get($port, '/dead')->status == 502;
            } else {
                # Ten requests, keep-alive; a server that says close (a
                # draining worker after the reload) gets a new connection,
                # as any client does.
                my $c = Portico::Client->new($port);
                my $n = 0;
                for (1 .. 10) {
                    my $r = $c->request('GET', '/small');
                    $n++ if $r->status == 200;
                    if (($r->header('connection') // '') =~ /close/i) {
                        $c->close;
                        $c = Portico::Client->new($port);
                    }
                }
                $c->close;
                $n == 10;
            }
        };
        $good ? $ok{$k}++ : $fail{$k}++;
    }
    return (\%ok, \%fail);
}

my $t0 = time;
my $deadline = $t0 + $SECS;
my @kids;
for my $n (1 .. 3) {
    pipe(my $r, my $w) or die;
    my $pid = fork // die;
    if (!$pid) {
        close $r;
        my ($ok, $fail) = mixed_client($deadline, $n * 2);
        print $w join(' ', map { "$_=" . ($ok->{$_} // 0) . '/' . ($fail->{$_} // 0) }
            sort keys %{ { %$ok, %$fail } }), "\n";
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    push @kids, [$pid, $r];
}
my $wrk_pid;
if ($wrk) {
    $wrk_pid = fork // die;
    if (!$wrk_pid) {
        open STDOUT, '>', "$dir/wrk.out";
        open STDERR, '>&', \*STDOUT;
        exec $wrk, '-t1', '-c16', '-d' . ($SECS - 1) . 's', "http://127.0.0.1:$port/small"
            or POSIX::_exit(127);
    }
}

# Reload a fifth of the way in; then sample RSS once a second.
sleep $SECS / 5;
my $before = grep { /reload done/ } $p->error_lines;
$p->signal('HUP');
ok wait_for(sub { (grep { /reload done/ } $p->error_lines) > $before }, T(10)), 'reload done mid-soak';
my @w = $p->workers;
ok wait_for(sub { @w = $p->workers; @w == 2 }, T(15)), 'old workers drained after the reload';
my %cpu0 = map { $_ => cpu_of($_) } @w;
my $tc = time;
my @samples;    # [time, {pid => rss}]
while (time < $deadline - 0.5) {
    push @samples, [time - $t0, { map { $_ => rss_of($_) } @w }];
    sleep 1;
}
my %cpu = map { $_ => cpu_of($_) - $cpu0{$_} } @w;
my $cpu_secs = time - $tc;

my %ok;
my %fail;
for my $k (@kids) {
    my ($pid, $r) = @$k;
    my $line = <$r> // '';
    waitpid $pid, 0;
    for (split ' ', $line) {
        my ($kind, $o, $f) = /^(\w+)=(\d+)\/(\d+)$/ or next;
        $ok{$kind} += $o;
        $fail{$kind} += $f;
    }
}
waitpid $wrk_pid, 0 if $wrk_pid;
my $wrk_out = $wrk_pid ? Portico::slurp("$dir/wrk.out") : '';
my ($wrk_n) = $wrk_out =~ /(\d+) requests in/;

for my $kind (qw(close chunked big abort missing dead keepalive)) {
    ok(($ok{$kind} // 0) > 0 && !$fail{$kind},
        "$kind: " . ($ok{$kind} // 0) . ' ok, ' . ($fail{$kind} // 0) . ' failed');
}
if ($wrk_pid) {
    ok $wrk_n && $wrk_n > 1000, "wrk: $wrk_n keep-alive requests";
    unlike $wrk_out, qr/Socket errors|Non-2xx/, 'wrk: no errors' or diag $wrk_out;
}

# Flat memory: compare the sample a third of the way into the sampled
# period with the last one, per worker.
ok @samples >= 6, scalar(@samples) . ' RSS samples';
my $third = $samples[ int(@samples / 3) ];
my $last = $samples[-1];
for my $pid (@w) {
    my $growth = $last->[1]{$pid} - $third->[1]{$pid};
    ok $asan || $growth < 512 * 1024, sprintf 'worker %d: RSS %.1f MiB at %.0f s, %.1f MiB at %.0f s (%+d KiB)',
        $pid, $third->[1]{$pid} / 1048576, $third->[0], $last->[1]{$pid} / 1048576, $last->[0],
        $growth / 1024;
}
my $total = 0;
$total += $_ for values %ok;
diag sprintf 'soak %.0f s: wrk %s keep-alive requests, mixed clients %d requests (%s); worker CPU '
    . '%.1f s over %.0f s after the reload',
    time - $t0, $wrk_n // 'n/a', $total, join(', ', map { "$_ $ok{$_}" } sort keys %ok),
    (eval { my $s = 0; $s += $_ for values %cpu; $s }), $cpu_secs;

$p->finish;
done_testing;
