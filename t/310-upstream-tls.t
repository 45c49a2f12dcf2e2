# TLS to upstreams (tls = on in [upstream]). The TLS servers are Debian's
# nginx, each server block terminating TLS in front of a recording test
# upstream, so both sides are checked: what nginx saw of the TLS connection
# (SNI, connection and request numbers, session reuse, protocol, ALPN, in
# its access log and as headers it adds) and what reached the application.
# Certificates come from openssl here: a test CA signing a certificate for
# up.test and 127.0.0.1, an expired one, a self-signed one, and another CA.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Digest::MD5 qw(md5_hex);
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);
use Portico;
use Upstream;

sub have { my ($t) = @_; return grep { -x "$_/$t" } split /:/, $ENV{PATH} }
my ($nginx) = grep { -x } map { "$_/nginx" } split(/:/, $ENV{PATH}), '/usr/sbin';
plan skip_all => 'nginx and openssl are needed' unless $nginx && have('openssl');

my $dir = test_dir();
sub sh { my ($cmd) = @_; my $out = `$cmd 2>&1`; die "failed: $cmd\n$out" if $?; return $out }
my $ec = '-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes';
sub ca {
    my ($name) = @_;
    sh("openssl req -x509 $ec -keyout $dir/$name.key -out $dir/$name.crt -days 30 "
       . "-subj '/CN=portico test $name' -addext basicConstraints=critical,CA:TRUE");
}
sub signed {
    my ($name, $ca, $cn, $san, $days) = @_;
    sh("openssl req -new $ec -keyout $dir/$name.key -out $dir/$name.csr -subj '/CN=$cn'");
    write_file("$dir/$name.ext", "subjectAltName=$san\n");
    sh("openssl x509 -req -in $dir/$name.csr -CA $dir/$ca.crt -CAkey $dir/$ca.key "
       . "-CAcreateserial -days $days -extfile $dir/$name.ext -out $dir/$name.crt");
}
ca('ca');
ca('otherca');
signed('srv', 'ca', 'up.test', 'DNS:up.test,IP:127.0.0.1', 30);
signed('old', 'ca', 'up.test', 'DNS:up.test,IP:127.0.0.1', -1);
sh("openssl req -x509 $ec -keyout $dir/self.key -out $dir/self.crt -days 30 -subj '/CN=self.test' "
   . "-addext subjectAltName=DNS:self.test");

