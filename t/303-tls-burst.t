# A burst of full TLS handshakes on one worker: the handshake steps that
# exceed the loop turn's budget wait for the next turn, so a request on an
# established connection is answered long before the burst is through;
# every connection of the burst still gets its ServerHello (none stranded),
# and a burst whose clients hang up at once leaves the worker serving.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use IPC::Open2;
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);
use Portico;

sub have { my ($t) = @_; return grep { -x "$_/$t" } split /:/, $ENV{PATH} }
plan skip_all => 'openssl and curl are needed' unless have('openssl') && have('curl');

my $dir = test_dir();
my $o = `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $dir/ec.key -out $dir/ec.crt -days 30 -subj /CN=localhost 2>&1`;
die $o if $?;

my $p = Portico->start(<<"EOF");
[listener tls]
listen = 127.0.0.1:{port}
certificate = $dir/ec.crt $dir/ec.key
header_timeout = 30s

[route hello]
return = 200 hello
EOF
my $port = $p->port;

# A real ClientHello (x25519 key share), recorded from openssl s_client: sent
# on many sockets it costs the server a full first flight each.
my $cap = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1)
  or die "listen: $!";
my $cpid = open(my $cout, '-|', 'exec openssl s_client -connect 127.0.0.1:' . $cap->sockport . ' </dev/null 2>&1')
  // die "s_client: $!";
my $a = $cap->accept or die "accept: $!";
my $hello = '';
$a->sysread($hello, 5 - length($hello), length($hello)) while length($hello) < 5;
my $len = unpack('n', substr($hello, 3, 2));
$a->sysread($hello, 5 + $len - length($hello), length($hello)) while length($hello) < 5 + $len;
close $a;
kill 'TERM', $cpid;
close $cout;
is substr($hello, 0, 1), "\x16", 'recorded a ClientHello';

# An established keep-alive connection (s_client, requests on stdin).
my $kpid = open2(my $kout, my $kin, "exec openssl s_client -connect 127.0.0.1:$port -quiet -crlf 2>/dev/null");
$kin->autoflush(1);
sub ask { print $kin "GET /hello HTTP/1.1\nHost: x\n\n" }
sub answered {
    my ($timeout) = @_;
    my $sel = IO::Select->new($kout);
    my $end = time + $timeout;
    my $got = '';
    while (time < $end && $got !~ /hello/) {
        last unless $sel->can_read($end - time);
        sysread($kout, my $b, 4096) or last;
        $got .= $b;
    }
    return $got =~ /hello/;
}
ask();
ok answered(T(10)), 'established connection answers';

# The burst: N ClientHellos, then a request on the established connection.
my $n = 100;
my @burst;
for (1 .. $n) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5) or die "connect: $!";
    push @burst, $s;
}
$_->syswrite($hello) for @burst;
ask();
my $sel = IO::Select->new(@burst, $kout);
my (%flight, $answer_at, $buf);
my $end = time + T(60);
while (time < $end && (keys(%flight) < $n || !defined $answer_at)) {
    for my $r ($sel->can_read(1)) {
        if ($r == $kout) {
            sysread($kout, $buf, 4096) or next;
            $answer_at = keys %flight if $buf =~ /hello/ && !defined $answer_at;
            next;
        }
        my $k = sysread($r, $buf, 16384);
        $flight{$r} = 1 if $k;
        $sel->remove($r);
    }
}
is scalar(keys %flight), $n, "every connection of the burst got its first flight ($n)";
ok defined $answer_at, 'the established connection answered during the burst';
ok defined $answer_at && $answer_at < $n * 0.8,
  'the request did not wait for the burst: answered after ' . ($answer_at // 'none') . " of $n flights";
close $_ for @burst;

# A burst whose clients reset at once: the worker forgets them and serves.
@burst = ();
for (1 .. $n) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5) or die "connect: $!";
    $s->syswrite($hello);
    push @burst, $s;
}
for my $s (@burst) {
    setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    close $s;
}
ask();
ok answered(T(20)), 'established connection still answers after a reset burst';
my $out = `curl -sS --max-time 20 --cacert $dir/ec.crt https://localhost:$port/hello 2>&1`;
is $out, 'hello', 'a new connection gets a handshake after the reset burst';
close $kin;
kill 'TERM', $kpid;    # -quiet implies -ign_eof
waitpid($kpid, 0);
$p->expect_errors(qr/TLS handshake failed/);
$p->finish;
done_testing;
