# Graceful shutdown (QUIT) under load loses nothing: requests in flight
# finish with Connection: close, an idle keep-alive connection still gets
# an answer within the grace, then is closed; new connections are refused,
# not queued and reset. USR1 reopens the logs after logrotate renamed them.
# Each worker logs what it served when it exits (QUIT, and old workers at
# the end of a reload's drain): the counts add up to what the clients did.
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
my $conf = <<'EOF2';
[main]
workers = 2
shutdown_timeout = 5s
access_log = {dir}/access.log

[listener web]
listen = 127.0.0.1:{port}

[upstream app]
server = {up:app}

[route all]
upstream = app
EOF2

for my $mode (qw(keepalive close)) {
    my $p = Portico->start($conf, upstreams => { app => $up });
    my $port = $p->port;
    my $load = Load->start($port, clients => 4, mode => $mode, until_refused => 1);
    # An idle keep-alive connection, and one request in flight on the upstream.
    my $idle = Portico::Client->new($port);
    is $idle->request('GET', '/idle')->status, 200, "$mode: idle connection served once";
    my $idle2 = Portico::Client->new($port);
    is $idle2->request('GET', '/idle2')->status, 200, "$mode: a second idle connection";
    my $slow = Portico::Client->new($port);
    $slow->send(Portico::build_request('GET', '/slow', headers => ['X-Up-Delay: 1']));
    sleep 0.3;
    my $t0 = time;
    $p->signal('QUIT');
    sleep 0.2;
    my $r = $idle->request('GET', '/during-grace', timeout => T(5));
    is $r->status, 200, "$mode: a request on an idle connection within the grace is answered";
    is lc($r->header('Connection') // ''), 'close', '... with Connection: close';
    $idle->close;
    my $s = $slow->read_final(timeout => T(5));
    is $s->status, 200, "$mode: the request in flight finishes";
    is lc($s->header('Connection') // ''), 'close', '... with Connection: close';
    $slow->close;
    ok $idle2->closed(T(3)), "$mode: the idle connection is closed after the grace";
    ok wait_for(sub { !$p->alive }, T(8)), "$mode: the master exits";
    my $dt = time - $t0;
    is(($p->{exit_status} // -1) >> 8, 0, "$mode: with status 0 after ${\ sprintf '%.1f', $dt} s");
    my $res = $load->stop;
    is $res->{failed} + $res->{non2xx}, 0,
      "$mode: graceful QUIT under load, no failed request ($res->{ok} answered)"
      or diag join "\n", @{ $res->{errors} };
    diag sprintf "graceful QUIT, %s: %d answered, %d failed, %d non-2xx; exit after %.1f s",
      $mode, @$res{qw(ok failed non2xx)}, $dt;
    ok !Portico::Client->new($port), "$mode: nothing listens afterwards";
    $p->check_logs;
}

# "worker exiting: N requests on M connections", by worker pid:
# pid => [slot, requests, connections].
sub exit_counts {
    my ($p) = @_;
    my %c;
    for ($p->error_lines) {
        $c{$1} = [$2, $3, $4] if / (\d+)#(\d+) worker exiting: (\d+) requests on (\d+) connections$/;
    }
    return \%c;
}

sub sum_of { my ($c, $pids, $i) = @_; my $n = 0; $n += $c->{$_}[$i] for @$pids; return $n }

my $count_conf = <<'EOF2';
[main]
workers = 2
shutdown_timeout = 5s

[listener web]
listen = 127.0.0.1:{port}

[upstream app]
server = {up:app}

[route ret]
path = /ret
methods = GET
return = 200 ok

[route all]
upstream = app
EOF2

# Known traffic: 30 requests over 3 keep-alive connections (proxied, a
# local return, a 405 portico makes), and 10 with Connection: close, one
# of them a 400. Returns the connections it opened.
sub known_traffic {
    my ($port, $tag) = @_;
    my $ok = 0;
    for my $k (1 .. 3) {
        my $c = Portico::Client->new($port) or return;
        for my $i (1 .. 10) {
            my ($m, $t, $want) = $i <= 6 ? ('GET', "/$tag/k$k/$i", 200)
                : $i <= 8 ? ('GET', '/ret', 200) : ('POST', '/ret', 405);
            my $r = $c->request($m, $t, $m eq 'POST' ? (body => 'x') : ());
            $ok++ if $r->status == $want;
        }
        $c->close;
    }
    for my $i (1 .. 10) {
        my $c = Portico::Client->new($port) or return;
        if ($i == 10) {
            $c->send("BROKEN\r\n\r\n");
            $ok++ if ($c->read_all(T(3)) // '') =~ m{^HTTP/1\.1 400 };
        } else {
            my $r = $c->request('GET', "/$tag/c$i", headers => ['Connection: close']);
            $ok++ if $r->status == 200 && $c->closed(T(3));
        }
        $c->close;
    }
    is $ok, 40, "$tag: 40 requests answered as expected";
    return 13;
}

# QUIT: each worker logs its counts, and they add up.
{
    my $p = Portico->start($count_conf, upstreams => { app => $up });
    my @w = $p->workers;
    is scalar(@w), 2, 'counts: two workers';
    my $opened = known_traffic($p->port, 'quit') + 1;    # + wait_ready's probe
    $p->signal('QUIT');
    ok wait_for(sub { !$p->alive }, T(8)), 'counts: the master exits on QUIT';
    my $c = exit_counts($p);
    is_deeply [sort { $a <=> $b } keys %$c], [sort { $a <=> $b } @w], 'each worker logs one exit line'
      or diag explain $c;
    is_deeply [sort map { $_->[0] } values %$c], [0, 1], '... one per slot';
    is sum_of($c, \@w, 1), 40, 'the requests add up to the 40 made';
    is sum_of($c, \@w, 2), $opened, "the connections add up to the $opened opened";
    diag join ', ', map { "worker $c->{$_}[0]: $c->{$_}[1] requests on $c->{$_}[2] connections" } sort keys %$c;
    $p->check_logs;
}

# Reload: the old workers log their counts when their drain ends; the new
# ones count only what came after.
{
    my $p = Portico->start($count_conf, upstreams => { app => $up });
    my @old = $p->workers;
    my $opened = known_traffic($p->port, 'reload') + 1;
    my $done = sub { scalar grep { /reload done/ } $p->error_lines };
    $p->signal('HUP');
    ok wait_for($done, T(10)), 'reload: done';
    ok wait_for(sub { my $c = exit_counts($p); !grep { !$c->{$_} } @old }, T(8)),
      'reload: both old workers log their exit line';
    my $c = exit_counts($p);
    is sum_of($c, \@old, 1), 40, 'reload: the old workers counted the 40 requests';
    is sum_of($c, \@old, 2), $opened, "reload: and the $opened connections";
    my @new = $p->workers;
    is scalar(@new), 2, 'reload: two new workers';
    my $ok = 0;
    for my $i (1 .. 5) { $ok++ if http_get($p->port, "/after/$i")->status == 200 }
    is $ok, 5, 'reload: the new workers serve';
    $p->signal('QUIT');
    ok wait_for(sub { !$p->alive }, T(8)), 'reload: the master exits on QUIT';
    $c = exit_counts($p);
    is scalar(grep { $c->{$_} } @new), 2, 'reload: the new workers log their exit line too';
    is sum_of($c, \@new, 1), 5, 'reload: with the 5 requests made after the reload';
    is sum_of($c, \@new, 2), 5, '... on 5 connections';
    $p->check_logs;
}

# USR1 after a rename: both logs are written to new files, by the master
# and by the workers.
{
    my $p = Portico->start($conf, upstreams => { app => $up });
    my $port = $p->port;
    is http_get($port, '/before')->status, 200, 'request before the rotation';
    my ($el, $al) = ($p->error_log, $p->dir . '/access.log');
    ok wait_for(sub { (slurp($al) // '') =~ m{/before} }, T(3)), 'access log written';
    rename $el, "$el.1" or die;
    rename $al, "$al.1" or die;
    $p->signal('USR1');
    ok wait_for(sub { -e $el && slurp($el) =~ /logs reopened/ }, T(3)), 'the master writes a new error log';
    sleep 0.2;    # the workers got their USR1 too
    is http_get($port, '/after')->status, 200, 'request after the rotation';
    my $bad = Portico::Client->new($port);
    $bad->send("BROKEN\r\n\r\n");
    $bad->read_all(T(2));
    ok wait_for(sub { (slurp($al) // '') =~ m{/after} }, T(3)), 'the workers write the new access log';
    ok wait_for(sub { slurp($el) =~ /\] \d+#\d+ / }, T(3)), 'and the new error log';
    unlike slurp("$al.1"), qr{/after}, 'nothing more in the renamed access log';
    $p->finish;
}

done_testing;
