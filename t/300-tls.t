# TLS termination: TLS 1.3 and 1.2 with curl, SNI picks the certificate
# (exact, wildcard, unknown name -> default), ALPN, session tickets resumed
# on new connections (two workers share the ticket key), garbage instead of
# a ClientHello, proxying to a plaintext upstream (keep-alive, 1 MiB both
# ways, X-Forwarded-Proto), redirect_to_https, $scheme, and -t on a key
# that does not match its certificate or an expired certificate.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Digest::MD5 qw(md5_hex);
use Portico;
use Upstream;

sub have { my ($t) = @_; return grep { -x "$_/$t" } split /:/, $ENV{PATH} }
plan skip_all => 'openssl and curl are needed' unless have('openssl') && have('curl');

my $dir = test_dir();
sub sh { my ($cmd) = @_; my $out = `$cmd 2>&1`; die "failed: $cmd\n$out" if $?; return $out }
sub mkcert {
    my ($name, $alg, $subj, $san, $days) = @_;
    my $new = $alg eq 'rsa' ? '-newkey rsa:2048' : '-newkey ec -pkeyopt ec_paramgen_curve:P-256';
    my $ext = $san ? "-addext 'subjectAltName=$san'" : '';
    if (defined $days) {    # an expired one: a CSR signed with -days -1
        sh("openssl req -new $new -nodes -keyout $dir/$name.key -subj '$subj' -out $dir/$name.csr");
        sh("openssl x509 -req -in $dir/$name.csr -key $dir/$name.key -days $days -out $dir/$name.crt");
        return;
    }
    sh("openssl req -x509 $new -nodes -keyout $dir/$name.key -out $dir/$name.crt -days 30 "
       . "-subj '$subj' $ext");
}
mkcert('ec', 'ec', '/CN=ec.test', 'DNS:ec.test,DNS:localhost');
mkcert('rsa', 'rsa', '/CN=rsa.test', 'DNS:rsa.test');
mkcert('wild', 'ec', '/CN=wildcard', 'DNS:*.wild.test');
mkcert('cnonly', 'ec', '/CN=cn.test', '');
mkcert('old', 'ec', '/CN=old.test', '', -1);

my $up = Upstream->new(name => 'app');
my $p = Portico->start(<<"EOF", upstreams => { app => $up }, workers => 2, log_level => 'debug');
[listener tls]
listen = 127.0.0.1:{port}
certificate = $dir/ec.crt $dir/ec.key
certificate = $dir/rsa.crt $dir/rsa.key
certificate = $dir/wild.crt $dir/wild.key
certificate = $dir/cnonly.crt $dir/cnonly.key
max_body_size = 4m
header_timeout = 2s

[listener plain]
listen = 127.0.0.1:{port:plain}
redirect_to_https = 8443

[upstream app]
server = {up:app}

[route hello]
path = /hello
return = 200 hello

[route scheme]
path = /scheme
redirect = 301 \$scheme://\$host/moved

[route all]
upstream = app
EOF
my $port = $p->port;
my $base = "https://localhost:$port";
my $curl = "curl -sS --max-time 10 --cacert $dir/ec.crt";

# curl, TLS 1.3 and TLS 1.2 only.
my $out = `$curl -w ' %{http_version}' $base/hello 2>&1`;
is $out, 'hello 1.1', 'curl over TLS 1.3 (default)';
$out = `$curl --tlsv1.3 -v $base/hello 2>&1`;
like $out, qr/TLSv1\.3/, 'TLS 1.3 negotiated';
$out = `$curl --tlsv1.2 --tls-max 1.2 -v $base/hello 2>&1`;
like $out, qr/TLSv1\.2/, 'TLS 1.2 only negotiated';
like $out, qr/hello$/, 'TLS 1.2 response';
like $out, qr{ALPN.*http/1\.1}i, 'curl: ALPN http/1.1 accepted';

# openssl s_client: SNI, ALPN, resumption.
sub s_client {
    my ($args) = @_;
    my $req = "GET /hello HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n";
    my $o = `printf '$req' | timeout 10 openssl s_client -connect 127.0.0.1:$port -ign_eof $args 2>&1`;
    return $o;
}
sub subject { my ($o) = @_; return $o =~ /^subject=.*?CN\s*=\s*([^\s,\/]+)/m ? $1 : '' }
is subject(s_client('-servername rsa.test')), 'rsa.test', 'SNI rsa.test picks the RSA certificate';
is subject(s_client('-servername ec.test')), 'ec.test', 'SNI ec.test picks the ECDSA certificate';
is subject(s_client('-servername a.wild.test')), 'wildcard', 'SNI a.wild.test matches *.wild.test';
is subject(s_client('-servername b.a.wild.test')), 'ec.test', 'a wildcard covers one label only';
is subject(s_client('-servername CN.TEST')), 'cn.test', 'a certificate without SAN matches by CN';
is subject(s_client('-servername unknown.example')), 'ec.test', 'unknown SNI: the first certificate';
is subject(s_client('-noservername')), 'ec.test', 'no SNI: the first certificate';
$out = s_client('-servername ec.test -alpn http/1.1');
like $out, qr{ALPN protocol: http/1\.1}, 's_client: ALPN http/1.1';
like $out, qr/hello/, 's_client: response body';

