# max_connections_per_ip: concurrent connections per client address and
# listener, counted over every worker in shared memory. The excess
# connection is reset at once without a response; other addresses are
# served; closing frees room; a worker killed with -9 does not leak its
# counts (its master takes them back when it reaps it).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Portico;

my $LIMIT = 4;
my $p = Portico->start(<<"EOF", workers => 2, errors_ok => [qr/max_connections_per_ip/]);
[listener web]
listen = 127.0.0.1:{port}
max_connections_per_ip = $LIMIT

[listener other]
listen = 127.0.0.1:{port:other}
max_connections_per_ip = 1

[route all]
return = 200 ok
EOF
my $port = $p->port;

# A keep-alive connection from FROM that got its answer, or undef when the
# server closed it without one.
sub open_served {
    my ($from, $to) = @_;
    # A reset that comes before the connect call returns fails the connect.
    my $c = Portico::Client->new($to // $port, local_addr => $from) or return undef;
    $c->send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    my $r = $c->read_response(timeout => T(5));
    return $r->status && $r->status == 200 ? $c : undef;
}

# Open connections from FROM until one is refused (or MAX are open).
sub fill {
    my ($from, $max, $to) = @_;
    my @held;
    while (@held < $max) {
        my $c = open_served($from, $to) or last;
        push @held, $c;
    }
    return @held;
}

my @a = fill('127.0.0.1', $LIMIT + 3);
is scalar @a, $LIMIT, "$LIMIT connections from 127.0.0.1 served, the next one refused";

# The refused one: closed at once, not a byte of response.
for my $i (1 .. 3) {
    my $t0 = time;
    my $c = Portico::Client->new($port, local_addr => '127.0.0.1');
    ok !$c || $c->closed(T(3)), "excess connection $i closed";
    ok time - $t0 < T(2), 'closed at once';
    is $c ? $c->buffered : '', '', 'without a response';
}

# The held ones are still served.
is $a[0]->request('GET', '/')->status, 200, 'connections under the limit keep being served';

# Another address is counted apart.
my @b = fill('127.0.0.2', $LIMIT + 1);
is scalar @b, $LIMIT, "127.0.0.2 gets its own $LIMIT";

# Another listener is counted apart (its own limit of 1).
my @o = fill('127.0.0.1', 3, $p->port('other'));
is scalar @o, 1, 'the other listener counts apart, with its own limit';

# Closing two frees two.
$_->close for splice @a, 0, 2;
sleep T(0.5);
my @more = fill('127.0.0.1', 3);
is scalar @more, 2, 'after closing two, two more are accepted and the third refused';
push @a, @more;

# Rate-limited logging: one line per worker for all the refusals above.
my @warn = grep { /max_connections_per_ip/ } $p->error_lines;
ok @warn >= 1 && @warn <= 2, 'refusals are logged once per 10 s per worker, not per connection ('
    . scalar(@warn) . ' lines)';
like $warn[0] // '', qr/127\.0\.0\.1 on (web|other)/, 'the log names the address and the listener';

# A worker killed with -9: its counts go with it. Kill the one holding most
# of the connections.
sub client_sockets {
    my ($pid) = @_;
    my $n = 0;
    for my $fd (glob "/proc/$pid/fd/*") {
        my $l = readlink($fd) // next;
        $n++ if $l =~ /^socket:/;
    }
    return $n;
}
my @w = $p->workers;
is scalar @w, 2, 'two workers';
my ($victim) = sort { client_sockets($b) <=> client_sockets($a) } @w;
kill 'KILL', $victim;
ok Portico::wait_for(sub { my @n = $p->workers; @n == 2 && !grep { $_ == $victim } @n }, T(10)),
    'the master replaced the killed worker';
$_->close for @a, @b, @o;
@a = @b = @o = ();
sleep T(1);
my @c = fill('127.0.0.1', $LIMIT + 2);
is scalar @c, $LIMIT, 'after the kill and the closes, the full limit is available again';
my @d = fill('127.0.0.2', $LIMIT + 2);
is scalar @d, $LIMIT, 'for the other address too';
$_->close for @c, @d;

$p->expect_errors(qr/killed by signal|signal 9|exited/);
$p->finish;
done_testing;
