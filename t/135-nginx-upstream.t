# A real upstream: Debian's nginx behind portico. Keep-alive, a chunked
# response, 10 MiB down with its digest, a 10 MiB upload (Content-Length and
# chunked), and a short wrk run with zero errors. Skipped without nginx.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::MD5 qw(md5_hex);
use Portico;

my ($nginx) = grep { -x } map { "$_/nginx" } split(/:/, $ENV{PATH}), '/usr/sbin';
plan skip_all => 'nginx is not installed' unless $nginx;

my $dir = test_dir() . '/nginx';
mkdir $dir;
mkdir "$dir/logs";
my $big = join '', map { chr(($_ * 7 + 3) % 256) } 0 .. 65535;
write_file("$dir/big.bin", $big x 160);    # 10 MiB
my $big_md5 = md5_hex($big x 160);
my $up_port = free_port();
write_file("$dir/nginx.conf", <<"EOF");
user root; worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log; daemon off;
events { worker_connections 256; }
http { access_log off; keepalive_requests 100000; client_max_body_size 20m;
  server { listen 127.0.0.1:$up_port; root $dir;
    location = /small { default_type text/plain; return 200 "small\\n"; }
    location = /upload { return 200 "got \$content_length\\n"; }
    location = /chunked { default_type text/plain; gzip on; gzip_min_length 1; gzip_types text/plain;
                          return 200 "chunked\\n"; }
    location = /big.bin { } } }
EOF
my $npid = fork // die;
if (!$npid) {
    open STDERR, '>', "$dir/stderr.log";
    exec $nginx, '-p', $dir, '-c', "$dir/nginx.conf";
    exit 127;
}
END { kill 'TERM', $npid if $npid }
ok wait_for(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$up_port") }, T(5)), 'nginx is up';

my $up = bless { addr => "127.0.0.1:$up_port" }, 'NginxUp';
sub NginxUp::addr { $_[0]{addr} }

my $p = Portico->start(<<'EOF', upstreams => { ngx => $up }, workers => 2);
[listener web]
listen = 127.0.0.1:{port}
max_body_size = 20m

[upstream ngx]
server = {up:ngx}

[route all]
upstream = ngx
EOF
my $port = $p->port;

# Keep-alive: many requests on one client connection.
{
    my $c = Portico::Client->new($port);
    my $ok = 0;
    for (1 .. 20) {
        my $r = $c->request('GET', '/small');
        $ok++ if $r->status == 200 && $r->body eq "small\n";
    }
    is $ok, 20, '20 keep-alive requests through portico to nginx';
}

# nginx answers gzip with chunked framing; portico rebuilds it.
{
    my $r = http_get($port, '/chunked', headers => ['Accept-Encoding: gzip']);
    is $r->status, 200, 'chunked (gzip) response from nginx';
    ok length($r->body) > 0, 'with a body';
}

# 10 MiB download, digest compared.
{
    my $r = http_get($port, '/big.bin', timeout => T(20));
    is $r->status, 200, '10 MiB download';
    is md5_hex($r->body), $big_md5, '10 MiB download intact';
}

# 10 MiB uploads: Content-Length and chunked (nginx reports what it was told).
{
    my $body = 'u' x (10 * 1024 * 1024);
    my $r = http_request($port, 'POST', '/upload', body => $body, timeout => T(20));
    is $r->status, 200, '10 MiB upload with Content-Length';
    is $r->body, "got 10485760\n", 'nginx saw the whole Content-Length';
    my $c = Portico::Client->new($port);
    my $chunks = join('', map { sprintf("%x\r\n%s\r\n", 65536, 'c' x 65536) } 1 .. 160) . "0\r\n\r\n";
    $c->send("POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" . $chunks);
    $r = $c->read_response(timeout => T(20));
    is $r->status, 200, '10 MiB chunked upload accepted by nginx';
}

# wrk: a short keep-alive run without socket errors or non-2xx.
SKIP: {
    my ($wrk) = grep { -x } map { "$_/wrk" } split /:/, $ENV{PATH};
    skip 'wrk is not installed', 2 unless $wrk;
    my $out = `$wrk -t1 -c16 -d2s http://127.0.0.1:$port/small 2>&1`;
    my ($n) = $out =~ /(\d+) requests in/;
    ok $n && $n > 100, "wrk ran ($n requests)" or diag $out;
    unlike $out, qr/Socket errors|Non-2xx/, 'wrk: no socket errors, no non-2xx' or diag $out;
}

$p->finish;
done_testing;