# Handshakes by worker slot, from the debug lines "PID#SLOT ... TLS handshake done".
sub handshakes_by_slot {
    my %n;
    for (split /\n/, slurp($p->error_log)) { $n{$1}++ if /#(\d+) .*TLS handshake done/ }
    return \%n;
}
for my $v ('-tls1_3', '-tls1_2') {
    $out = s_client("$v -sess_out $dir/sess$v.pem");
    like $out, qr/^New,/m, "$v: first connection is a full handshake";
    # Two workers: new connections land on both (SO_REUSEPORT hashes them);
    # every one resumes the ticket, whichever worker issued it.
    my ($tries, $reused, %slots) = (0, 0);
    my $before = handshakes_by_slot();
    while ($tries < 40 && ($tries < 6 || keys %slots < 2)) {
        $tries++;
        $out = s_client("$v -sess_in $dir/sess$v.pem");
        $reused++ if $out =~ /^Reused,/m && $out =~ /hello/;
        my $now = handshakes_by_slot();
        %slots = map { $_ => 1 } grep { ($now->{$_} // 0) > ($before->{$_} // 0) } keys %$now;
    }
    is $reused, $tries, "$v: the ticket resumes on every new connection ($tries)";
    is scalar(keys %slots), 2, "$v: resumed on both workers";
}

# Renegotiation is refused (RFC 5746: a no_renegotiation warning), and the
# worker goes on serving. s_client renegotiates on a line "R" when it runs
# with commands (no -ign_eof).
{
    my $o = `(printf 'R\\n'; sleep 1) | timeout 10 openssl s_client -connect 127.0.0.1:$port -tls1_2 -msg 2>&1`;
    like $o, qr/RENEGOTIATING/, 'TLS 1.2 client asks to renegotiate';
    like $o, qr/<<< .*Alert.*no_renegotiation/, 'renegotiation refused: no_renegotiation alert';
    like s_client('-tls1_2'), qr/hello/, 'served after the refused renegotiation';
}

# A ticket from before a reload (HUP) still resumes on the new workers.
{
    my $count = sub { scalar grep { /reload done/ } $p->error_lines };
    my $before = $count->();
    $p->signal('HUP');
    ok wait_for(sub { $count->() > $before }, T(10)), 'reload done';
    for my $v ('-tls1_3', '-tls1_2') {
        $out = s_client("$v -sess_in $dir/sess$v.pem");
        like $out, qr/^Reused,/m, "$v: a ticket from before the reload resumes";
    }
}

# Garbage instead of a ClientHello: closed, and the worker keeps serving. A
# half ClientHello (a record that announces more) waits for the handshake
# timeout (header_timeout).
for my $junk ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x16\x03\x01\x00\x05hello", "\x16\x03\x01\xff") {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5) or die $!;
    print $s $junk;
    shutdown($s, 1) if length($junk) < 6;    # a half ClientHello then FIN
    $s->timeout(5);
    local $SIG{ALRM} = sub { die "timeout\n" };
    alarm(T(10));
    my $got = '';
    eval { while (sysread($s, my $b, 4096)) { $got .= $b } };
    alarm(0);
    ok !$@, 'garbage: the connection is closed' or diag $@;
    unlike $got, qr/HTTP\//, 'garbage: no HTTP answer in plaintext';
}
is `$curl $base/hello 2>&1`, 'hello', 'still serving after garbage';

# Proxying through TLS to a plaintext upstream: keep-alive, 1 MiB up and down.
my $mib = 1024 * 1024;
write_file("$dir/up.bin", Upstream::pattern($mib));
$out = `$curl -v -o $dir/down.bin -H 'X-Up-Size: $mib' $base/download -o /dev/null --data-binary \@$dir/up.bin $base/upload 2>&1`;
is $? >> 8, 0, 'curl: download and upload through TLS';
like $out, qr/Re-using existing connection|Reusing existing/i, 'keep-alive over TLS';
is md5_hex(slurp("$dir/down.bin")), Upstream::pattern_md5($mib), '1 MiB download intact';
my @r = $up->requests;
is $r[-1]{body_md5}, Upstream::pattern_md5($mib), '1 MiB upload intact';
is $r[-1]->header('x-forwarded-proto'), 'https', 'X-Forwarded-Proto: https';

# wrk over https: keep-alive, and a new connection per request.
SKIP: {
    skip 'wrk not installed', 4 unless have('wrk');
    for my $close (0, 1) {
        my $h = $close ? "-H 'Connection: close'" : '';
        my $c = $close ? 32 : 8;    # 32 handshakes at once: most wait a loop turn
        my $out = `wrk -t1 -c$c -d1s $h https://127.0.0.1:$port/x 2>&1`;
        my ($n) = $out =~ /(\d+) requests in/;
        my $what = $close ? 'a handshake per request' : 'keep-alive';
        ok $n && $n > ($close ? 20 : 100), "wrk https, $what: $n requests" or diag $out;
        unlike $out, qr/Socket errors|Non-2xx/, "wrk https, $what: no errors" or diag $out;
    }
}

# $scheme, redirect_to_https.
$out = `$curl -si $base/scheme 2>&1`;
like $out, qr{^Location: https://localhost/moved\r?$}mi, '$scheme is https on a TLS listener';
my $r = http_get($p->port('plain'), '/a/b?c=d', host => 'example.com');
is $r->status, 308, 'redirect_to_https: 308';
is $r->header('location'), 'https://example.com:8443/a/b?c=d', 'redirect_to_https: Location';
$r = http_get($p->port('plain'), '/x', host => 'example.com:80');
is $r->header('location'), 'https://example.com:8443/x', 'redirect_to_https: the port is replaced';

# tls_protocols and tls_ciphers.
{
    my $p13 = Portico->start(<<"EOF");
[listener only13]
listen = 127.0.0.1:{port}
certificate = $dir/ec.crt $dir/ec.key
tls_protocols = TLSv1.3

[listener only12]
listen = 127.0.0.1:{port:b}
certificate = $dir/ec.crt $dir/ec.key
tls_protocols = TLSv1.2
tls_ciphers = TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256

[route hello]
return = 200 hello
EOF
    my ($a, $b) = ($p13->port, $p13->port('b'));
    is `$curl https://localhost:$a/ 2>&1`, 'hello', 'tls_protocols = TLSv1.3: TLS 1.3 works';
    `$curl --tlsv1.2 --tls-max 1.2 https://localhost:$a/ 2>&1`;
    isnt $? >> 8, 0, 'tls_protocols = TLSv1.3: a TLS 1.2 client is refused';
    my $o = `$curl -v https://localhost:$b/ 2>&1`;
    like $o, qr/TLSv1\.2/, 'tls_protocols = TLSv1.2: TLS 1.2 negotiated';
    like $o, qr/ECDHE-ECDSA-CHACHA20-POLY1305/, 'tls_ciphers: the one suite named';
    $p13->finish;
}

# -t: a key that does not match its certificate; an expired certificate.
my $bad = write_file("$dir/bad.ini", <<"EOF");
[listener tls]
listen = 127.0.0.1:1
certificate = $dir/ec.crt $dir/ec.key
certificate = $dir/rsa.crt $dir/ec.key

[route r]
return = 200 x
EOF
my $t = portico_t('-t', '-c', $bad);
is $t->{exit}, 1, '-t refuses a key that does not match its certificate';
like $t->{err}, qr{^\Q$bad\E:4: key "[^"]*ec\.key" does not match certificate "[^"]*rsa\.crt"}m,
  '-t: FILE:LINE names the key and the certificate';
my $old = write_file("$dir/old.ini", <<"EOF");
[listener tls]
listen = 127.0.0.1:1
certificate = $dir/old.crt $dir/old.key

[route r]
return = 200 x
EOF
$t = portico_t('-t', '-c', $old);
is $t->{exit}, 0, '-t accepts an expired certificate';
like $t->{err}, qr{^\Q$old\E:3: warning: certificate "[^"]*old\.crt" has expired}m,
  '-t warns about the expired certificate';
my $rp = write_file("$dir/redir.ini", <<"EOF");
[listener tls]
listen = 127.0.0.1:1
certificate = $dir/ec.crt $dir/ec.key
redirect_to_https = 443

[route r]
return = 200 x
EOF
$t = portico_t('-t', '-c', $rp);
is $t->{exit}, 1, '-t refuses redirect_to_https on a TLS listener';

$p->finish;
done_testing;
