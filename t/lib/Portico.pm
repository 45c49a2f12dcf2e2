# Test harness for portico's integration tests: start the real binary on an
# inline configuration with free ports, talk raw HTTP/1.1 to it, stop it, and
# check its error log. See t/README.md for how tests use it.
package Portico;

use strict;
use warnings;
use Exporter 'import';
use Cwd qw(abs_path);
use Errno qw(EAGAIN EWOULDBLOCK EINTR EINPROGRESS);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
use File::Basename qw(basename dirname);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use IO::Socket::IP;
use POSIX qw(:sys_wait_h);
use Socket qw(IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);
use Test::More ();

our @EXPORT = qw(
  T free_port repo_root portico_bin test_dir portico_t write_file slurp
  http_request http_get build_request wait_for proc_children bytes_is
);

$SIG{PIPE} = 'IGNORE';

# Timeouts in tests are multiplied by PORTICO_TIMEOUT_SCALE (e.g. 3 for a
# slow sanitizer build on a loaded machine).
sub T { my $s = shift; return $s * ($ENV{PORTICO_TIMEOUT_SCALE} || 1) }

my $ROOT = abs_path(dirname(__FILE__) . '/../..');
sub repo_root { $ROOT }

sub portico_bin {
    my $b = $ENV{PORTICO_BIN} // 'build/portico';
    $b = "$ROOT/$b" unless $b =~ m{^/};
    return $b;
}

our ($RUNS, $INSTANCES) = (0, 0);
my $CREATOR = $$;
my $TESTDIR;
my @LIVE;    # started Portico objects, stopped at END

# One temporary directory per test script, under t/tmp; removed at the end
# when the script passed and PORTICO_KEEP is not set.
sub test_dir {
    return $TESTDIR if $TESTDIR;
    my $base = "$ROOT/t/tmp";
    make_path($base);
    my $name = basename($0);
    $name =~ s/\.t$//;
    $name =~ s/[^\w.-]/_/g;
    $TESTDIR = tempdir("$name-XXXXXX", DIR => $base, CLEANUP => 0);
    return $TESTDIR;
}

END {
    if ($$ == $CREATOR) {
        my $status = $?;
        for my $p (@LIVE) {
            next unless $p->{pid};
            my @kids = proc_children($p->{pid});
            $p->stop('KILL');
            kill 'KILL', @kids if @kids;
        }
        if ($TESTDIR && !$ENV{PORTICO_KEEP}) {
            my $tb = Test::More->builder;
            if ($tb->is_passing && $status == 0) {
                remove_tree($TESTDIR);
            } else {
                print STDERR "# kept test files in $TESTDIR\n";
            }
        }
        $? = $status;
    }
}

my %GIVEN;

# A TCP port on 127.0.0.1 that nothing listens on right now.
sub free_port {
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
            Listen => 1) or die "free_port: $!";
        my $p = $s->sockport;
        close $s;
        next if $GIVEN{$p}++;
        return $p;
    }
    die "free_port: no port";
}

sub write_file {
    my ($path, $data) = @_;
    open my $fh, '>', $path or die "write $path: $!";
    binmode $fh;
    print $fh $data;
    close $fh or die "close $path: $!";
    return $path;
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    binmode $fh;
    local $/;
    my $d = <$fh>;
    close $fh;
    return $d // '';
}

