# TLS session tickets with shared, rotated keys, TLS 1.3 and TLS 1.2 alike:
# a ticket issued by one worker resumes on the other; the lifetime hint
# matches what the keys allow; a ticket resumes while its key is current or
# previous and not once its key is two rotations old (tls_ticket_rotation =
# 3s, key names read from the ticket and from the master's rotation lines);
# tickets resume after a reload (HUP) and after a binary upgrade (USR2 then
# QUIT to the old master), whose new master takes the keys from the shared
# memory instead of making new ones, and one handed a shared memory of
# another layout starts afresh; a reload that turns tls_session_tickets off
# stops the tickets. Also: an expired certificate
# at reload is a warning, not an error, and the reload goes through.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Portico;

sub have { my ($t) = @_; return grep { -x "$_/$t" } split /:/, $ENV{PATH} }
plan skip_all => 'openssl is needed' unless have('openssl');

my $dir = test_dir();
sub sh { my ($cmd) = @_; my $out = `$cmd 2>&1`; die "failed: $cmd\n$out" if $?; return $out }
sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $dir/ec.key "
   . "-out $dir/ec.crt -days 30 -subj /CN=localhost");
sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $dir/old.key "
   . "-subj /CN=old.test -out $dir/old.csr");
sh("openssl x509 -req -in $dir/old.csr -key $dir/old.key -days -1 -out $dir/old.crt");

my $rotation = 3;    # seconds, for the listener "fast"
my $conf = <<"EOF";
[listener tls]
listen = 127.0.0.1:{port}
certificate = $dir/ec.crt $dir/ec.key

[listener fast]
listen = 127.0.0.1:{port:fast}
certificate = $dir/ec.crt $dir/ec.key
tls_ticket_rotation = ${rotation}s

[route hello]
return = 200 hello
EOF
my $p = Portico->start($conf, workers => 2, log_level => 'debug');
my ($port, $fast) = ($p->port, $p->port('fast'));

