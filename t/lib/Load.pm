# A load loop for the lifecycle tests (reload, upgrade, crash, graceful
# stop): several forked client processes send GETs to a port as fast as the
# server answers, until stopped, and count what went wrong.
#
#   my $load = Load->start($port, clients => 4, mode => 'keepalive' | 'close');
#   ... reload, upgrade, kill ...
#   my $r = $load->stop;   # {ok, failed, non2xx, errors => [...]}
#
# keepalive: one connection per client, reused; a response with
# `Connection: close` (a draining worker) makes the client reconnect, as any
# HTTP client does, and is not a failure. close: a new connection per
# request. A failure is a refused or reset connect, a request that got no
# complete response, or a timeout; non2xx counts responses outside 200-299.
# until_refused => 1 (graceful shutdown): a refused connect ends the client
# instead of counting as a failure.
package Load;

use strict;
use warnings;
use POSIX ();
use Errno qw(EADDRINUSE EADDRNOTAVAIL);
use IO::Socket::IP;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);
use Portico;

sub start {
    my ($class, $port, %o) = @_;
    my $self = bless { port => $port, clients => $o{clients} // 4,
                       mode => $o{mode} // 'keepalive', path => $o{path} // '/load',
                       until_refused => $o{until_refused},
                       pids => [] }, $class;
    $self->{dir} = Portico::test_dir() . "/load" . ++$Load::N;
    mkdir $self->{dir};
    for my $i (1 .. $self->{clients}) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            $self->_client($i);
            POSIX::_exit(0);
        }
        push @{ $self->{pids} }, $pid;
    }
    # Every client has done at least one request before the test goes on.
    Portico::wait_for(sub { $self->_sum->{ok} >= $self->{clients} }, Portico::T(5));
    return $self;
}

sub _client {
    my ($self, $i) = @_;
    my ($ok, $failed, $non2xx, @err) = (0, 0, 0);
    my $stop = "$self->{dir}/stop";
    my $out = "$self->{dir}/c$i";
    my $c;
    my $last_write = 0;
    my $save = sub {
        open my $fh, '>', "$out.tmp" or return;
        print $fh "$ok $failed $non2xx\n", map { "$_\n" } @err[0 .. ($#err > 20 ? 20 : $#err)];
        close $fh;
        rename "$out.tmp", $out;
    };
    my $n = 0;
    until (-e $stop) {
        $n++;
        my $fresh = !$c;
        if (!$c) {
            $c = _connect($self->{port});
            if (!$c) {
                last if $self->{until_refused};    # the server stopped listening
                $failed++;
                push @err, sprintf("%.3f connect: %s", time, $!);
                sleep 0.01;
                next;
            }
        }
        my @h = $self->{mode} eq 'close' ? (headers => ['Connection: close']) : ();
        my $r = $c->request('GET', "$self->{path}/$i/$n", @h, timeout => Portico::T(10));
        if (!$r->status) {
            $failed++;
            push @err, sprintf("%.3f %s request %d: %s", time, $fresh ? 'new' : 'reused', $n,
                               $r->error // '?');
            $c->close;
            undef $c;
            next;
        }
        $r->status =~ /^2/ ? $ok++ : do {
            $non2xx++;
            push @err, sprintf("%.3f status %d", time, $r->status);
        };
        my $conn = lc($r->header('Connection') // '');
        if ($self->{mode} eq 'close' || $conn eq 'close') {
            $c->close;
            undef $c;
        }
        if (time - $last_write > 0.2) {
            $save->();
            $last_write = time;
        }
    }
    $c->close if $c;
    $save->();
}

# Client ports come from below the ephemeral range (32768+): thousands of
# connections a second must not take, even in TIME_WAIT, a port that
# Portico::free_port just handed to a test running in parallel.
sub _connect {
    my ($port) = @_;
    for (1 .. 20) {
        my $lp = 20000 + int(rand(12000));
        my $s = IO::Socket::IP->new(
            LocalHost => '127.0.0.1', LocalPort => $lp, ReuseAddr => 1,
            PeerHost => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
            Timeout => Portico::T(5));
        if (!$s) {
            next if $! == EADDRINUSE || $! == EADDRNOTAVAIL;
            return undef;
        }
        setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
        binmode $s;
        $s->blocking(0);
        return bless { sock => $s, buf => '', eof => 0, port => $port }, 'Portico::Client';
    }
    return undef;
}

sub _sum {
    my ($self) = @_;
    my %s = (ok => 0, failed => 0, non2xx => 0, errors => []);
    for my $i (1 .. $self->{clients}) {
        open my $fh, '<', "$self->{dir}/c$i" or next;
        my $first = <$fh> // '';
        my ($ok, $f, $n) = split ' ', $first;
        $s{ok} += $ok // 0;
        $s{failed} += $f // 0;
        $s{non2xx} += $n // 0;
        chomp(my @e = <$fh>);
        push @{ $s{errors} }, map { "client $i: $_" } @e;
    }
    return \%s;
}

# Requests answered so far (approximate: clients save every 0.2 s).
sub count { $_[0]->_sum->{ok} }

sub stop {
    my ($self) = @_;
    Portico::write_file("$self->{dir}/stop", '');
    # A client that ended on its own (until_refused) saved its counts.
    waitpid($_, 0) for @{ $self->{pids} };
    $self->{pids} = [];
    return $self->_sum;
}

sub DESTROY {
    my ($self) = @_;
    return unless $self->{pids} && @{ $self->{pids} };
    kill 'KILL', @{ $self->{pids} };
    waitpid($_, 0) for @{ $self->{pids} };
}

1;
