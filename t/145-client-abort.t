# A client that resets its connection while its request waits on a slow
# upstream: portico gives the upstream connection up at once instead of
# holding it until read_timeout, and keeps serving others.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Portico;
use Upstream;

my $slow = Upstream->new(name => 'slow', never => 1);
my $p = Portico->start(<<'EOF2', upstreams => { slow => $slow }, workers => 1);
[listener web]
listen = 127.0.0.1:{port}

[upstream slow]
server = {up:slow}
read_timeout = 30s

[route local]
path = /local/
return = 200 ok

[route all]
upstream = slow
EOF2
my $port = $p->port;

my $c = Portico::Client->new($port);
$c->send("GET /wait HTTP/1.1\r\nHost: h\r\n\r\n");
ok wait_for(sub { $slow->active == 1 }, T(3)), 'the request reached the upstream';
$c->reset;
my $t0 = time;
ok wait_for(sub { $slow->active == 0 }, T(3)), 'upstream connection closed after the client reset';
ok time - $t0 < T(2), sprintf('within %.0f ms, not read_timeout', (time - $t0) * 1000);
is http_get($port, '/local/x')->status, 200, 'the worker keeps serving';

$p->finish;
done_testing;