# One connection with openssl s_client: a GET, the whole answer read.
sub s_client {
    my ($port, $args) = @_;
    my $req = "GET /hello HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n";
    return `printf '$req' | timeout 10 openssl s_client -connect 127.0.0.1:$port -ign_eof $args 2>&1`;
}
sub reused { $_[0] =~ /^Reused,/m && $_[0] =~ /hello/ }
sub full   { $_[0] =~ /^New,/m && $_[0] =~ /hello/ }
# The last ticket s_client received: its key name (first 4 bytes) and hint.
sub ticket {
    my ($o) = @_;
    my @t = $o =~ /TLS session ticket lifetime hint: (\d+).*?TLS session ticket:\s*\n\s*0000 - ((?:[0-9a-f]{2}[ -]){4})/sg;
    return () unless @t;
    my ($hint, $name) = @t[-2, -1];
    $name =~ s/[ -]//g;
    return ($name, $hint);
}
sub log_count { my ($re) = @_; scalar grep { /$re/ } $p->error_lines }
# Handshakes per worker slot, from the debug lines "PID#SLOT ... TLS handshake done".
sub handshakes_by_slot {
    my %n;
    for ($p->error_lines) { $n{$1}++ if /#(\d+) .*TLS handshake done/ }
    return \%n;
}
sub new_slots {
    my ($before) = @_;
    my $now = handshakes_by_slot();
    return grep { ($now->{$_} // 0) > ($before->{$_} // 0) } keys %$now;
}

my %sess;
my @versions = ('-tls1_3', '-tls1_2');

# A ticket issued by one worker resumes on the other.
for my $v (@versions) {
    my $before = handshakes_by_slot();
    my $o = s_client($port, "$v -sess_out $dir/sess$v.pem");
    ok full($o), "$v: first connection is a full handshake";
    my ($name, $hint) = ticket($o);
    ok $name, "$v: a ticket was issued (key $name)";
    ok $hint > 3590 && $hint <= 7200, "$v: lifetime hint $hint s: between one and two rotations (1h)";
    my @issuer = new_slots($before);
    is scalar(@issuer), 1, "$v: issued by worker #@issuer";
    $sess{$v} = $name;
    my ($tries, $bad, $other) = (0, 0, 0);
    while ($tries < 60 && !$other) {
        $tries++;
        my $b = handshakes_by_slot();
        my $r = s_client($port, "$v -sess_in $dir/sess$v.pem");
        $bad++ unless reused($r);
        $other = grep { $_ ne $issuer[0] } new_slots($b);
    }
    ok $other, "$v: a new connection reached the other worker ($tries tries)";
    is $bad, 0, "$v: and every connection resumed, on either worker";
}

# Rotation on "fast": a ticket resumes while its key is current, then
# previous; two rotations after its key became current it no longer does.
{
    my $rot = qr/TLS ticket keys of listener fast: (?:rotated|new keys), current key ([0-9a-f]{8})/;
    my $current = sub { map { /$rot/ ? $1 : () } $p->error_lines };
    my @cur = $current->();
    ok @cur >= 1, "keys made for listener fast at start (current $cur[-1])";
    my $n = @cur;
    ok wait_for(sub { $current->() > $n }, T($rotation * 3)), 'the master rotates them';
    my (%key, %pos);
    for my $v (@versions) {
        my $o = s_client($fast, "$v -sess_out $dir/fast$v.pem");
        my $hint;
        ($key{$v}, $hint) = ticket($o);
        ok $key{$v} && $hint >= 1 && $hint <= 2 * $rotation,
          "$v: ticket under key $key{$v}, hint $hint s <= two rotations";
    }
    # Where each ticket's key became current (a worker a little ahead may
    # have used the next key: wait for it to become current too).
    ok wait_for(sub {
        my @c = $current->();
        for my $v (@versions) { ($pos{$v}) = grep { $c[$_] eq $key{$v} } 0 .. $#c }
        !grep { !defined $pos{$_} } @versions;
    }, T($rotation * 3)), 'the ticket keys are among the current keys logged';
    # Both versions at each step: their keys are the same, or one apart.
    for my $v (@versions) {
        ok wait_for(sub { $current->() > $pos{$v} + 1 }, T($rotation * 3)), "$v: one rotation later";
        my $o = s_client($fast, "$v -sess_in $dir/fast$v.pem");
        ok reused($o), "$v: its key is now previous: the ticket still resumes";
    }
    for my $v (@versions) {
        ok wait_for(sub { $current->() > $pos{$v} + 2 }, T($rotation * 3)), "$v: two rotations later";
        sleep 0.8;    # the workers see it at their next 200 ms tick
        my $o = s_client($fast, "$v -sess_in $dir/fast$v.pem");
        ok full($o), "$v: its key is gone: a full handshake";
    }
}

# Reload (HUP): the same keys, tickets resume on the new workers; an
# expired certificate on a new listener is a warning and the reload goes on.
my $reloads = sub { log_count(qr/reload done/) };
sub reload {
    my ($text) = @_;
    write_file($p->config_file, $p->expand($text)) if defined $text;
    my $before = $reloads->();
    $p->signal('HUP');
    return wait_for(sub { $reloads->() > $before }, T(10));
}
my $base = Portico::_inject_main($p, $conf);    # [main] as the harness wrote it
$base =~ s/\n\[route hello\]/\n[listener expired]\nlisten = 127.0.0.1:{port:old}\ncertificate = $dir\/old.crt $dir\/old.key\n\n[route hello]/;
ok reload($base), 'reload with an expired certificate goes through';
my ($warn) = grep { /expired/ } $p->error_lines;
like $warn // '', qr/\[warn\].*portico\.ini:\d+: warning: certificate "[^"]*old\.crt" has expired/,
  'the expired certificate is a [warn] line with FILE:LINE';
is log_count(qr/\[error\].*has expired/), 0, 'not an [error]';
is log_count(qr/listener tls: new keys/), 1, 'the reload made no new keys for listener tls';
for my $v (@versions) {
    my $o = s_client($port, "$v -sess_in $dir/sess$v.pem");
    ok reused($o), "$v: a ticket from before the reload resumes";
}

# Binary upgrade: the new master takes the keys from the shared memory.
sub read_pid { my $t = slurp($_[0]) // ''; return $t =~ /^(\d+)/ ? $1 : 0 }
sub gone { my $pid = shift; !-e "/proc/$pid" || slurp("/proc/$pid/stat") =~ /^\d+ \(.*?\) Z/ }
my $old = $p->pid;
my $new;
kill 'USR2', $old;
ok wait_for(sub { $new = read_pid($p->pid_file); $new && $new != $old }, T(10)), 'USR2: a new master';
ok wait_for(sub { log_count(qr/ $new#m all 2 workers ready/) }, T(10)), 'the new master runs its workers';
like join("\n", $p->error_lines), qr/ $new#m binary upgrade: took over the sockets and shared memory/,
  'it took over the shared memory';
kill 'QUIT', $old;
ok wait_for(sub { !$p->alive }, T(10)), 'QUIT: the old master exits';
is log_count(qr/ $new#m .*listener tls: new keys/), 0, 'the new master made no new keys';
for my $v (@versions) {
    my $o = s_client($port, "$v -sess_in $dir/sess$v.pem");
    ok reused($o), "$v: a ticket from before the upgrade resumes";
}

# A reload that turns tickets off on "tls": no more tickets, none accepted.
{
    my $off = $base;
    $off =~ s/(\[listener tls\]\n)/$1tls_session_tickets = off\n/;
    write_file($p->config_file, $p->expand($off));
    my $before = $reloads->();
    kill 'HUP', $new;
    ok wait_for(sub { $reloads->() > $before }, T(10)), 'reload: tickets off on listener tls';
    for my $v (@versions) {
        my $o = s_client($port, "$v -sess_out $dir/none$v.pem");
        ok full($o), "$v: tickets off: a full handshake";
        ok !ticket($o), "$v: and no ticket issued";
        $o = s_client($port, "$v -sess_in $dir/sess$v.pem");
        ok full($o), "$v: an old ticket is not accepted";
        $o = s_client($fast, "$v -sess_out $dir/still$v.pem");
        ok scalar(ticket($o)), "$v: listener fast still issues tickets";
    }
}

kill 'TERM', $new;
ok wait_for(sub { gone($new) }, T(10)), 'TERM stops the upgraded master';
unlike join("\n", $p->error_lines), qr/TLS ticket keys.*[0-9a-f]{64}/, 'no key material in the log';
$p->check_logs;

# A new master handed a shared memory of another layout (as from an older
# binary: layout 3, before ticket keys) starts with a fresh one, says so,
# and serves with working tickets.
{
    use Fcntl qw(F_GETFD F_SETFD FD_CLOEXEC);
    open my $fh, '+>', "$dir/v2.shm" or die $!;
    print $fh pack('VV', 0x70727463, 3), "\0" x 8184;
    close $fh;
    open $fh, '+<', "$dir/v2.shm" or die $!;
    fcntl($fh, F_SETFD, fcntl($fh, F_GETFD, 0) & ~FD_CLOEXEC) or die $!;
    local $ENV{PORTICO_INHERIT} = 'shm=' . fileno($fh);
    my $q = Portico->start(<<"EOF");
[listener tls]
listen = 127.0.0.1:{port}
certificate = $dir/ec.crt $dir/ec.key

[route hello]
return = 200 hello
EOF
    close $fh;
    my $log = join "\n", $q->error_lines;
    like $log, qr/\[warn\].*inherited shared memory has another layout version.*starting a fresh one/,
      'another layout: a warning, and a fresh shared memory';
    like $log, qr/listener tls: new keys/, 'with fresh ticket keys';
    my $qport = $q->port;
    for my $v (@versions) {
        s_client($qport, "$v -sess_out $dir/v2$v.pem");
        my $o = s_client($qport, "$v -sess_in $dir/v2$v.pem");
        ok reused($o), "$v: its tickets resume" or diag $o;
    }
    $q->finish;
}
END { kill 'KILL', $new if $new && !gone($new) }
done_testing;