# Poll CODE every 20 ms until it returns true or TIMEOUT seconds pass.
# Returns CODE's last value.
sub wait_for {
    my ($code, $timeout) = @_;
    my $deadline = time + ($timeout // T(5));
    while (1) {
        my $v = $code->();
        return $v if $v;
        return $v if time >= $deadline;
        sleep 0.02;
    }
}

# Like Test::More::is for long byte strings: reports lengths and the first
# differing offset instead of dumping both.
sub bytes_is {
    my ($got, $want, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    $got //= '';
    return Test::More::pass($name) if $got eq $want;
    Test::More::fail($name);
    my $i = 0;
    my $n = length $got < length $want ? length $got : length $want;
    $i++ while $i < $n && substr($got, $i, 1) eq substr($want, $i, 1);
    Test::More::diag(sprintf "got %d bytes, want %d; first difference at offset %d", length $got, length $want, $i);
    return 0;
}

# Children of PID, from /proc/PID/task/*/children.
sub proc_children {
    my ($pid) = @_;
    my @kids;
    for my $f (glob "/proc/$pid/task/*/children") {
        my $d = slurp($f);
        push @kids, split ' ', $d;
    }
    return @kids;
}

# Run the binary with ARGS (e.g. '-t', '-c', FILE); returns a hash:
# exit (code), signal, out (stdout), err (stderr), all (both).
sub portico_t {
    my (@args) = @_;
    my $opts = ref $args[0] eq 'HASH' ? shift @args : {};
    my $dir = test_dir();
    my $n = ++$Portico::RUNS;
    my ($o, $e) = ("$dir/run$n.out", "$dir/run$n.err");
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $o or POSIX::_exit(126);
        open STDERR, '>', $e or POSIX::_exit(126);
        chdir $opts->{cwd} if $opts->{cwd};
        exec portico_bin(), @args or POSIX::_exit(127);
    }
    my $deadline = time + ($opts->{timeout} // T(20));
    my $r;
    while (($r = waitpid($pid, WNOHANG)) == 0 && time < $deadline) { sleep 0.02 }
    my $timed_out = 0;
    if ($r == 0) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        $timed_out = 1;
    }
    my %res = (exit => $? >> 8, signal => $? & 127, timed_out => $timed_out,
               out => slurp($o), err => slurp($e));
    $res{all} = $res{out} . $res{err};
    return \%res;
}

# ---------------------------------------------------------------------------
# Starting and stopping portico.

# Portico->start(CONFIG, %opts). CONFIG is INI text with placeholders:
#   {port}        the first listener port (free, allocated here)
#   {port:NAME}   another free port, one per NAME
#   {dir}         this instance's temporary directory
#   {up:NAME}     "127.0.0.1:PORT" of $opts{upstreams}{NAME}
# Keys missing from [main] are added: workers = 1, error_log, pid_file,
# log_level = info. Options: upstreams => {NAME => Upstream}, errors_ok =>
# [qr/.../] (expected [error] lines), no_wait => 1, workers, log_level,
# wrap => [COMMAND...] (run portico under a command that execs it, keeping
# the pid: e.g. ['prlimit', '--nofile=1024:4096', '--']).
sub start {
    my ($class, $conf, %o) = @_;
    my $self = bless {
        o => \%o, ports => {}, expected => [@{ $o{errors_ok} || [] }],
    }, $class;
    my $n = ++$Portico::INSTANCES;
    $self->{dir} = test_dir() . "/p$n";
    make_path($self->{dir});
    $self->{error_log}  = "$self->{dir}/error.log";
    $self->{access_log} = "$self->{dir}/access.log";
    $self->{pid_file}   = "$self->{dir}/portico.pid";
    $self->{stderr}     = "$self->{dir}/stderr.log";
    $self->{stdout}     = "$self->{dir}/stdout.log";
    $conf = $self->expand($conf);
    $conf = $self->_inject_main($conf) unless $o{raw};
    $self->{config_text} = $conf;
    $self->{config} = write_file("$self->{dir}/portico.ini", $conf);
    $self->_spawn;
    $self->wait_ready unless $o{no_wait};
    return $self;
}

sub port {
    my ($self, $name) = @_;
    $name //= '';
    return $self->{ports}{$name} //= free_port();
}

sub expand {
    my ($self, $text) = @_;
    $self->port('');    # {port} is always the first allocated
    $text =~ s/\{port\}/$self->port('')/ge;
    $text =~ s/\{port:(\w+)\}/$self->port($1)/ge;
    $text =~ s/\{dir\}/$self->{dir}/g;
    $text =~ s/\{up:(\w+)\}/$self->_up($1)/ge;
    return $text;
}

sub _up {
    my ($self, $name) = @_;
    my $u = $self->{o}{upstreams}{$name} or die "no upstream '$name' given";
    return $u->addr;
}

sub _inject_main {
    my ($self, $conf) = @_;
    my %want = (
        workers   => $self->{o}{workers} // 1,
        error_log => $self->{error_log},
        pid_file  => $self->{pid_file},
        log_level => $self->{o}{log_level} // 'info',
    );
    my @lines = split /\n/, $conf, -1;
    my ($start, $end);
    for my $i (0 .. $#lines) {
        if ($lines[$i] =~ /^\s*\[\s*main\s*\]/) { $start = $i; next }
        if (defined $start && !defined $end && $lines[$i] =~ /^\s*\[/) { $end = $i }
    }
    if (defined $start) {
        $end //= scalar @lines;
        for my $l (@lines[$start + 1 .. $end - 1]) {
            delete $want{$1} if $l =~ /^\s*(\w+)\s*=/;
        }
        my @add = map { "$_ = $want{$_}" } sort keys %want;
        splice @lines, $start + 1, 0, @add;
        return join "\n", @lines;
    }
    return join("\n", "[main]", (map { "$_ = $want{$_}" } sort keys %want), "", $conf);
}

sub _spawn {
    my ($self) = @_;
    my $bin = portico_bin();
    die "portico binary $bin is not executable (build it, or set PORTICO_BIN)\n"
      unless -x $bin;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $self->{stdout} or POSIX::_exit(126);
        open STDERR, '>>', $self->{stderr} or POSIX::_exit(126);
        exec @{ $self->{o}{wrap} || [] }, $bin, '-c', $self->{config}, @{ $self->{o}{args} || [] }
          or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    push @LIVE, $self;
}

sub pid        { $_[0]{pid} // $_[0]{last_pid} }
sub dir        { $_[0]{dir} }
sub config_file { $_[0]{config} }
sub error_log  { $_[0]{error_log} }
sub access_log { $_[0]{access_log} }
sub pid_file   { $_[0]{pid_file} }
sub stderr_file { $_[0]{stderr} }

# [host, port] pairs of every `listen =` line of the configuration.
sub listen_addrs {
    my ($self) = @_;
    my @a;
    for my $l (split /\n/, $self->{config_text}) {
        next unless $l =~ /^\s*listen\s*=\s*(\S+)/;
        my $v = $1;
        my ($h, $p) = $v =~ /^(.*):(\d+)$/ or next;
        $h = '127.0.0.1' if $h eq '*' || $h eq '0.0.0.0';
        $h = '::1' if $h eq '[::]';
        $h =~ s/^\[(.*)\]$/$1/;
        push @a, [$h, $p];
    }
    return @a;
}

sub alive {
    my ($self) = @_;
    return 0 unless $self->{pid};
    local $? = $?;
    my $r = waitpid($self->{pid}, WNOHANG);
    if ($r == $self->{pid}) {
        $self->{exit_status} = $?;
        $self->{last_pid} = delete $self->{pid};
        return 0;
    }
    return 1;
}

sub logs_text {
    my ($self) = @_;
    return "--- error log ---\n" . slurp($self->{error_log})
      . "--- stderr ---\n" . slurp($self->{stderr});
}

# Wait until every listen address accepts connections; die with the logs if
# portico exits or the timeout passes.
sub wait_ready {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // T(10));
    for my $a ($self->listen_addrs) {
        while (1) {
            die "portico exited during startup (status $self->{exit_status})\n"
              . $self->logs_text unless $self->alive;
            my $s = IO::Socket::IP->new(PeerHost => $a->[0], PeerPort => $a->[1],
                                        Proto => 'tcp', Timeout => 1);
            if ($s) { close $s; last }
            die "portico did not listen on $a->[0]:$a->[1] in time\n" . $self->logs_text
              if time > $deadline;
            sleep 0.05;
        }
    }
    # and until the configured number of workers is running
    my ($n) = $self->{config_text} =~ /^\s*workers\s*=\s*(\d+)\s*$/m;
    if ($n) {
        wait_for(sub { proc_children($self->{pid}) >= $n }, $deadline - time > 1 ? $deadline - time : 1);
    }
    $self->{workers_seen} = [proc_children($self->{pid})];
    return 1;
}

sub workers { my ($self) = @_; return $self->{pid} ? proc_children($self->{pid}) : () }

sub signal { my ($self, $sig) = @_; kill $sig, $self->{pid} if $self->{pid} }

# Send SIG (TERM) and wait for the master to exit; KILL after the timeout.
# Returns true when it exited on its own.
sub stop {
    my ($self, $sig, $timeout) = @_;
    local $? = $?;
    $sig //= 'TERM';
    return 1 unless $self->{pid};
    my @kids = proc_children($self->{pid});
    $self->{workers_at_stop} = [@kids, @{ $self->{workers_seen} || [] }];
    kill $sig, $self->{pid};
    my $deadline = time + ($timeout // T(10));
    while (time < $deadline) {
        return 1 unless $self->alive;
        sleep 0.02;
    }
    kill 'KILL', $self->{pid};
    kill 'KILL', @kids if @kids;
    waitpid($self->{pid}, 0);
    $self->{exit_status} = $?;
    $self->{last_pid} = delete $self->{pid};
    $self->{stop_failed} = 1;
    return 0;
}

sub expect_errors { my ($self, @re) = @_; push @{ $self->{expected} }, @re }

sub error_lines {
    my ($self) = @_;
    return split /\n/, slurp($self->{error_log});
}

# Stop portico (TERM) and check: it exited 0 in time, no worker is left,
# no unexpected [error] line, no sanitizer report. Emits test results.
sub finish {
    my ($self) = @_;
    my $was_running = $self->{pid} ? 1 : 0;
    if ($was_running) {
        my $ok = $self->stop('TERM');
        Test::More::ok($ok, 'portico stopped on TERM in time');
        my $st = $self->{exit_status} // 0;
        Test::More::ok(!($st & 127) && ($st >> 8) == 0, 'portico exited 0 after TERM')
          or Test::More::diag(sprintf "exit status: code %d signal %d", $st >> 8, $st & 127);
        my @left;
        wait_for(sub {
            @left = grep { -e "/proc/$_" && slurp("/proc/$_/stat") !~ /^\d+ \(.*?\) Z/ }
              @{ $self->{workers_at_stop} || [] };
            !@left;
        }, T(5));
        Test::More::ok(!@left, 'no worker process left after stop')
          or Test::More::diag("left: @left");
    }
    $self->check_logs;
}

sub check_logs {
    my ($self) = @_;
    my @exp = @{ $self->{expected} };
    my @bad;
    for my $src ($self->{error_log}, $self->{stderr}) {
        for my $l (split /\n/, slurp($src)) {
            next unless $l =~ /\[error\]/;
            next if grep { $l =~ $_ } @exp;
            push @bad, $l;
        }
    }
    Test::More::ok(!@bad, 'no unexpected [error] in the error log')
      or Test::More::diag(join "\n", @bad[0 .. ($#bad > 20 ? 20 : $#bad)]);
    my @san;
    for my $src ($self->{error_log}, $self->{stderr}, $self->{stdout}) {
        for my $l (split /\n/, slurp($src)) {
            push @san, $l if $l =~ /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|ERROR: \w*Sanitizer/;
        }
    }
    Test::More::ok(!@san, 'no sanitizer report')
      or Test::More::diag(join "\n", @san[0 .. ($#san > 20 ? 20 : $#san)]);
}

# ---------------------------------------------------------------------------
# Client helpers.

# Build a request. %o: headers => [ "Name: value" | [name, value] ... ],
# body => STRING, chunked => 1 (send the body chunked, chunk_size => N),
# version => '1.1', host => 'localhost' (no_host => 1 to omit).
sub build_request {
    my ($method, $target, %o) = @_;
    my $v = $o{version} // '1.1';
    my @h = map { ref $_ ? "$_->[0]: $_->[1]" : $_ } @{ $o{headers} || [] };
    unless ($o{no_host} || grep { /^host:/i } @h) {
        unshift @h, 'Host: ' . ($o{host} // 'localhost');
    }
    my $body = $o{body};
    if (defined $body) {
        if ($o{chunked}) {
            push @h, 'Transfer-Encoding: chunked' unless grep { /^transfer-encoding:/i } @h;
            my $cs = $o{chunk_size} || 4096;
            my $enc = '';
            for (my $off = 0; $off < length $body; $off += $cs) {
                my $piece = substr($body, $off, $cs);
                $enc .= sprintf("%x\r\n", length $piece) . $piece . "\r\n";
            }
            $body = $enc . "0\r\n\r\n";
        } elsif (!grep { /^(content-length|transfer-encoding):/i } @h) {
            push @h, 'Content-Length: ' . length($body);
        }
    }
    return "$method $target HTTP/$v\r\n" . join('', map { "$_\r\n" } @h) . "\r\n" . ($body // '');
}

# One request on a new connection; returns a Portico::Response (with
# ->{conn} the client, still open unless the server closed it).
sub http_request {
    my ($port, $method, $target, %o) = @_;
    my $c = Portico::Client->new($port, %o) or return Portico::Response->failed("connect: $!");
    my $r = $c->request($method, $target, %o);
    $r->{conn} = $c;
    return $r;
}

sub http_get { my ($port, $target, %o) = @_; return http_request($port, 'GET', $target, %o) }

package Portico::Client;

use strict;
use warnings;
use IO::Socket::IP;
use Errno qw(EAGAIN EWOULDBLOCK EINTR EINPROGRESS);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
use IO::Select;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);

# Portico::Client->new(PORT, addr => '127.0.0.1' (or '::1'), local_addr => IP)
sub new {
    my ($class, $port, %o) = @_;
    my $s = IO::Socket::IP->new(
        PeerHost => $o{addr} // '127.0.0.1', PeerPort => $port, Proto => 'tcp',
        Timeout => Portico::T(5),
        ($o{local_addr} ? (LocalHost => $o{local_addr}) : ())) or return undef;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    binmode $s;
    my $fl = fcntl($s, F_GETFL, 0);
    fcntl($s, F_SETFL, $fl | O_NONBLOCK);
    return bless { sock => $s, buf => '', eof => 0, port => $port }, $class;
}

sub sock { $_[0]{sock} }
sub buffered { $_[0]{buf} }

# Write all of DATA (with a timeout). Returns true when everything was
# written; false when the peer closed/reset or the timeout passed.
sub send {
    my ($self, $data, %o) = @_;
    my $deadline = time + ($o{timeout} // Portico::T(20));
    my $off = 0;
    my $sel = IO::Select->new($self->{sock});
    while ($off < length $data) {
        my $n = syswrite($self->{sock}, $data, 262144, $off);
        if (defined $n) { $off += $n; next }
        if ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR) {
            my $left = $deadline - time;
            if ($left <= 0) { $self->{error} = 'send timeout'; return 0 }
            $sel->can_write($left > 0.5 ? 0.5 : $left);
            next;
        }
        $self->{error} = "send: $!";
        $self->{sent} = $off;
        return 0;
    }
    $self->{sent} = $off;
    return 1;
}

# Send DATA in pieces of SIZE bytes with DELAY seconds between them.
sub send_slowly {
    my ($self, $data, $size, $delay) = @_;
    for (my $off = 0; $off < length $data; $off += $size) {
        $self->send(substr($data, $off, $size)) or return 0;
        sleep $delay if $off + $size < length $data;
    }
    return 1;
}

# Read once (up to TIMEOUT seconds). Returns bytes read; 0 on EOF (or
# reset, with ->{reset} set); undef on timeout.
sub read_more {
    my ($self, $timeout) = @_;
    return 0 if $self->{eof};
    my $sel = IO::Select->new($self->{sock});
    my $deadline = time + ($timeout // Portico::T(10));
    while (1) {
        my $n = sysread($self->{sock}, my $chunk, 262144);
        if (defined $n) {
            if ($n == 0) { $self->{eof} = 1; return 0 }
            $self->{buf} .= $chunk;
            $self->{got_bytes} += $n;
            return $n;
        }
        if ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR) {
            my $left = $deadline - time;
            return undef if $left <= 0;
            $sel->can_read($left > 0.5 ? 0.5 : $left);
            next;
        }
        $self->{eof} = 1;
        $self->{reset} = "$!";
        return 0;
    }
}

# Everything the server sends until it closes or TIMEOUT passes.
sub read_all {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // Portico::T(10));
    while (!$self->{eof}) {
        my $left = $deadline - time;
        last if $left <= 0;
        $self->read_more($left);
    }
    my $d = $self->{buf};
    $self->{buf} = '';
    return $d;
}

# True when the server closes (EOF or reset) within TIMEOUT seconds with no
# more bytes arriving first; bytes that arrive instead stay buffered.
sub closed {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // Portico::T(5));
    return 0 if length $self->{buf};
    while (1) {
        return 1 if $self->{eof};
        my $left = $deadline - time;
        return 0 if $left <= 0;
        my $n = $self->read_more($left);
        return 1 if defined $n && $n == 0;
        return 0 if $n;
    }
}

sub close {
    my ($self) = @_;
    close $self->{sock} if $self->{sock};
    delete $self->{sock};
}

# Close with a reset (SO_LINGER 0).
sub reset {
    my ($self) = @_;
    setsockopt($self->{sock}, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    $self->close;
}

sub _fill {
    my ($self, $need, $deadline) = @_;
    while (length $self->{buf} < $need) {
        return 0 if $self->{eof};
        my $left = $deadline - time;
        return 0 if $left <= 0;
        my $n = $self->read_more($left);
        return 0 if !defined $n;
    }
    return 1;
}

# Read one response (interim 1xx responses are returned as such).
# %o: head => 1 (the request was HEAD: no body), timeout => seconds.
sub read_response {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // Portico::T(10));
    my $i;
    while (($i = index($self->{buf}, "\r\n\r\n")) < 0) {
        if ($self->{eof}) {
            return Portico::Response->failed(
                length $self->{buf} ? "connection closed inside the response head"
                                     : "connection closed before a response"
                  . ($self->{reset} ? " ($self->{reset})" : ''), $self->{buf});
        }
        my $left = $deadline - time;
        my $n = $left > 0 ? $self->read_more($left) : undef;
        return Portico::Response->failed("timeout waiting for a response head", $self->{buf})
          if !defined $n;
    }
    my $head = substr($self->{buf}, 0, $i + 4, '');
    my $r = Portico::Response->parse_head($head);
    return $r if $r->{error};
    my $st = $r->{status};
    my $te = lc($r->header('transfer-encoding') // '');
    my $cl = $r->header('content-length');
    if ($o{head} || ($st >= 100 && $st < 200) || $st == 204 || $st == 304) {
        $r->{framing} = 'none';
        $r->{body} = '';
    } elsif ($te ne '') {
        $r->{framing} = 'chunked';
        unless ($te =~ /(^|,)\s*chunked\s*$/) {
            $r->{error} = "unsupported transfer-encoding '$te'";
            return $r;
        }
        my $body = '';
        while (1) {
            my $j;
            while (($j = index($self->{buf}, "\r\n")) < 0) {
                return $r->incomplete($body, 'eof/timeout in chunk size')
                  unless $self->_fill(length($self->{buf}) + 1, $deadline);
            }
            my $line = substr($self->{buf}, 0, $j + 2, '');
            unless ($line =~ /^([0-9a-fA-F]+)[ \t]*(;[^\r\n]*)?\r\n$/) {
                $r->{error} = "bad chunk size line: " . substr($line, 0, 40);
                $r->{body} = $body;
                return $r;
            }
            my $size = hex $1;
            if ($size == 0) {
                # trailers
                my $tr = '';
                while (1) {
                    my $k;
                    while (($k = index($self->{buf}, "\r\n")) < 0) {
                        return $r->incomplete($body, 'eof/timeout in trailers')
                          unless $self->_fill(length($self->{buf}) + 1, $deadline);
                    }
                    my $tl = substr($self->{buf}, 0, $k + 2, '');
                    last if $tl eq "\r\n";
                    $tr .= $tl;
                }
                $r->{trailers} = $tr;
                last;
            }
            return $r->incomplete($body, 'eof/timeout in chunk data')
              unless $self->_fill($size + 2, $deadline);
            $body .= substr($self->{buf}, 0, $size, '');
            my $crlf = substr($self->{buf}, 0, 2, '');
            if ($crlf ne "\r\n") {
                $r->{error} = 'chunk data not followed by CRLF';
                $r->{body} = $body;
                return $r;
            }
        }
        $r->{body} = $body;
    } elsif (defined $cl) {
        $r->{framing} = 'length';
        unless ($cl =~ /^\d+$/) {
            $r->{error} = "bad content-length '$cl'";
            return $r;
        }
        unless ($self->_fill($cl, $deadline)) {
            return $r->incomplete(substr($self->{buf}, 0, length $self->{buf}, ''),
                                  "body shorter than Content-Length $cl");
        }
        $r->{body} = substr($self->{buf}, 0, $cl, '');
    } else {
        $r->{framing} = 'close';
        while (!$self->{eof}) {
            my $left = $deadline - time;
            my $n = $left > 0 ? $self->read_more($left) : undef;
            return $r->incomplete(substr($self->{buf}, 0, length $self->{buf}, ''),
                                  'timeout in a close-delimited body') if !defined $n;
        }
        $r->{body} = substr($self->{buf}, 0, length $self->{buf}, '');
    }
    $r->{complete} = 1;
    return $r;
}

# Read responses, skipping 1xx (kept in ->{interim}); returns the final one.
sub read_final {
    my ($self, %o) = @_;
    my @interim;
    while (1) {
        my $r = $self->read_response(%o);
        if (!$r->{error} && $r->{status} >= 100 && $r->{status} < 200 && $r->{status} != 101) {
            push @interim, $r;
            next;
        }
        $r->{interim} = \@interim;
        return $r;
    }
}

# Send a request built by build_request(METHOD, TARGET, %o) and read its
# final response.
sub request {
    my ($self, $method, $target, %o) = @_;
    my $raw = Portico::build_request($method, $target, %o);
    $self->send($raw)
      or return Portico::Response->failed("could not send the request: " . ($self->{error} // ''));
    return $self->read_final(head => $method eq 'HEAD', %o);
}

package Portico::Response;

use strict;
use warnings;

sub failed {
    my ($class, $err, $raw) = @_;
    return bless { status => 0, error => $err, headers => [], body => '', raw => $raw // '' }, $class;
}

sub parse_head {
    my ($class, $head) = @_;
    my $self = bless { head => $head, headers => [], body => '', status => 0 }, $class;
    my @lines = split /\r\n/, $head;
    my $sl = shift @lines // '';
    unless ($sl =~ m{^HTTP/(\d\.\d) (\d{3}) ?(.*)$}) {
        $self->{error} = "bad status line: '$sl'";
        return $self;
    }
    @$self{qw(version status reason)} = ($1, $2 + 0, $3);
    for my $l (@lines) {
        if ($l =~ /^([!#\$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/) {
            push @{ $self->{headers} }, [$1, $2];
        } else {
            $self->{error} = "bad header line: '$l'";
            return $self;
        }
    }
    return $self;
}

sub incomplete {
    my ($self, $body, $why) = @_;
    $self->{body} = $body;
    $self->{error} = $why;
    $self->{complete} = 0;
    return $self;
}

sub status  { $_[0]{status} }
sub body    { $_[0]{body} }
sub error   { $_[0]{error} }
sub head    { $_[0]{head} // '' }
sub framing { $_[0]{framing} // '' }
sub conn    { $_[0]{conn} }

# All values of header NAME joined with ", ", or undef when absent.
sub header {
    my ($self, $name) = @_;
    my @v = $self->headers_named($name);
    return @v ? join(', ', @v) : undef;
}

sub headers_named {
    my ($self, $name) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $self->{headers} };
}

sub header_names { map { $_->[0] } @{ $_[0]{headers} } }

# A one-line summary for diagnostics.
sub summary {
    my ($self) = @_;
    return "no response: $self->{error}" if !$self->{status};
    my $s = "HTTP/$self->{version} $self->{status} $self->{reason}";
    $s .= " [error: $self->{error}]" if $self->{error};
    my $b = substr($self->{body} // '', 0, 200);
    $b =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ge;
    return "$s; headers: " . join('; ', map { "$_->[0]: $_->[1]" } @{ $self->{headers} })
      . "; body: $b";
}

1;
