# max_connections: at the limit a worker stops accepting (the kernel queues
# the next connections), and resumes as soon as a connection closes. The
# worker keeps serving the connections it has meanwhile.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Portico;

my $p = Portico->start(<<'EOF', workers => 1, errors_ok => [qr/max_connections/]);
[main]
max_connections = 8

[listener web]
listen = 127.0.0.1:{port}

[route all]
return = 200 ok
EOF
my $port = $p->port;

# Fill the worker with 8 keep-alive connections.
my @held;
for (1 .. 8) {
    my $c = Portico::Client->new($port);
    my $r = $c->request('GET', '/');
    is $r->status, 200, "connection $_ served";
    push @held, $c;
}

# The 9th connects (kernel backlog) but is not served while 8 are open.
my $extra = Portico::Client->new($port);
ok $extra, '9th connection queued by the kernel';
$extra->send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
my $early = $extra->read_response(timeout => 0.5);
ok !$early->status, 'no answer while the worker is at max_connections';

# The held connections are still served.
is $held[0]->request('GET', '/')->status, 200, 'open connections keep being served at the limit';

# One closes: accepting resumes and the queued request is answered.
$held[-1]->close;
my $t0 = time;
my $r = $extra->read_response(timeout => T(3));
is $r->status, 200, 'queued connection served once a slot frees';
ok time - $t0 < T(1.5), sprintf('resumed within %.0f ms', (time - $t0) * 1000);

my @warn = grep { /max_connections/ } $p->error_lines;
ok @warn, 'the pause is logged';

$p->finish;

# Out of descriptors (EMFILE): the worker pauses accepting instead of
# spinning on a listener it cannot drain, and recovers when fds free up.
SKIP: {
    my ($prlimit) = grep { -x } map { "$_/prlimit" } split /:/, $ENV{PATH};
    skip 'prlimit is not installed', 5 unless $prlimit;
    my $q = Portico->start(<<'EOF2', workers => 1, errors_ok => [qr/accept|Too many open files/]);
[listener web]
listen = 127.0.0.1:{port}

[route all]
return = 200 ok
EOF2
    my ($w) = $q->workers;
    system($prlimit, "--pid=$w", '--nofile=24:24') == 0 or skip 'cannot lower the worker\'s fd limit', 5;
    my @c = grep { defined } map { Portico::Client->new($q->port) } 1 .. 40;
    $_->send("GET / HTTP/1.1\r\nHost: h\r\n\r\n") for @c;
    sleep 0.3;
    my $cpu = sub { open my $f, '<', "/proc/$w/stat" or return 0; my @f = split ' ', (split /\)/, <$f>)[1]; $f[11] + $f[12] };
    my $t0 = $cpu->();
    sleep 1;
    my $used = $cpu->() - $t0;
    ok $used < 20, "worker does not spin while out of descriptors ($used ticks in 1 s)";
    my $logged = grep { /Too many open files/ } $q->error_lines;
    ok $logged >= 1 && $logged <= 2, "EMFILE is logged, not once per retry ($logged lines)";
    my $served = grep { my $r = $_->read_response(timeout => 0.2); $r->status && $r->status == 200 } @c;
    ok $served > 0 && $served < 40, "some requests served at the fd limit ($served of 40)";
    $_->close for @c;
    system($prlimit, "--pid=$w", '--nofile=1024:1024');
    my $r;
    ok wait_for(sub { $r = http_get($q->port, '/'); $r->status == 200 }, T(3)), 'serving again once descriptors free up';
    ok kill(0, $w), 'the same worker survived';
    $q->finish;
}
done_testing;
