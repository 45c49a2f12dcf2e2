# Tiny scriptable HTTP/1.1 upstream servers for portico's tests. Each server
# runs in a forked process (one more fork per connection), listens on a free
# port of 127.0.0.1, and appends one JSON line per event to a log file that
# the test reads: what reached the upstream, byte for byte.
package Upstream;

use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Socket qw(IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);
use Portico ();

my $CREATOR = $$;
my @ALL;
my $SEQ = 0;
my $JSON = JSON::PP->new->ascii->canonical;

# Options (each may also be set per request by a request header
# `X-Up-OPTION: VALUE`, e.g. `X-Up-Delay: 2`, `X-Up-Status: 404`;
# `X-Up-Header: Name: value` adds a response header):
#   name        shown as `X-Backend: NAME` and in the default body
#   status      response status (200); reason
#   headers     arrayref of "Name: value" response headers
#   body        fixed body (default "hello from NAME\n")
#   echo        1: the body is a JSON object describing the request
#   size        N: a generated body of N bytes (see pattern())
#   chunked     1: chunked response; chunk => N bytes per chunk
#   close_delimited 1: no Content-Length/Transfer-Encoding, close after
#   delay       seconds to wait before answering
#   hold        FILE: answer only once FILE exists
#   never       1: never answer (keep reading until the peer closes)
#   close       1: close right after reading the request, no response
#   reset       1: reset (RST) right after reading the request
#   cut         N: announce the full length, send N body bytes, close
#   raw         bytes sent verbatim as the whole response, then close
#   keepalive   0: answer with `Connection: close` and close (default 1)
#   silent_close 1: answer as keep-alive, then close the connection anyway
#   send_100    0: do not answer `Expect: 100-continue` with 100 (default 1)
#   handler     sub { my ($req) = @_; return { OPTION => VALUE, ... } }
sub new {
    my ($class, %o) = @_;
    $o{name} //= 'up' . ++$SEQ;
    $o{send_100} //= 1;
    $o{keepalive} //= 1;
    my $dir = Portico::test_dir();
    my $self = bless { o => \%o, name => $o{name} }, $class;
    (my $fname = $o{name}) =~ s/[^\w.-]/_/g;
    $self->{log} = "$dir/upstream-$fname-" . (++$SEQ) . ".jsonl";
    Portico::write_file($self->{log}, '');
    my $ls = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => $o{port} // 0, Proto => 'tcp',
        Listen => 256, ReuseAddr => 1) or die "upstream listen: $!";
    $self->{port} = $ls->sockport;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        setpgrp(0, 0);
        _serve($self, $ls);
        POSIX::_exit(0);
    }
    close $ls;
    $self->{pid} = $pid;
    push @ALL, $self;
    return $self;
}

# A port on which nothing listens: connecting to it is refused.
sub refused {
    my ($class, %o) = @_;
    my $self = bless { o => \%o, name => $o{name} // 'refused', refused => 1 }, $class;
    $self->{port} = Portico::free_port();
    $self->{log} = '/dev/null';
    return $self;
}

# A port where connecting hangs: a listener with a full accept queue
# (backlog 0, one connection queued, never accepted) drops further SYNs.
sub blackhole {
    my ($class, %o) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
                                  Listen => 1) or die "blackhole: $!";
    listen($l, 0);
    my $fill = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $l->sockport,
                                     Proto => 'tcp', Timeout => 2);
    return bless { o => \%o, name => $o{name} // 'blackhole', port => $l->sockport,
                   log => '/dev/null', keep => [$l, $fill] }, $class;
}

# True when connecting to this port hangs (checked with a 0.5 s timeout).
sub hangs {
    my ($self) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                                  Proto => 'tcp', Timeout => 0.5);
    return $s ? 0 : 1;
}

sub port { $_[0]{port} }
sub addr { "127.0.0.1:$_[0]{port}" }
sub name { $_[0]{name} }

sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $$ == $CREATOR;
    local $?;
    kill 'KILL', -$self->{pid};
    kill 'KILL', $self->{pid};
    waitpid($self->{pid}, 0);
    delete $self->{pid};
}

sub stop_all { $_->stop for @ALL }

END { stop_all() if $$ == $CREATOR }

# ---------------------------------------------------------------------------
# Reading what happened (in the test process).

# Every logged event, in order: {ev => open|head|req|close|partial|bad, ...}.
sub events {
    my ($self) = @_;
    my @ev;
    for my $l (split /\n/, Portico::slurp($self->{log})) {
        my $e = eval { $JSON->decode($l) } or next;
        bless $e, 'Upstream::Request' if $e->{ev} eq 'req' || $e->{ev} eq 'head';
        push @ev, $e;
    }
    return @ev;
}

