# Real clients through portico: curl (keep-alive reuse, 10 MiB up and down,
# chunked upload) and a short wrk run without errors. Skipped when the tool
# is not installed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::MD5 qw(md5_hex);
use Portico;
use Upstream;

sub have { my ($t) = @_; return grep { -x "$_/$t" } split /:/, $ENV{PATH} }

my $up = Upstream->new(name => 'app');
my $p = Portico->start(<<'EOF', upstreams => { app => $up });
[listener web]
listen = 127.0.0.1:{port}
max_body_size = 20m

[upstream app]
server = {up:app}

[route local]
path = /local/
return = 200 ok

[route all]
upstream = app
EOF
my $port = $p->port;
my $dir = $p->dir;
my $ten = 10 * 1024 * 1024;

SKIP: {
    skip 'curl not installed', 8 unless have('curl');
    my $base = "http://127.0.0.1:$port";

    # Two URLs in one curl run share a connection.
    my $out = `curl -sv -o /dev/null -o /dev/null $base/a $base/b 2>&1`;
    like $out, qr/Re-using existing connection|Reusing existing/i, 'curl reuses the keep-alive connection';
    is scalar(() = $out =~ m{^< HTTP/1\.1 200}mg), 2, 'curl: two 200 responses';

    # 10 MiB download.
    system("curl -sf -o $dir/down.bin -H 'X-Up-Size: $ten' $base/download");
    is $? >> 8, 0, 'curl: 10 MiB download';
    is md5_hex(slurp("$dir/down.bin")), Upstream::pattern_md5($ten), 'curl: 10 MiB download intact';

    # 10 MiB upload, Content-Length and chunked.
    write_file("$dir/up.bin", Upstream::pattern($ten));
    system("curl -sf -o /dev/null --data-binary \@$dir/up.bin $base/upload");
    is $? >> 8, 0, 'curl: 10 MiB upload';
    my @r = $up->requests;
    is $r[-1]{body_md5}, Upstream::pattern_md5($ten), 'curl: 10 MiB upload intact';
    system("curl -sf -o /dev/null -H 'Transfer-Encoding: chunked' --data-binary \@$dir/up.bin $base/upload-chunked");
    is $? >> 8, 0, 'curl: 10 MiB chunked upload';
    @r = $up->requests;
    is $r[-1]{body_md5}, Upstream::pattern_md5($ten), 'curl: 10 MiB chunked upload intact';
}

SKIP: {
    skip 'wrk not installed', 4 unless have('wrk');
    for my $path ('/local/x', '/proxied') {
        my $out = `wrk -t1 -c8 -d1s http://127.0.0.1:$port$path 2>&1`;
        my ($n) = $out =~ /(\d+) requests in/;
        ok $n && $n > 100, "wrk $path: $n requests" or diag $out;
        unlike $out, qr/Socket errors|Non-2xx/, "wrk $path: no errors" or diag $out;
    }
}

$p->finish;
done_testing;
