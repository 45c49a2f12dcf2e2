# Graceful shutdown (QUIT) under load loses nothing: requests in flight
# finish with Connection: close, an idle keep-alive connection still gets
# an answer within the grace, then is closed; new connections are refused,
# not queued and reset. USR1 reopens the logs after logrotate renamed them.
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
