# Logs: access log in combined and json formats, access_log = off per
# route, and the error log line format.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);
use Portico;
use Upstream;

my $up = Upstream->new(name => 'app', body => "0123456789\n");

my $conf = <<'EOF';
[main]
access_log = {dir}/access.log
access_log_format = FORMAT
log_level = debug

[listener web]
listen = 127.0.0.1:{port}

[upstream app]
server = {up:app}

[route quiet]
path = /quiet/
upstream = app
access_log = off

[route local]
path = /local/
return = 200 local

[route all]
upstream = app
EOF

# Lines of the access log once it has at least N lines (logs are buffered:
# wait a little, then stop portico, which must flush them).
sub access_lines {
    my ($p, $n) = @_;
    my @l;
    wait_for(sub { @l = grep { length } split /\n/, slurp($p->access_log); @l >= $n }, T(3));
    return @l if @l >= $n;
    $p->stop;
    return grep { length } split /\n/, slurp($p->access_log);
}

my $ts_re = qr/^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z \[(debug|info|notice|warn|error)\] (\d+)#(\S+) (.*)$/;

sub check_error_log {
    my ($p, $name) = @_;
    my @lines = grep { length } $p->error_lines;
    ok @lines > 0, "$name: the error log has lines (log_level = debug)";
    my @bad = grep { $_ !~ $ts_re } @lines;
    ok !@bad, "$name: every error log line has the SPEC format" or diag join "\n", @bad[0 .. ($#bad > 5 ? 5 : $#bad)];
    my $now = strftime('%Y-%m-%dT%H:%M', gmtime);
    my ($first) = grep { /$ts_re/ } @lines;
    if ($first && $first =~ /^(\d{4}-\d\d-\d\dT\d\d:\d\d)/) {
        my $t = $1;
        my $then = strftime('%Y-%m-%dT%H:%M', gmtime(time - 600));
        ok $t ge $then && $t le $now, "$name: timestamps are UTC now ($t)";
    }
    my %pids = map { /$ts_re/ ? ($9 => 1) : () } @lines;
    ok exists $pids{ $p->pid }, "$name: the master's pid appears in the error log";
}

# combined
{
    (my $c = $conf) =~ s/FORMAT/combined/;
    my $p = Portico->start($c, upstreams => { app => $up });
    my $port = $p->port;
    my $r = http_get($port, '/path/x?q=1&r=2', host => 'www.example.test', headers => [
        'User-Agent: t-agent/1.0 (test)', 'Referer: http://ref.example/page',
    ]);
    is $r->status, 200;
    my $id = $r->header('x-request-id');
    http_get($port, '/quiet/x');
    my $r3 = http_get($port, '/local/y', headers => ['X-Request-ID: local-id-1']);
    http_get($port, '/local/ten', version => '1.0');
    http_get($port, '/local/quote', headers => ['User-Agent: evil" "agent', 'Referer: x"y']);
    my @lines = access_lines($p, 4);
    is scalar(@lines), 4, 'four access log lines (the quiet route logs nothing)' or diag join "\n", @lines;
    my ($ql) = grep { m{/local/quote} } @lines;
    is(($ql // '') =~ tr/"//, 6, 'quotes inside logged fields are escaped (6 quote characters in the line)')
      or diag $ql;
    my $addr = $up->addr;
    like $lines[0],
      qr{^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /path/x\?q=1&r=2 HTTP/1\.1" 200 11 "http://ref\.example/page" "t-agent/1\.0 \(test\)" upstream=\Q$addr\E upstream_time=\d+(\.\d+)? request_time=\d+(\.\d+)? id=\Q$id\E$},
      'combined line' or diag $lines[0];
    unlike join("\n", @lines), qr{/quiet/}, 'access_log = off route not logged';
    like $lines[1], qr{"GET /local/y HTTP/1\.1" 200 \d+ "-" "-" upstream=\S+ upstream_time=\S+ request_time=\d+(\.\d+)? id=local-id-1$},
      'combined line for a return route' or diag $lines[1];
    like $lines[2], qr{"GET /local/ten HTTP/1\.0" 200 \d+ }, 'combined line for HTTP/1.0' or diag $lines[2];
    # Requests portico refuses are logged too: a bad head as "-".
    my $bad = Portico::Client->new($port);
    $bad->send("GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n");
    is $bad->read_response->status, 400, 'malformed head refused';
    http_get($port, '/nowhere-at-all');
    @lines = access_lines($p, 6);
    like $lines[4], qr{"-" 400 \d+ "-" "-" upstream=- }, 'a refused malformed request is logged with "-"' or diag $lines[4];
    like $lines[5], qr{"GET /nowhere-at-all HTTP/1\.1" 200 }, "the next request on another connection is logged" or diag $lines[5];
    $p->finish;
    check_error_log($p, 'combined run');
}

# json
{
    $up->reset_log;
    (my $c = $conf) =~ s/FORMAT/json/;
    my $p = Portico->start($c, upstreams => { app => $up });
    my $port = $p->port;
    my $r = http_get($port, '/path/j?q=1', host => 'www.example.test', headers => [
        'User-Agent: t-agent/2.0 "quoted" back\\slash', 'Referer: http://ref.example/j', 'X-Request-ID: json-id-42',
    ]);
    is $r->status, 200;
    http_get($port, '/quiet/x');
    http_request($port, 'POST', '/post', body => 'abc');
    my @lines = access_lines($p, 2);
    is scalar(@lines), 2, 'two json lines' or diag join "\n", @lines;
    my @obj = map { eval { JSON::PP->new->decode($_) } } @lines;
    is scalar(grep { ref $_ eq 'HASH' } @obj), 2, 'each line is one JSON object' or diag join "\n", @lines;
    my $o = $obj[0] || {};
    my $find = sub { my ($re) = @_; my ($k) = grep { /$re/i } sort keys %$o; defined $k ? $o->{$k} : undef };
    is $find->(qr/^status$/), 200, 'json: status';
    is $find->(qr/^(request_)?id$/), 'json-id-42', 'json: request id';
    is $find->(qr/^upstream(_addr)?$/), $up->addr, 'json: upstream address';
    like $find->(qr/^upstream_time$/) // '', qr/^\d+(\.\d+)?$/, 'json: upstream_time';
    like $find->(qr/^request_time$/) // '', qr/^\d+(\.\d+)?$/, 'json: request_time';
    like $find->(qr/^(remote_addr|client|client_ip|remote)$/) // '', qr/^127\.0\.0\.1$/, 'json: client address';
    is $find->(qr/bytes/), 11, 'json: body bytes sent';
    is $find->(qr/agent/) // '', 't-agent/2.0 "quoted" back\\slash', 'json: user agent, quotes and backslash escaped';
    like $find->(qr/refer/) // '', qr{^http://ref\.example/j$}, 'json: referer';
    my $all = join ' ', map { defined $_ ? $_ : '' } values %$o;
    like $all, qr{/path/j\?q=1}, 'json: the request target';
    like $all, qr{GET}, 'json: the method';
    like $find->(qr/^\@?(time|time_local|timestamp|time_iso8601|date)$/) // '', qr/\d{4}/, 'json: a time';
    my $o2 = $obj[1] || {};
    like join(' ', map { $_ // '' } values %$o2), qr/POST/, 'json: second line is the POST';
    $p->finish;
    check_error_log($p, 'json run');
}

done_testing;