# The application behind nginx, and nginx: one TLS server block per case.
my $app = Upstream->new(name => 'app');
my $app_port = $app->port;
my %port = map { $_ => free_port() } qw(good old self tls12 short plain);
my $ngx = "$dir/nginx";
mkdir $ngx;
mkdir "$ngx/logs";
my $server = sub {
    my ($name, $cert, $extra) = @_;
    return "server { listen 127.0.0.1:$port{$name} ssl; ssl_certificate $dir/$cert.crt; "
      . "ssl_certificate_key $dir/$cert.key; $extra location / { proxy_pass http://app; } }\n";
};
write_file("$ngx/nginx.conf", <<"EOF" . join('', map { $server->(@$_) } (
worker_processes 1; pid $ngx/nginx.pid; error_log $ngx/error.log info; daemon off;
events { worker_connections 256; }
http {
  log_format t '\$server_port \$connection \$connection_requests sni=\$ssl_server_name reused=\$ssl_session_reused '
               '\$ssl_protocol alpn=\$ssl_alpn_protocol te=\$http_transfer_encoding "\$request" \$status '
               'out_te=\$sent_http_transfer_encoding';
  access_log $ngx/access.log t;
  keepalive_requests 100000; client_max_body_size 20m; ssl_protocols TLSv1.2 TLSv1.3;
  proxy_http_version 1.1; proxy_request_buffering off; proxy_buffering off;
  proxy_set_header Connection ""; proxy_set_header Host \$host;
  proxy_set_header X-SNI \$ssl_server_name; proxy_set_header X-Conn \$connection;
  proxy_set_header X-Conn-Requests \$connection_requests;
  proxy_set_header X-Reused \$ssl_session_reused; proxy_set_header X-TLS \$ssl_protocol;
  upstream app { server 127.0.0.1:$app_port; keepalive 8; }
EOF
    ['good', 'srv', ''],
    ['old', 'old', ''],
    ['self', 'self', ''],
    ['tls12', 'srv', 'ssl_protocols TLSv1.2;'],
    ['short', 'srv', 'keepalive_timeout 400ms;'],
)) . "server { listen 127.0.0.1:$port{plain}; location / { proxy_pass http://app; } }\n}\n");
my $npid = fork // die;
if (!$npid) {
    open STDERR, '>', "$ngx/stderr.log";
    exec $nginx, '-p', $ngx, '-c', "$ngx/nginx.conf";
    exit 127;
}
END { kill 'TERM', $npid if $npid }
ok wait_for(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port{short}") }, T(5)), 'nginx is up'
  or diag slurp("$ngx/stderr.log");

# nginx's access log lines for one server block.
sub ngx_lines {
    my ($name) = @_;
    return grep { /^$port{$name} / } split /\n/, slurp("$ngx/access.log");
}
# nginx logs a request once its response is out: wait for N lines of
# server block NAME matching RE.
sub ngx_wait {
    my ($name, $re, $n) = @_;
    my @l;
    wait_for(sub { @l = grep { $_ =~ $re } ngx_lines($name); @l >= $n }, T(5));
    return @l;
}
sub ngx_conns { my %c = map { (split / /)[1] => 1 } ngx_lines(@_); return scalar keys %c }

# A TCP relay to nginx's TLS 1.2 server that logs the types of the TLS
# records portico sends on each connection (TLS 1.2 shows alerts as such).
my $relay = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 8) or die $!;
my $relay_port = $relay->sockport;
my $relay_pid = fork // die;
if (!$relay_pid) {
    $SIG{PIPE} = 'IGNORE';
    while (my $c = $relay->accept) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port{tls12}") or next;
        my ($buf, @types) = ('');
        my $sel = IO::Select->new($c, $s);
      RELAY: while (my @r = $sel->can_read(T(20))) {
            for my $h (@r) {
                my $n = sysread($h, my $d, 65536);
                last RELAY unless $n;
                syswrite($h == $c ? $s : $c, $d);
                next unless $h == $c;
                $buf .= $d;
                while (length $buf >= 5) {
                    my ($type, undef, $len) = unpack('C n n', $buf);
                    last if length $buf < 5 + $len;
                    push @types, $type;
                    substr($buf, 0, 5 + $len, '');
                }
            }
        }
        open my $fh, '>>', "$dir/relay.log";
        print $fh "@types\n";
        close $fh;
        close $s;
        close $c;
    }
    POSIX::_exit(0);
}
close $relay;
END { kill 'KILL', $relay_pid if $relay_pid }

# A TCP listener that never answers: the handshake hangs.
my $mute = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 8) or die $!;
my $mute_port = $mute->sockport;

my $conf = <<"EOF";
[listener web]
listen = 127.0.0.1:{port}
max_body_size = 8m

[upstream byname]
server = 127.0.0.1:$port{good}
tls = on
tls_ca = $dir/ca.crt
tls_sni = up.test

[upstream byip]
server = 127.0.0.1:$port{good}
tls = on
tls_ca = $dir/ca.crt

[upstream wrongca]
server = 127.0.0.1:$port{good}
tls = on
tls_ca = $dir/otherca.crt
tls_sni = up.test

[upstream wrongname]
server = 127.0.0.1:$port{good}
tls = on
tls_ca = $dir/ca.crt
tls_sni = wrong.test

[upstream expired]
server = 127.0.0.1:$port{old}
tls = on
tls_ca = $dir/ca.crt
tls_sni = up.test

[upstream noipsan]
server = 127.0.0.1:$port{self}
tls = on
tls_ca = $dir/self.crt

[upstream noverify]
server = 127.0.0.1:$port{self}
tls = on
tls_verify = off
tls_sni = self.test

[upstream resume13]
server = 127.0.0.1:$port{good}
tls = on
tls_ca = $dir/ca.crt
tls_sni = up.test
keepalive = 0

[upstream resume12]
server = 127.0.0.1:$port{tls12}
tls = on
tls_ca = $dir/ca.crt
keepalive = 0

[upstream relay]
server = 127.0.0.1:$relay_port
tls = on
tls_ca = $dir/ca.crt
keepalive = 0

[upstream short]
server = 127.0.0.1:$port{short}
tls = on
tls_ca = $dir/ca.crt
tls_sni = up.test

[upstream health]
server = 127.0.0.1:$port{old} name=bad
server = 127.0.0.1:$port{good} name=good
tls = on
tls_ca = $dir/ca.crt
tls_sni = up.test
retries = 1
max_fails = 1
fail_timeout = 60s

