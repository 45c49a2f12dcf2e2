# Balancing: smooth weighted round robin (exact counts), backup servers,
# down servers, ip_hash stability, max_conns -> 503.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;
use Upstream;

my $a  = Upstream->new(name => 'a');
my $b  = Upstream->new(name => 'b');
my $c  = Upstream->new(name => 'c');
my $bk = Upstream->new(name => 'backup');
my $dead = Upstream->refused(name => 'dead');
my $slow = Upstream->new(name => 'slow');
my $h1 = Upstream->new(name => 'h1');
my $h2 = Upstream->new(name => 'h2');
my $h3 = Upstream->new(name => 'h3');

my $hold = Portico::test_dir() . '/release-slow';

my %opts = (upstreams => { a => $a, b => $b, c => $c, bk => $bk, dead => $dead,
                           slow => $slow, h1 => $h1, h2 => $h2, h3 => $h3 },
            errors_ok => [qr/refused|connect|upstream|down|fail|available/i]);
my $p = Portico->start(<<'EOF', %opts);
[listener web]
listen = 127.0.0.1:{port}

[upstream weighted]
server = {up:a} weight=3
server = {up:b} weight=1

[upstream with_backup]
server = {up:a}
server = {up:bk} backup

[upstream primary_down]
server = {up:a} down
server = {up:bk} backup

[upstream primary_dead]
server = {up:dead}
server = {up:bk} backup
max_fails = 1
fail_timeout = 30s

[upstream one_down]
server = {up:a} down
server = {up:b}
server = {up:c}

[upstream hashed]
balance = ip_hash
server = {up:h1}
server = {up:h2}
server = {up:h3}

[upstream limited]
server = {up:slow} max_conns=1
retries = 0

[route weighted]
path = /weighted/
upstream = weighted

[route with_backup]
path = /with-backup/
upstream = with_backup

[route primary_down]
path = /primary-down/
upstream = primary_down

[route primary_dead]
path = /primary-dead/
upstream = primary_dead

[route one_down]
path = /one-down/
upstream = one_down

[route hashed]
path = /hashed/
upstream = hashed

[route limited]
path = /limited/
upstream = limited
EOF
my $port = $p->port;

sub backends {
    my ($path, $n, %o) = @_;
    my %count;
    my @seq;
    my $cl = Portico::Client->new($port, %o);
    for my $i (1 .. $n) {
        my $r = $cl->request('GET', "$path$i");
        my $who = $r->status == 200 ? $r->header('x-backend') // '?' : "status" . $r->status;
        $count{$who}++;
        push @seq, $who;
        $cl = Portico::Client->new($port, %o) if $o{new_conn} || $cl->closed(0);
    }
    return (\%count, \@seq);
}

# Weighted round robin 3:1 over 40 requests.
{
    my ($n, $seq) = backends('/weighted/', 40);
    is $n->{a}, 30, 'weight 3 server got 30 of 40';
    is $n->{b}, 10, 'weight 1 server got 10 of 40';
    # smooth: never more than 3 a's in a row, b spread out
    my $run = 0;
    my $max = 0;
    for (@$seq) { $run = $_ eq 'a' ? $run + 1 : 0; $max = $run if $run > $max }
    ok $max <= 3, "smooth: at most 3 a in a row (@$seq[0..11] ...)";
    # also over new client connections
    ($n) = backends('/weighted/', 20, new_conn => 1);
    is $n->{a}, 15, 'weights hold across client connections (a)';
    is $n->{b}, 5, 'weights hold across client connections (b)';
}

# Backup used only when the primary is unavailable.
{
    $bk->reset_log;
    my ($n) = backends('/with-backup/', 10);
    is $n->{a}, 10, 'primary serves everything while up';
    is $bk->request_count, 0, 'backup unused while the primary is up';

    ($n) = backends('/primary-down/', 10);
    is $n->{backup}, 10, 'backup serves when the primary is down';

    ($n) = backends('/primary-dead/', 10);
    is $n->{backup}, 10, 'backup serves when the primary refuses connections (all 200)'
      or diag explain $n;
}

# A down server is never used.
{
    $a->reset_log;
    my ($n) = backends('/one-down/', 20, new_conn => 1);
    ok !$n->{a}, 'down server got no request';
    is $a->connections, 0, 'down server saw no connection';
    is(($n->{b} // 0) + ($n->{c} // 0), 20, 'the others served all');
    ok $n->{b} && $n->{c}, 'both other servers used';
}

# ip_hash: the same client address always gets the same server.
{
    for my $ip ('127.0.0.1', '127.0.0.2', '127.0.1.3', '127.1.2.4') {
        my ($n) = backends('/hashed/', 8, new_conn => 1, local_addr => $ip);
        my @who = keys %$n;
        is scalar(@who), 1, "ip_hash: client $ip always on one server (@who)";
        like $who[0], qr/^h[123]$/, 'a real server';
    }
}

# max_conns: a second concurrent request gets 503 while the only server is
# busy with one.
{
    unlink $hold;
    my $c1 = Portico::Client->new($port);
    $c1->send(build_request('GET', '/limited/1', headers => ["X-Up-Hold: $hold"]));
    ok wait_for(sub { $slow->heads >= 1 }, T(5)), 'first request reached the slow server';
    my $r = http_get($port, '/limited/2');
    is $r->status, 503, 'max_conns exceeded: 503' or diag $r->summary;
    like $r->header('content-type') // '', qr{^text/plain}, '503 is text/plain';
    is scalar(my @h = $slow->heads), 1, 'the second request did not reach the server';
    write_file($hold, '');
    my $r1 = $c1->read_response;
    is $r1->status, 200, 'held request completes after release';
    my $r3 = http_get($port, '/limited/3');
    is $r3->status, 200, 'free again after the first completed' or diag $r3->summary;
}

$p->finish;
done_testing;
