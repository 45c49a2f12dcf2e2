# What a handshake costs depends on choices the server makes: the key
# exchange group (the server's order decides TLS 1.2, the client's key share
# TLS 1.3, a group left out of tls_groups costs a HelloRetryRequest) and,
# with an ECDSA and an RSA certificate for the same names, which one signs
# (ECDSA for clients that take it, with and without SNI; RSA for the
# others). -t refuses an unknown group.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;

sub have { my ($t) = @_; return grep { -x "$_/$t" } split /:/, $ENV{PATH} }
plan skip_all => 'openssl is needed' unless have('openssl');

my $dir = test_dir();
sub sh { my ($cmd) = @_; my $out = `$cmd 2>&1`; die "failed: $cmd\n$out" if $?; return $out }
for my $c (['ec', '-newkey ec -pkeyopt ec_paramgen_curve:P-256'], ['rsa', '-newkey rsa:2048']) {
    sh("openssl req -x509 $c->[1] -nodes -keyout $dir/$c->[0].key -out $dir/$c->[0].crt -days 30 "
       . "-subj '/CN=dual.test' -addext 'subjectAltName=DNS:dual.test,DNS:other.test'");
}
sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $dir/solo.key "
   . "-out $dir/solo.crt -days 30 -subj '/CN=solo.test' -addext 'subjectAltName=DNS:solo.test'");

# The RSA certificate is listed first: the ECDSA one must still win.
my $p = Portico->start(<<"EOF");
[listener tls]
listen = 127.0.0.1:{port}
certificate = $dir/rsa.crt $dir/rsa.key
certificate = $dir/ec.crt $dir/ec.key
certificate = $dir/solo.crt $dir/solo.key

[listener p384]
listen = 127.0.0.1:{port:p384}
certificate = $dir/ec.crt $dir/ec.key
tls_groups = secp384r1 secp256r1

[route hello]
return = 200 hello
EOF

sub s_client {
    my ($port, $args) = @_;
    my $req = "GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n";
    return scalar `printf '$req' | timeout 10 openssl s_client -connect 127.0.0.1:$port -ign_eof -msg $args 2>&1`;
}
sub temp_key { my ($o) = @_; return $o =~ /^Server Temp Key: (?:ECDH, )?([^,\n]+)/m ? $1 : '' }
sub sig_type { my ($o) = @_; return $o =~ /^Peer signature type: (\S+)/m ? $1 : '' }
sub server_hellos { my ($o) = @_; return scalar(() = $o =~ /<<< TLS 1\.3, Handshake \[length \w+\], ServerHello$/mg) }

my $port = $p->port;
# Key exchange groups (default tls_groups = secp256r1 x25519 secp384r1).
my $o = s_client($port, '-tls1_2');
like $o, qr/hello/, 'TLS 1.2 answer';
is temp_key($o), 'prime256v1', 'TLS 1.2: the server picks secp256r1 though the client lists X25519 first';
is temp_key(s_client($port, '-tls1_2 -groups X25519:P-384')), 'X25519', 'TLS 1.2: x25519 when the client has no P-256';
$o = s_client($port, '');
like $o, qr/hello/, 'TLS 1.3 answer';
is temp_key($o), 'X25519', 'TLS 1.3: the client\'s x25519 key share is taken';
is server_hellos($o), 1, 'TLS 1.3: no HelloRetryRequest';
is temp_key(s_client($port, '-groups P-256')), 'prime256v1', 'TLS 1.3: a P-256 key share is taken';
is temp_key(s_client($port, '-groups P-384')), 'secp384r1', 'TLS 1.3: a P-384 key share is taken';

# tls_groups without x25519: an x25519 share gets a HelloRetryRequest.
my $p384 = $p->port('p384');
$o = s_client($p384, '');
like $o, qr/hello/, 'tls_groups without x25519: TLS 1.3 answer';
is temp_key($o), 'prime256v1', 'TLS 1.3 after a HelloRetryRequest: the client\'s next choice, P-256';
is server_hellos($o), 2, 'TLS 1.3: a HelloRetryRequest, then the ServerHello';
is temp_key(s_client($p384, '-tls1_2')), 'secp384r1', 'TLS 1.2: the listed order, secp384r1 first';

# Twin certificates: ECDSA signs unless the client only takes RSA.
for my $sni ('-servername dual.test', '-servername other.test', '-noservername') {
    $o = s_client($port, $sni);
    is sig_type($o), 'ECDSA', "$sni, TLS 1.3: the ECDSA certificate";
    like $o, qr/hello/, "$sni: answer";
    is sig_type(s_client($port, "$sni -sigalgs rsa_pss_rsae_sha256")), 'RSA-PSS',
      "$sni, TLS 1.3, a client that only takes RSA: the RSA certificate";
    is sig_type(s_client($port, "$sni -tls1_2")), 'ECDSA', "$sni, TLS 1.2: the ECDSA certificate";
    is sig_type(s_client($port, "$sni -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256")), 'RSA',
      "$sni, TLS 1.2, RSA suites only: the RSA certificate";
}
$o = s_client($port, '-servername solo.test');
like $o, qr/subject=.*CN\s*=\s*solo\.test/, 'another name keeps its own certificate';
$o = s_client($port, '-servername solo.test -sigalgs rsa_pss_rsae_sha256');
unlike $o, qr/hello/, 'no RSA certificate for solo.test: a client that only takes RSA fails';
$p->expect_errors(qr/TLS handshake failed/);
$p->finish;

# -t: an unknown group is refused with its line.
write_file("$dir/bad.ini", <<"EOF");
[listener tls]
listen = 127.0.0.1:1
certificate = $dir/ec.crt $dir/ec.key
tls_groups = x25519 ffdhe2048
EOF
my $t = portico_t('-t', '-c', "$dir/bad.ini");
is $t->{exit}, 1, '-t refuses an unknown group';
like $t->{all}, qr/bad\.ini:4: .*tls_groups.*ffdhe2048/, '... with its line';
write_file("$dir/good.ini", "[listener tls]\nlisten = 127.0.0.1:1\ncertificate = $dir/ec.crt $dir/ec.key\n");
$t = portico_t('-T', '-c', "$dir/good.ini");
like $t->{out}, qr/^tls_groups = secp256r1 x25519 secp384r1$/m, '-T shows the default tls_groups';

done_testing;