[upstream mute]
server = 127.0.0.1:$mute_port
tls = on
tls_verify = off
connect_timeout = 500ms
retries = 0

[upstream plain]
server = 127.0.0.1:$port{plain}
tls = on
tls_verify = off
retries = 0

EOF
$conf .= join '', map { "[route $_]\npath = /$_/\nupstream = $_\n\n" }
  qw(byname byip wrongca wrongname expired noipsan noverify resume13 resume12 relay short health mute
     plain);
my $p = Portico->start($conf, log_level => 'debug',
                       errors_ok => [qr/TLS certificate verification failed/]);
my $port = $p->port;

# Verification succeeds by name (SNI sent) and by IP (no SNI: RFC 6066).
{
    my $r = http_get($port, '/byname/a?q=1', host => 'front.example');
    is $r->status, 200, 'tls_sni = up.test: 200';
    is $r->body, "hello from app\n", 'the body came through TLS';
    my ($req) = grep { $_->{target} eq '/byname/a?q=1' } $app->requests;
    ok $req, 'the request reached the application';
    is $req && $req->header('x-sni'), 'up.test', 'nginx saw SNI up.test';
    is $req && $req->header('host'), 'front.example', 'Host is the client\'s (host_header = pass)';
    like $req && $req->header('x-tls'), qr/^TLSv1\.[23]$/, 'a TLS 1.2 or 1.3 connection';
    my ($line) = ngx_wait('good', qr{"GET /byname/a}, 1);
    like $line, qr{ alpn=http/1\.1 }, 'ALPN http/1.1 was negotiated';
    like $line, qr{ TLSv1\.3 }, 'TLS 1.3 with a server that offers it';

    $r = http_get($port, '/byip/x');
    is $r->status, 200, 'a server named by its IP: verified against the IP SAN';
    ($req) = grep { $_->{target} eq '/byip/x' } $app->requests;
    ok $req && !defined $req->header('x-sni'), 'no SNI for an IP literal';
    ($line) = ngx_wait('good', qr{"GET /byip/x}, 1);
    like $line, qr/ sni=- reused/, 'nginx: no server name';
}

# Verification failures: 502 and one [error] line naming the server and
# mbedTLS's reason.
sub refused_ok {
    my ($route, $reason, $what) = @_;
    my $before = scalar grep { /\[error\]/ } $p->error_lines;
    my $r = http_get($port, "/$route/x");
    is $r->status, 502, "$what: 502";
    my @err = grep { /\[error\]/ } $p->error_lines;
    my @new = @err[$before .. $#err];
    is scalar(@new), 1, "$what: one [error] line";
    like $new[0] // '', qr/upstream $route server 127\.0\.0\.1:\d+: TLS certificate verification failed .*$reason/,
      "$what: the line names the server and why";
}
refused_ok('wrongca', qr/not correctly signed by the trusted CA/, 'unknown CA');
refused_ok('wrongname', qr/name "wrong\.test".*Common Name \(CN\) does not match/, 'name mismatch');
refused_ok('expired', qr/validity has expired/, 'expired certificate');
refused_ok('noipsan', qr/address "127\.0\.0\.1:\d+".*does not match/, 'IP not in the certificate');
ok !grep({ $_->{target} =~ m{^/(wrongca|wrongname|expired|noipsan)/} } $app->requests),
  'nothing of a refused request reached the application';

# tls_verify = off: a self-signed certificate is accepted; SNI still sent.
{
    my $r = http_get($port, '/noverify/x');
    is $r->status, 200, 'tls_verify = off: a self-signed certificate works';
    my ($req) = grep { $_->{target} eq '/noverify/x' } $app->requests;
    is $req && $req->header('x-sni'), 'self.test', 'tls_sni sent with tls_verify = off';
}

# Keep-alive pool: 20 requests (keep-alive and new client connections)
# share one upstream TLS connection: one handshake on nginx's side.
{
    my $c = Portico::Client->new($port);
    my $ok = 0;
    for my $i (1 .. 10) {
        my $r = $c->request('GET', "/byname/pool$i");
        $ok++ if $r->status == 200;
    }
    for my $i (11 .. 20) {
        my $r = http_get($port, "/byname/pool$i");
        $ok++ if $r->status == 200;
    }
    is $ok, 20, '20 requests answered';
    my @l = ngx_wait('good', qr{"GET /byname/pool}, 20);
    my %conn = map { (split / /)[1] => 1 } @l;
    is scalar(@l), 20, 'nginx served 20';
    is scalar(keys %conn), 1, 'all on one upstream TLS connection';
    my ($max) = sort { $b <=> $a } map { (split / /)[2] } @l;
    cmp_ok $max, '>=', 20, "the connection carried them in turn ($max requests on it)";
}

# Bodies both ways over upstream TLS: 1 MiB with Content-Length, chunked
# uploads and a chunked download.
{
    my $mib = 1024 * 1024;
    my $data = Upstream::pattern($mib);
    my $r = http_request($port, 'POST', '/byname/up-cl', body => $data, timeout => T(20));
    is $r->status, 200, '1 MiB upload with Content-Length';
    my ($req) = grep { $_->{target} eq '/byname/up-cl' } $app->requests;
    is $req && $req->{body_md5}, md5_hex($data), '1 MiB upload intact at the application';

    my $c = Portico::Client->new($port);
    my $chunks = join('', map { sprintf("%x\r\n%s\r\n", 65536, substr($data, $_ * 65536, 65536)) } 0 .. 15);
    $c->send("POST /byname/up-chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    sleep 0.1;    # the head goes first: the body cannot be framed by length
    $c->send($chunks . "0\r\n\r\n");
    $r = $c->read_response(timeout => T(20));
    is $r->status, 200, '1 MiB chunked upload';
    ($req) = grep { $_->{target} eq '/byname/up-chunked' } $app->requests;
    is $req && $req->{body_md5}, md5_hex($data), 'chunked upload intact at the application';
    my ($line) = ngx_wait('good', qr{"POST /byname/up-chunked}, 1);
    like $line, qr/ te=chunked /, 'it went to nginx chunked, over TLS';

    $r = http_get($port, '/byname/down', headers => ["X-Up-Size: $mib"], timeout => T(20));
    is $r->status, 200, '1 MiB download';
    is md5_hex($r->body), Upstream::pattern_md5($mib), '1 MiB download intact';
    $r = http_get($port, '/byname/down-chunked', headers => ["X-Up-Size: $mib", 'X-Up-Chunked: 1',
                                                            'X-Up-Chunk: 10000'], timeout => T(20));
    is $r->status, 200, 'chunked 1 MiB download';
    is $r->framing, 'chunked', 'relayed chunked to the client';
    is md5_hex($r->body), Upstream::pattern_md5($mib), 'chunked download intact';
    ($line) = ngx_wait('good', qr{"GET /byname/down-chunked}, 1);
    like $line, qr/ out_te=chunked$/, 'nginx sent it chunked, over TLS';
}

# Session resumption: with no pool (keepalive = 0) every request is a new
# TLS connection; all but the first resume the saved session.
for my $case (['resume13', 'good', 'TLSv1.3'], ['resume12', 'tls12', 'TLSv1.2']) {
    my ($route, $srv, $proto) = @$case;
    my $ok = 0;
    for my $i (1 .. 4) {
        $ok++ if http_get($port, "/$route/r$i")->status == 200;
    }
    is $ok, 4, "$proto: 4 requests without a pool";
    my @l = ngx_wait($srv, qr{"GET /$route/}, 4);
    is scalar(@l), 4, "$proto: 4 connections at nginx";
    is scalar(grep { / reused=r / } @l), 3, "$proto: 3 of them resumed the session" or diag join "\n", @l;
    is scalar(grep { / $proto / } @l), 4, "$proto negotiated";
}

# portico closes a connection it does not keep with close_notify: the last
# record it sends is an alert (21), after the request (23).
{
    is http_get($port, '/relay/x')->status, 200, 'through the relay';
    my @conns;
    wait_for(sub { @conns = split /\n/, slurp("$dir/relay.log"); @conns >= 1 }, T(5));
    like $conns[0] // '', qr/^22 .* 23 21$/, 'records: handshake ... request, close_notify' or diag $conns[0];
}

# The server closes pooled connections (nginx keepalive_timeout 400ms): the
# next request still succeeds, on a new connection.
{
    my $c = Portico::Client->new($port);
    is $c->request('GET', '/short/1')->status, 200, 'first request to a short keepalive server';
    sleep 1;    # nginx closes the idle connection (close_notify, FIN)
    is $c->request('GET', '/short/2')->status, 200, 'after the server closed the pooled connection';
    # The race: the request is taken while the close is unseen. The worker is
    # stopped while the client's request arrives and then nginx closes, so
    # it picks the pooled connection first and meets the close on it.
    my ($worker) = $p->workers;
    kill 'STOP', $worker;
    $c->send("GET /short/3 HTTP/1.1\r\nHost: h\r\n\r\n");
    sleep 0.9;
    kill 'CONT', $worker;
    my $r = $c->read_response(timeout => T(10));
    is $r->status, 200, 'a request on a pooled connection the server had closed: retried, 200';
    ngx_wait('short', qr{"GET /short/}, 3);
    is ngx_conns('short'), 3, 'three connections at nginx';
    ok wait_for(sub { grep { /stale pooled connection/ } $p->error_lines }, T(2)),
      'the stale-connection retry did it';
}

# Passive health: a server whose certificate is refused counts a failure;
# with max_fails = 1 it is left alone until fail_timeout.
{
    my $ok = 0;
    for my $i (1 .. 8) {
        $ok++ if http_get($port, "/health/h$i")->status == 200;
    }
    is $ok, 8, 'every request answered (the failed attempt retried on the good server)';
    my @e = grep { /\[error\].*upstream health server bad: TLS certificate verification failed/ } $p->error_lines;
    is scalar(@e), 1, 'the bad server was tried once, then marked down';
}

# connect_timeout covers the handshake: a server that accepts and never
# answers gives 504.
{
    my $t0 = time;
    my $r = http_get($port, '/mute/x', timeout => T(10));
    is $r->status, 504, 'a silent TLS server: 504';
    cmp_ok time - $t0, '<', T(5), 'within connect_timeout';
    ok grep({ /upstream mute .*connect_timeout during the TLS handshake/ } $p->error_lines),
      'logged as a handshake timeout';
}

# A plaintext HTTP server (nginx without ssl) behind tls = on: the handshake
# fails, 502.
{
    my $r = http_get($port, '/plain/x', timeout => T(10));
    is $r->status, 502, 'a plaintext server with tls = on: 502';
    ok grep({ /\[warn\].*upstream plain .*TLS handshake failed/ } $p->error_lines),
      'a [warn] line says the handshake failed';
}

# -t and reload: a bad tls_ca is a FILE:LINE error; the reload is refused.
{
    my $conf = slurp($p->config_file);
    (my $bad = $conf) =~ s{tls_ca = \Q$dir\E/otherca\.crt}{tls_ca = $dir/otherca.key};
    my $file = write_file("$dir/bad.ini", $bad);
    my ($line) = grep { (split /\n/, $bad)[$_ - 1] =~ /otherca\.key/ } 1 .. scalar(split /\n/, $bad);
    my $res = portico_t('-t', '-c', $file);
    is $res->{exit}, 1, '-t: a key file as tls_ca is refused';
    like $res->{err}, qr{^\Q$file\E:$line: tls_ca "\Q$dir\E/otherca\.key": no usable CA certificate}m,
      '-t: FILE:LINE: message' or diag $res->{err};
    (my $nosys = $conf) =~ s{tls_ca = \Q$dir\E/otherca\.crt}{tls_ca = $dir/missing.crt};
    write_file($p->config_file, $nosys);
    $p->signal('HUP');
    ok wait_for(sub { grep { /cannot read ".*missing\.crt"/ } $p->error_lines }, T(10)),
      'reload with an unreadable tls_ca: the error is logged';
    is http_get($port, '/byname/after')->status, 200, 'the old configuration keeps serving';
    $p->expect_errors(qr/missing\.crt|reload|configuration/);
    # A warning does not stop a reload, and is logged as one.
    write_file($p->config_file, $conf . "[upstream forgot]\nserver = 127.0.0.1:1\ntls_sni = x.test\n");
    my $done = sub { scalar grep { /reload done/ } $p->error_lines };
    my $before = $done->();
    $p->signal('HUP');
    ok wait_for(sub { $done->() > $before }, T(10)), 'reload with a warning: done';
    ok grep({ /\[warn\].*tls_sni has no effect without tls = on/ } $p->error_lines),
      'the warning is a [warn] line';
    ok !grep({ /\[error\].*tls_sni has no effect/ } $p->error_lines), 'not an [error] line';
    is http_get($port, '/byname/after2')->status, 200, 'serving after the reload';
}

$p->finish;
done_testing;
