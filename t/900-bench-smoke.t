# t/bench/run must keep working: one short round of every scenario against
# nginx, HAProxy and portico, checked for a complete table and no failed
# request. The figures themselves are not asserted (too noisy here).
# Skipped when wrk, nginx, haproxy, openssl or taskset is missing.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;

sub have { my ($t) = @_; return grep { -x "$_/$t" } split /:/, "$ENV{PATH}:/usr/sbin:/sbin" }
for my $tool (qw(wrk nginx haproxy openssl taskset)) {
    plan skip_all => "$tool not installed" unless have($tool);
}
$ENV{PATH} .= ':/usr/sbin:/sbin';

my $bin = Portico::portico_bin();
my $run = Portico::repo_root() . '/t/bench/run';
my $out = `$run --rounds 1 --secs 1 --warmup 0 --idle 100 --port 0 --portico $bin 2>&1`;
is $? >> 8, 0, 't/bench/run exits 0' or diag $out;

my @scen = ('small-keepalive', 'small-close', 'big-64k', 'tls-keepalive');
for my $sc (@scen) {
    for my $px (qw(nginx haproxy portico)) {
        my ($rps) = $out =~ /^\Q$sc\E\s+$px\s+round 1:\s+([\d.]+) req\/s/m;
        # Only that requests went through: under a parallel suite a 1 s
        # round of 64 KiB responses has measured as low as 33 req/s.
        ok $rps && $rps >= 5, "$sc $px: " . ($rps // 'no') . ' req/s';
    }
}
for my $px (qw(nginx haproxy portico)) {
    like $out, qr/^idle\s+$px\s+round 1:\s+-?\d+ B RSS/m, "idle $px: memory measured";
}
like $out, qr/^\| small keep-alive GET \| CPU per request \|( [\d.]+ µs \|){3} [\d.]+x \| [\d.]+x \|$/m,
    'markdown table with ratios';
like $out, qr/^\| idle keep-alive connection \| RSS per connection \|/m, 'idle row in the table';
unlike $out, qr/^errors: .*portico/m, 'no failed request through portico' or diag $out;
unlike $out, qr/non-2xx|socket errors|got no answer/, 'no errors in any run' or diag $out;

# --workers 2: portico is stopped with QUIT and its workers' exit lines give
# the requests each answered, per round and summed in the summary.
$out = `$run --rounds 1 --secs 1 --warmup 0 --workers 2 --scenario small-keepalive --proxies portico --port 0 --portico $bin 2>&1`;
is $? >> 8, 0, 't/bench/run --workers 2 exits 0' or diag $out;
my $pw = qr/per-worker requests: \d+\.\d% \/ \d+\.\d% \((\d+) \/ (\d+)\)/m;
like $out, qr/^\s+portico $pw/m, 'per-round line of per-worker requests' or diag $out;
my ($w0, $w1) = $out =~ /^\s+portico $pw/m;
ok $w0 && $w1, "both workers answered requests (" . ($w0 // "?") . " / " . ($w1 // "?") . ")";
like $out, qr/^small-keepalive\s+portico\s+$pw/m, 'and in the summary';
like $out, qr/^small-keepalive\s+portico\s+CPU split \d+\/\d+/m, 'next to the CPU split';
unlike $out, qr/still running after QUIT/, 'portico stopped gracefully on QUIT';

done_testing;
