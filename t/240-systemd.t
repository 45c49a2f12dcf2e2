# sd_notify spoken to $NOTIFY_SOCKET: READY=1 once the workers accept,
# RELOADING=1 then READY=1 around a reload (also a refused one), and the new
# master of a binary upgrade announces MAINPID= with READY=1.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Socket;
use Portico;
use Upstream;

my $up = Upstream->new(name => 'app');
my $path = Portico::test_dir() . "/notify.sock";
socket(my $ns, PF_UNIX, SOCK_DGRAM, 0) or die "socket: $!";
bind($ns, pack_sockaddr_un($path)) or die "bind $path: $!";
$ENV{NOTIFY_SOCKET} = $path;

my @got;
sub messages {
    my $rin = '';
    vec($rin, fileno($ns), 1) = 1;
    while (select(my $r = $rin, undef, undef, 0) > 0) {
        recv($ns, my $m, 4096, 0);
        push @got, $m;
    }
    return @got;
}
sub wait_msg { my ($re) = @_; wait_for(sub { grep { /$re/ } messages() }, T(5)) }

my $p = Portico->start(<<'EOF2', upstreams => { app => $up }, errors_ok => [qr/portico\.ini:\d+:|reload refused/]);
[main]
workers = 2

[listener web]
listen = 127.0.0.1:{port}

[upstream app]
server = {up:app}

[route all]
upstream = app
EOF2

ok wait_msg(qr/^READY=1$/), 'READY=1 at startup';
@got = ();
$p->signal('HUP');
ok wait_msg(qr/^READY=1$/), 'READY=1 after a reload';
is_deeply [@got], ['RELOADING=1', 'READY=1'], 'RELOADING=1 came first';

@got = ();
my $good = slurp($p->config_file);
write_file($p->config_file, "$good\nbogus line\n");
$p->signal('HUP');
ok wait_msg(qr/^READY=1$/), 'a refused reload ends with READY=1 too';
write_file($p->config_file, $good);

@got = ();
my $old = $p->pid;
$p->signal('USR2');
my $new;
ok wait_msg(qr/^MAINPID=(\d+)\nREADY=1$/), 'the new master sends MAINPID= and READY=1';
($new) = map { /^MAINPID=(\d+)/ ? $1 : () } @got;
ok $new && $new != $old, "MAINPID is the new master ($new)";
kill 'WINCH', $old;
sleep 0.3;
kill 'QUIT', $old;
ok wait_for(sub { !$p->alive }, T(8)), 'the old master quits';
is http_get($p->port, '/after')->status, 200, 'the new master serves';
kill 'TERM', $new;
ok wait_for(sub { !-e "/proc/$new" }, T(8)), 'the new master stops on TERM';
$p->check_logs;
done_testing;
