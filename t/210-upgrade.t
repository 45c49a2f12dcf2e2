# Binary upgrade (USR2) to the same binary under load: the new master takes
# the listening sockets and the shared memory, the old pid file becomes
# .oldbin, WINCH drains the old workers, QUIT commits; no request fails,
# keep-alive or a connection per request. Then a rollback (HUP after WINCH)
# and an upgrade whose new master cannot start.
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

[listener web]
listen = 127.0.0.1:{port}

[upstream app]
server = {up:app}
balance = least_conn

[route all]
upstream = app
EOF2

my $p = Portico->start($conf, upstreams => { app => $up },
    errors_ok => [qr/portico\.ini:\d+:|new master/]);
my $port = $p->port;
my $pidf = $p->pid_file;
my @masters;    # every master we must not leave behind

sub read_pid { my $t = slurp($_[0]) // ''; return $t =~ /^(\d+)/ ? $1 : 0 }
sub gone { my $pid = shift; !-e "/proc/$pid" || slurp("/proc/$pid/stat") =~ /^\d+ \(.*?\) Z/ }
sub log_has { my ($re) = @_; scalar grep { /$re/ } $p->error_lines }
sub children { grep { !gone($_) } Portico::proc_children($_[0]) }

# USR2 to MASTER: returns the new master's pid once it runs all its workers.
sub upgrade {
    my ($master) = @_;
    kill 'USR2', $master;
    my $new;
    wait_for(sub { $new = read_pid($pidf); $new && $new != $master }, T(5)) or return 0;
    push @masters, $new;
    wait_for(sub { log_has(qr/ $new#m all 2 workers ready/) }, T(5)) or return 0;
    return $new;
}

my $old = $p->pid;
my $ka = Load->start($port, clients => 3, mode => 'keepalive');
my $cl = Load->start($port, clients => 2, mode => 'close');
my $t0 = time;

my $new = upgrade($old);
ok $new, "USR2: new master $new runs its workers";
is read_pid("$pidf.oldbin"), $old, 'the old pid file became .oldbin';
ok log_has(qr/ $new#m binary upgrade: took over the sockets and shared memory of pid $old/),
  'the new master took over the sockets and the shared memory';
sleep 0.3;
kill 'WINCH', $old;
ok wait_for(sub { my @c = children($old); @c == 1 && $c[0] == $new }, T(8)),
  'WINCH: the old workers drained, the old master stays'
  or diag "children of $old: " . join ' ', children($old);
sleep 0.3;
ok kill('QUIT', $old), 'QUIT to the old master';
ok wait_for(sub { !$p->alive }, T(8)), 'the old master exits';
is(($p->{exit_status} // -1) >> 8, 0, 'with status 0');
ok !-e "$pidf.oldbin", '.oldbin removed';
is read_pid($pidf), $new, 'the pid file names the new master';
sleep 0.3;
my $r1 = $ka->stop;
my $r2 = $cl->stop;
is $r1->{failed} + $r1->{non2xx}, 0, "upgrade, keep-alive: no failure ($r1->{ok} answered)"
  or diag join "\n", @{ $r1->{errors} };
is $r2->{failed} + $r2->{non2xx}, 0, "upgrade, a connection per request: no failure ($r2->{ok} answered)"
  or diag join "\n", @{ $r2->{errors} };
diag sprintf "upgrade in %.1f s: keep-alive %d ok %d failed %d non-2xx; per-request %d ok %d failed %d non-2xx",
  time - $t0, @$r1{qw(ok failed non2xx)}, @$r2{qw(ok failed non2xx)};

# Rollback: upgrade again, WINCH, then HUP to the old master brings its
# workers back; the new master is told to QUIT and the pid file returns.
{
    my $ka2 = Load->start($port, clients => 3, mode => 'keepalive');
    my $newer = upgrade($new);
    ok $newer, "second upgrade: master $newer";
    kill 'WINCH', $new;
    ok wait_for(sub { my @c = children($new); @c == 1 && $c[0] == $newer }, T(8)),
      'WINCH drained the workers of the middle master';
    kill 'HUP', $new;
    ok wait_for(sub { children($new) == 3 }, T(5)), 'HUP after WINCH: its workers are back';
    sleep 0.3;
    kill 'QUIT', $newer;
    ok wait_for(sub { gone($newer) }, T(8)), 'the newest master quits';
    ok wait_for(sub { read_pid($pidf) == $new && !-e "$pidf.oldbin" }, T(5)),
      'the pid file is back to the rolled-back master';
    my $r = $ka2->stop;
    is $r->{failed} + $r->{non2xx}, 0, "rollback under load: no failure ($r->{ok} answered)"
      or diag join "\n", @{ $r->{errors} };
}

# A new master that cannot start (broken configuration): the old one goes on.
{
    my $good = slurp($p->config_file);
    write_file($p->config_file, $good . "\n[route bad]\nupstrem = app\n");
    kill 'USR2', $new;
    ok wait_for(sub { log_has(qr/ $new#m binary upgrade: new master pid \d+ exited with status 1/) }, T(5)),
      'the failed new master is noticed';
    is read_pid($pidf), $new, 'the pid file still names the running master';
    ok !-e "$pidf.oldbin", 'no .oldbin left';
    is http_get($port, '/still', timeout => T(5))->status, 200, 'still serving';
    write_file($p->config_file, $good);
}

kill 'TERM', $new;
ok wait_for(sub { gone($new) }, T(8)), 'TERM stops the upgraded master';
$p->check_logs;
END { kill 'KILL', grep { !gone($_) } @masters if @masters }
done_testing;