# Complete requests (head and body received), in arrival order.
sub requests { grep { $_->{ev} eq 'req' } $_[0]->events }
sub request_count { scalar(my @r = $_[0]->requests) }
# Request heads (logged as soon as a head is complete).
sub heads { grep { $_->{ev} eq 'head' } $_[0]->events }
# Connections accepted so far.
sub connections { scalar grep { $_->{ev} eq 'open' } $_[0]->events }
# Connections open right now.
sub active {
    my ($self) = @_;
    my $n = 0;
    for ($self->events) { $n++ if $_->{ev} eq 'open'; $n-- if $_->{ev} eq 'close' }
    return $n;
}
# Requests whose head arrived but that got no answer yet.
sub pending {
    my ($self) = @_;
    my %h;
    for ($self->events) {
        $h{"$_->{conn}/$_->{seq}"}++ if $_->{ev} eq 'head';
        delete $h{"$_->{conn}/$_->{seq}"} if $_->{ev} eq 'answered';
    }
    return scalar keys %h;
}
# Events that show bytes of a request arrived (head, request, partial, bad).
sub received {
    grep { $_->{ev} =~ /^(head|req|partial|bad)$/ } $_[0]->events;
}

sub reset_log { Portico::write_file($_[0]{log}, '') }

# Wait until at least N complete requests were logged.
sub wait_requests {
    my ($self, $n, $timeout) = @_;
    return Portico::wait_for(sub { $self->request_count >= $n }, $timeout // Portico::T(5));
}

# The generated body of `size => N`: 16-byte numbered lines, cut at N.
sub pattern {
    my ($n) = @_;
    my $lines = int(($n + 15) / 16);
    my $s = join '', map { sprintf "%015d\n", $_ } 0 .. $lines - 1;
    return substr($s, 0, $n);
}

sub pattern_md5 { md5_hex(pattern($_[0])) }

# ---------------------------------------------------------------------------
# The server (in the forked child).

my %REASON = (
    100 => 'Continue', 200 => 'OK', 201 => 'Created', 204 => 'No Content',
    206 => 'Partial Content', 301 => 'Moved Permanently', 302 => 'Found',
    304 => 'Not Modified', 400 => 'Bad Request', 401 => 'Unauthorized',
    403 => 'Forbidden', 404 => 'Not Found', 500 => 'Internal Server Error',
    502 => 'Bad Gateway', 503 => 'Service Unavailable', 504 => 'Gateway Timeout',
);

my $LOGFH;

sub _log {
    my ($rec) = @_;
    $rec->{t} = time;
    $rec->{pid} = $$;
    my $line = $JSON->encode($rec) . "\n";
    syswrite($LOGFH, $line);
}

sub _serve {
    my ($self, $ls) = @_;
    $SIG{CHLD} = 'IGNORE';
    $SIG{PIPE} = 'IGNORE';
    open $LOGFH, '>>', $self->{log} or POSIX::_exit(1);
    binmode $LOGFH;
    while (1) {
        my $c = $ls->accept;
        next unless $c;
        my $pid = fork;
        if (!defined $pid) { close $c; next }
        if (!$pid) {
            close $ls;
            eval { _conn($self, $c) };
            _log({ ev => 'bad', conn => $$, err => "handler died: $@" }) if $@;
            POSIX::_exit(0);
        }
        close $c;
    }
}

sub _conn {
    my ($self, $c) = @_;
    my $o = $self->{o};
    binmode $c;
    setsockopt($c, IPPROTO_TCP, TCP_NODELAY, 1);
    my $conn = $$;
    _log({ ev => 'open', conn => $conn, server => $self->{name},
           peer => $c->peerhost . ':' . $c->peerport });
    my $buf = '';
    my $seq = 0;
    my $why = 'eof';
  REQ: while (1) {
        my $i;
        while (($i = index($buf, "\r\n\r\n")) < 0) {
            my $n = sysread($c, $buf, 65536, length $buf);
            if (!$n) {
                _log({ ev => 'partial', conn => $conn, data => $buf }) if length $buf;
                last REQ;
            }
            if (length $buf > 1 << 20) {
                _log({ ev => 'bad', conn => $conn, err => 'head too long', data => substr($buf, 0, 4096) });
                last REQ;
            }
        }
        my $head = substr($buf, 0, $i + 4, '');
        $seq++;
        my ($rl, @hl) = split /\r\n/, $head;
        my ($method, $target, $version) = $rl =~ m{^(\S+) (\S+) HTTP/(\d\.\d)$};
        my @headers;
        for my $l (@hl) {
            if ($l =~ /^([^:\s]+):[ \t]*(.*?)[ \t]*$/) { push @headers, [$1, $2] }
            else { push @headers, ['', $l] }
        }
        my $req = bless {
            ev => 'head', server => $self->{name}, conn => $conn, seq => $seq,
            method => $method, target => $target, version => $version,
            headers => \@headers, head => $head,
        }, 'Upstream::Request';
        _log({%$req});
        unless (defined $method) {
            _log({ ev => 'bad', conn => $conn, seq => $seq, err => 'bad request line', data => $rl });
            last REQ;
        }
        # Behaviour: server options, then X-Up-* request headers, then handler.
        my %b = %$o;
        delete $b{headers};
        my @rh = @{ $o->{headers} || [] };
        for my $h (@headers) {
            next unless $h->[0] =~ /^x-up-([a-z0-9-]+)$/i;
            my $k = lc $1;
            $k =~ tr/-/_/;
            if ($k eq 'header') { push @rh, $h->[1] } else { $b{$k} = $h->[1] }
        }
        if ($o->{handler}) {
            my $more = $o->{handler}->($req) || {};
            push @rh, @{ delete $more->{headers} } if $more->{headers};
            %b = (%b, %$more);
        }
        # Body.
        my $te = join(',', $req->header_values('transfer-encoding'));
        my @cl = $req->header_values('content-length');
        my $expect = lc($req->header('expect') // '');
        my ($body, $err, $trailers) = ('', undef, '');
        my $chunked = $te =~ /chunked/i ? 1 : 0;
        if (($chunked || (@cl && $cl[0] > 0)) && $expect eq '100-continue' && $b{send_100}) {
            syswrite($c, "HTTP/1.1 100 Continue\r\n\r\n");
        }
        if ($chunked) {
            ($body, $err, $trailers) = _read_chunked($c, \$buf);
        } elsif (@cl) {
            if ($cl[0] !~ /^\d+$/ || @cl > 1) {
                $err = "bad content-length: @cl";
            } else {
                while (length $buf < $cl[0]) {
                    my $n = sysread($c, $buf, 262144, length $buf);
                    if (!$n) { $err = 'eof in body'; last }
                }
                $body = substr($buf, 0, $cl[0], '') unless $err;
            }
        }
        if ($err) {
            _log({ ev => 'bad', conn => $conn, seq => $seq, err => $err,
                   body_len => length $body, data => substr($buf, 0, 4096) });
            last REQ;
        }
        my %rec = (%$req, ev => 'req', body_len => length $body, body_md5 => md5_hex($body),
                   chunked => $chunked, trailers => $trailers);
        $rec{body} = $body if length $body <= 262144;
        _log(\%rec);
        # Answer.
        if ($b{hold}) {
            my $deadline = time + 120;
            sleep 0.02 while !-e $b{hold} && time < $deadline;
        }
        sleep $b{delay} if $b{delay};
        if ($b{never}) {
            1 while sysread($c, my $x, 65536);
            $why = 'never: peer closed';
            last REQ;
        }
        if ($b{close}) { $why = 'close after request'; last REQ }
        if ($b{reset}) {
            setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            $why = 'reset after request';
            last REQ;
        }
        if (defined $b{raw}) {
            _write($c, $b{raw});
            _log({ ev => 'answered', conn => $conn, seq => $seq, status => 'raw' });
            $why = 'raw';
            last REQ;
        }
        my $keep = _respond($self, $c, \%rec, \%b, \@rh);
        _log({ ev => 'answered', conn => $conn, seq => $seq });
        unless ($keep) { $why = 'server closes'; last REQ }
    }
    _log({ ev => 'close', conn => $conn, why => $why });
    close $c;
}

sub _write {
    my ($c, $data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($c, $data, length($data) - $off, $off);
        return 0 unless defined $n;
        $off += $n;
    }
    return 1;
}

sub _read_chunked {
    my ($c, $bufref) = @_;
    my $body = '';
    my $fill = sub {
        my ($pred) = @_;
        until ($pred->()) {
            my $n = sysread($c, $$bufref, 262144, length $$bufref);
            return 0 unless $n;
        }
        return 1;
    };
    while (1) {
        $fill->(sub { index($$bufref, "\r\n") >= 0 }) or return ($body, 'eof in chunk size');
        my $j = index($$bufref, "\r\n");
        my $line = substr($$bufref, 0, $j + 2, '');
        return ($body, "bad chunk size line: $line") unless $line =~ /^([0-9a-fA-F]{1,15})(;[^\r\n]*)?\r\n$/;
        my $size = hex $1;
        if ($size == 0) {
            my $tr = '';
            while (1) {
                $fill->(sub { index($$bufref, "\r\n") >= 0 }) or return ($body, 'eof in trailers');
                my $k = index($$bufref, "\r\n");
                my $tl = substr($$bufref, 0, $k + 2, '');
                last if $tl eq "\r\n";
                $tr .= $tl;
            }
            return ($body, undef, $tr);
        }
        $fill->(sub { length $$bufref >= $size + 2 }) or return ($body, 'eof in chunk data');
        $body .= substr($$bufref, 0, $size, '');
        return ($body, 'no CRLF after chunk data') unless substr($$bufref, 0, 2, '') eq "\r\n";
    }
}

# Write the response; returns true to keep the connection open.
sub _respond {
    my ($self, $c, $req, $b, $rh) = @_;
    my $status = $b->{status} // 200;
    my $reason = $b->{reason} // $REASON{$status} // 'Status';
    my $no_body = $req->{method} eq 'HEAD' || $status < 200 || $status == 204 || $status == 304;
    my ($body, $size);
    if ($b->{echo}) {
        my %e = map { $_ => $req->{$_} } qw(method target version headers body_len body_md5);
        $e{server} = $self->{name};
        $e{body} = $req->{body} if defined $req->{body} && length $req->{body} <= 65536;
        $body = $JSON->encode(\%e);
        $size = length $body;
    } elsif (defined $b->{size}) {
        $size = $b->{size};
    } else {
        $body = $b->{body} // "hello from $self->{name}\n";
        $size = length $body;
    }
    my $conn_hdr = lc join(',', map { $_->[1] } grep { lc $_->[0] eq 'connection' } @{ $req->{headers} });
    my $keep = $b->{keepalive} && !$b->{close_delimited}
      && $conn_hdr !~ /\bclose\b/
      && ($req->{version} eq '1.1' || $conn_hdr =~ /keep-alive/);
    my @h = ("X-Backend: $self->{name}", @$rh);
    if ($status == 204 || $status < 200) {
    } elsif ($b->{close_delimited}) {
    } elsif ($b->{chunked}) {
        push @h, 'Transfer-Encoding: chunked';
    } elsif ($status != 304) {
        push @h, "Content-Length: $size";
    }
    push @h, 'Connection: close' unless $keep || $b->{close_delimited};
    my $head = "HTTP/1.1 $status $reason\r\n" . join('', map { "$_\r\n" } @h) . "\r\n";
    if ($no_body) {
        _write($c, $head) or return 0;
        return $keep && !$b->{silent_close};
    }
    my $limit = defined $b->{cut} ? $b->{cut} : $size;
    _write($c, $head) or return 0;
    my $csz = $b->{chunk} || 65536;
    my $sent = 0;
    my $line = 0;
    while ($sent < $limit) {
        my $n = $limit - $sent;
        $n = $csz if $n > $csz;
        my $piece;
        if (defined $body) {
            $piece = substr($body, $sent, $n);
        } else {
            # generated pattern, 16-byte numbered lines
            my $first = int($sent / 16);
            my $last = int(($sent + $n + 15) / 16);
            $piece = join '', map { sprintf "%015d\n", $_ } $first .. $last - 1;
            $piece = substr($piece, $sent - $first * 16, $n);
        }
        my $data = $b->{chunked} ? sprintf("%x\r\n", length $piece) . $piece . "\r\n" : $piece;
        _write($c, $data) or return 0;
        $sent += $n;
        sleep $b->{chunk_delay} if $b->{chunk_delay};
    }
    if (defined $b->{cut}) {
        setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $b->{cut_reset};
        return 0;
    }
    _write($c, "0\r\n\r\n") or return 0 if $b->{chunked};
    return 0 if $b->{close_delimited} || $b->{silent_close};
    return $keep;
}

package Upstream::Request;

# A request as the upstream saw it: method, target, version, headers
# ([[name, value], ...] in order, names as sent), head (raw bytes), body,
# body_len, body_md5, chunked (1 when it came chunked), conn, seq.

sub header_values {
    my ($self, $name) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $self->{headers} };
}

# All values of NAME joined with ", ", or undef.
sub header {
    my ($self, $name) = @_;
    my @v = $self->header_values($name);
    return @v ? join(', ', @v) : undef;
}

sub has_header { my ($self, $name) = @_; return scalar $self->header_values($name) }

sub header_names { map { $_->[0] } @{ $_[0]{headers} } }

1;
