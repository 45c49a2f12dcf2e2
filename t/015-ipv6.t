# IPv6 listeners ([::1]:PORT, [::]:PORT) and an IPv6 client address in
# X-Forwarded-For. Skipped when the host has no IPv6 loopback.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::IP;
use Portico;
use Upstream;

my $probe = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1, Proto => 'tcp');
plan skip_all => 'no IPv6 loopback' unless $probe;
close $probe;

my $up = Upstream->new(name => 'app');
my $p = Portico->start(<<'EOF2', upstreams => { app => $up });
[listener v6]
listen = [::1]:{port}

[listener any]
listen = [::]:{port:any}

[upstream app]
server = {up:app}

[route all]
upstream = app
EOF2

my $r = http_get($p->port, '/six', addr => '::1');
is $r->status, 200, 'request over IPv6' or diag $r->summary;
my ($q) = $up->requests;
is $q->header('x-forwarded-for'), '::1', 'X-Forwarded-For carries the IPv6 client address';

$r = http_get($p->port('any'), '/any6', addr => '::1');
is $r->status, 200, '[::] listener answers on ::1' or diag $r->summary;
$r = http_get($p->port('any'), '/any4', addr => '127.0.0.1');
ok $r->status == 200 || !$r->status, '[::] listener on IPv4: answered (dual stack) or not listening';

$p->finish;
done_testing;
