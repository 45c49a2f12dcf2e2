# Command line: -V, -h, -t (ok and errors as FILE:LINE: message), -T, -s stop.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;

my $dir = test_dir();
my $bin = portico_bin();
plan skip_all => "no binary at $bin" unless -x $bin;

# -V
{
    my $r = portico_t('-V');
    is $r->{exit}, 0, '-V exits 0';
    like $r->{all}, qr/portico\D*\d+\.\d+/i, '-V: portico version';
    like $r->{all}, qr/llhttp\D*\d+\.\d+\.\d+/i, '-V: llhttp version';
    like $r->{all}, qr/mbed\s*TLS\D*\d+\.\d+\.\d+/i, '-V: mbedTLS version';
    like $r->{all}, qr/inih\D*\d+/i, '-V: inih version';
    if ($r->{all} =~ /llhttp\D*(\d+)\.(\d+)\.(\d+)/i) {
        ok $1 > 9 || ($1 == 9 && ($2 > 2 || ($2 == 2 && $3 >= 1))), 'llhttp >= 9.2.1';
    }
    if ($r->{all} =~ /mbed\s*TLS\D*(\d+)\.(\d+)/i) {
        is "$1.$2", '3.6', 'mbedTLS 3.6';
    }
}

# -h
{
    my $r = portico_t('-h');
    is $r->{exit}, 0, '-h exits 0';
    like $r->{all}, qr/-c\b/, '-h shows usage';
}

# -t on the shipped configuration
{
    my $r = portico_t('-t', '-c', repo_root() . '/etc/portico.ini');
    is $r->{exit}, 0, '-t etc/portico.ini exits 0' or diag $r->{all};
    like $r->{all}, qr/configuration ok/, '-t says "configuration ok"';
}

# -t on every shipped example and a rich configuration; -T of each is a
# valid configuration too, and dumping that again gives the same text.
my $rich = <<'EOF';
[main]
workers = 3
log_level = warn
access_log = stdout
access_log_format = json
[listener a]
listen = 127.0.0.1:1
listen = [::1]:2
max_body_size = 1m
idle_timeout = 250ms
[listener b]
listen = *:3
[upstream u]
balance = least_conn
server = 127.0.0.1:4 weight=3 max_conns=10 name=first
server = 127.0.0.1:5 backup
server = 127.0.0.1:6 down
host_header = backend.internal
retries = 0
[upstream v]
balance = ip_hash
server = 127.0.0.1:7
host_header = server
[route r1]
listener = a
host = api.example.com
host = *.example.org
path = = /exact
methods = GET HEAD
upstream = u
strip_prefix = /x
add_prefix = /y
request_header = X-A: 1
request_header = -X-B
response_header = X-C: 2
max_body_size = 2k
access_log = off
expose_upstream = on
[route r2]
redirect = 301 https://$host$request_uri
path = /old/
[route r3]
return = 200 hello world
[route r4]
path = /v/
upstream = v
EOF
for my $f (glob(repo_root() . '/etc/examples/*.ini'), write_file("$dir/rich.ini", $rich)) {
    my $r = portico_t('-t', '-c', $f);
    is $r->{exit}, 0, "-t $f exits 0" or diag $r->{all};
    my $d = portico_t('-T', '-c', $f);
    is $d->{exit}, 0, "-T $f exits 0";
    (my $name = $f) =~ s{.*/}{};
    my $ini = join "\n", grep { !/configuration ok/ } split /\n/, $d->{out};
    my $f2 = write_file("$dir/dumped-$name", "$ini\n");
    my $r2 = portico_t('-t', '-c', $f2);
    is $r2->{exit}, 0, "-T output of $name passes -t" or diag $r2->{all};
    my $d2 = portico_t('-T', '-c', $f2);
    my $strip = sub { join "\n", grep { !/^\s*[#;]/ } split /\n/, shift };
    is $strip->($d2->{out}), $strip->($d->{out}), "-T of the -T output of $name is the same";
}

# A minimal valid configuration.
my $port = free_port();
my $up = free_port();
my $good = <<"EOF";
[listener web]
listen = 127.0.0.1:$port

[upstream app]
server = 127.0.0.1:$up

[route all]
upstream = app
EOF

{
    my $f = write_file("$dir/good.ini", $good);
    my $r = portico_t('-t', '-c', $f);
    is $r->{exit}, 0, '-t on a minimal config' or diag $r->{all};
    like $r->{all}, qr/configuration ok/, 'configuration ok';
}

# Broken configurations: [name, text, line, message pattern].
my @broken = (
    ['unknown key', <<"EOF", 3, qr/listn|unknown key/i],
[listener web]
listen = 127.0.0.1:$port
listn = 127.0.0.1:1
[route r]
return = 204
EOF
    ['unknown section', <<"EOF", 5, qr/section|frobnicate/i],
[listener web]
listen = 127.0.0.1:$port
[route r]
return = 204
[frobnicate x]
a = b
EOF
    ['bad duration', <<"EOF", 3, qr/header_timeout|duration|value/i],
[listener web]
listen = 127.0.0.1:$port
header_timeout = ten seconds
[route r]
return = 204
EOF
    ['bad size', <<"EOF", 3, qr/max_body_size|size|value/i],
[listener web]
listen = 127.0.0.1:$port
max_body_size = 12q
[route r]
return = 204
EOF
    ['bad boolean', <<"EOF", 2, qr/reuseport|bool|value/i],
[main]
reuseport = perhaps
[listener web]
listen = 127.0.0.1:$port
[route r]
return = 204
EOF
    ['bad workers', <<"EOF", 2, qr/workers|value/i],
[main]
workers = lots
[listener web]
listen = 127.0.0.1:$port
[route r]
return = 204
EOF
    ['bad balance', <<"EOF", 4, qr/balance|value/i],
[listener web]
listen = 127.0.0.1:$port
[upstream app]
balance = fastest
server = 127.0.0.1:$up
[route r]
upstream = app
EOF
    ['bad listen address', <<"EOF", 2, qr/listen|address|port/i],
[listener web]
listen = 127.0.0.1:99999
[route r]
return = 204
EOF
    ['missing action', <<"EOF", [3, 4], qr/action|upstream|return|redirect/i],
[listener web]
listen = 127.0.0.1:$port
[route r]
path = /x
EOF
    ['unknown upstream', <<"EOF", 4, qr/nope|upstream/i],
[listener web]
listen = 127.0.0.1:$port
[route r]
upstream = nope
EOF
    ['unknown listener in route', <<"EOF", 4, qr/nolistener|listener/i],
[listener web]
listen = 127.0.0.1:$port
[route r]
listener = nolistener
return = 204
EOF
    ['bad return code', <<"EOF", 4, qr/return|code|status/i],
[listener web]
listen = 127.0.0.1:$port
[route r]
return = 99x
EOF
    ['bad server weight', <<"EOF", 4, qr/weight|server/i],
[listener web]
listen = 127.0.0.1:$port
[upstream app]
server = 127.0.0.1:$up weight=abc
[route r]
upstream = app
EOF
    ['key outside a section', <<"EOF", 1, qr/section|workers/i],
workers = 1
[listener web]
listen = 127.0.0.1:$port
[route r]
return = 204
EOF
);

for my $b (@broken) {
    my ($name, $text, $line, $re) = @$b;
    (my $fn = $name) =~ s/\W+/_/g;
    my $f = write_file("$dir/bad_$fn.ini", $text);
    my $r = portico_t('-t', '-c', $f);
    is $r->{exit}, 1, "-t $name: exit 1" or diag $r->{all};
    my @lines = ref $line ? @$line : ($line);
    my $alt = join '|', @lines;
    like $r->{all}, qr/^\Q$f\E:(?:$alt): \S/m, "-t $name: FILE:LINE: message" or diag $r->{all};
    like $r->{all}, $re, "-t $name: message names the problem";
    unlike $r->{all}, qr/configuration ok/, "-t $name: not ok";
}

# Two errors: one line each.
{
    my $f = write_file("$dir/two.ini", <<"EOF");
[listener web]
listen = 127.0.0.1:$port
bogus_one = 1
[route r]
return = 204
bogus_two = 2
EOF
    my $r = portico_t('-t', '-c', $f);
    is $r->{exit}, 1, 'two errors: exit 1';
    like $r->{all}, qr/^\Q$f\E:3: .*bogus_one/m, 'first error reported';
    like $r->{all}, qr/^\Q$f\E:6: .*bogus_two/m, 'second error reported';
}

# Missing file.
{
    my $r = portico_t('-t', '-c', "$dir/does-not-exist.ini");
    is $r->{exit}, 1, 'missing file: exit 1';
    like $r->{all}, qr/does-not-exist\.ini/, 'missing file: named';
}

# -T: effective configuration with defaults.
{
    my $f = write_file("$dir/dump.ini", $good);
    my $r = portico_t('-T', '-c', $f);
    is $r->{exit}, 0, '-T exits 0' or diag $r->{all};
    my %conf;
    my $sec = '';
    for my $l (split /\n/, $r->{out}) {
        if ($l =~ /^\s*\[\s*(\w+)(?:\s+(\S+))?\s*\]/) { $sec = $1; next }
        next unless $l =~ /^\s*(\w+)\s*=\s*(.*?)\s*$/;
        push @{ $conf{$sec}{$1} }, $2;
    }
    my %dur = (ms => 1, s => 1000, m => 60000, h => 3600000);
    my $ms = sub { my $v = shift // return -1; $v =~ /^(\d+)(ms|s|m|h)?$/ or return -2; $1 * $dur{$2 // 's'} };
    my %sz = ('' => 1, k => 1024, m => 1 << 20, g => 1 << 30);
    my $bytes = sub { my $v = shift // return -1; $v =~ /^(\d+)([kmg]?)$/i or return -2; $1 * $sz{lc $2} };
    my $first = sub { my ($s, $k) = @_; $conf{$s}{$k} ? $conf{$s}{$k}[0] : undef };

    is $first->('main', 'log_level'), 'info', '-T main.log_level';
    is $first->('main', 'access_log_format'), 'combined', '-T main.access_log_format';
    is $ms->($first->('main', 'shutdown_timeout')), 30000, '-T main.shutdown_timeout 30s';
    is $first->('main', 'max_connections'), 16384, '-T main.max_connections';
    like $first->('main', 'reuseport') // '', qr/^(on|yes|true|1)$/, '-T main.reuseport on';
    like $first->('main', 'workers') // '', qr/^(auto|\d+)$/, '-T main.workers';
    is $first->('listener', 'listen'), "127.0.0.1:$port", '-T listener.listen';
    is $first->('listener', 'backlog'), 4096, '-T listener.backlog';
    is $ms->($first->('listener', 'header_timeout')), 10000, '-T header_timeout 10s';
    is $ms->($first->('listener', 'body_timeout')), 30000, '-T body_timeout 30s';
    is $ms->($first->('listener', 'idle_timeout')), 60000, '-T idle_timeout 60s';
    is $ms->($first->('listener', 'send_timeout')), 30000, '-T send_timeout 30s';
    is $bytes->($first->('listener', 'max_header_size')), 16384, '-T max_header_size 16k';
    is $first->('listener', 'max_headers'), 100, '-T max_headers';
    is $bytes->($first->('listener', 'max_body_size')), 8 << 20, '-T max_body_size 8m';
    is $first->('listener', 'max_requests'), 10000, '-T max_requests';
    like $first->('upstream', 'server') // '', qr/^127\.0\.0\.1:$up\b/, '-T upstream.server';
    is $first->('upstream', 'balance'), 'round_robin', '-T balance';
    is $first->('upstream', 'keepalive'), 32, '-T keepalive';
    is $ms->($first->('upstream', 'keepalive_timeout')), 60000, '-T keepalive_timeout';
    is $ms->($first->('upstream', 'connect_timeout')), 3000, '-T connect_timeout';
    is $ms->($first->('upstream', 'read_timeout')), 60000, '-T read_timeout';
    is $ms->($first->('upstream', 'send_timeout')), 60000, '-T upstream send_timeout';
    is $first->('upstream', 'retries'), 1, '-T retries';
    is $first->('upstream', 'max_fails'), 1, '-T max_fails';
    is $ms->($first->('upstream', 'fail_timeout')), 10000, '-T fail_timeout';
    is $first->('upstream', 'host_header'), 'pass', '-T host_header';
    is $first->('route', 'path'), '/', '-T route.path';
    is $first->('route', 'upstream'), 'app', '-T route.upstream';

    # The dump is itself a valid configuration.
    my $ini = join "\n", grep { !/configuration ok/ } split /\n/, $r->{out};
    my $f2 = write_file("$dir/dumped.ini", "$ini\n");
    my $r2 = portico_t('-t', '-c', $f2);
    is $r2->{exit}, 0, '-T output passes -t' or diag $r2->{all};
}

# -s stop with pid_file.
{
    my $p = Portico->start(<<'EOF');
[listener web]
listen = 127.0.0.1:{port}
[route r]
return = 200 up
EOF
    my $res = http_get($p->port, '/');
    is $res->status, 200, 'serving before -s stop';
    ok -s $p->pid_file, 'pid file written';
    is((slurp($p->pid_file) =~ /^(\d+)/)[0], $p->pid, 'pid file holds the master pid');
    my $r = portico_t('-s', 'stop', '-c', $p->config_file);
    is $r->{exit}, 0, '-s stop exits 0' or diag $r->{all};
    my $gone = wait_for(sub { !$p->alive }, T(10));
    ok $gone, 'master exited after -s stop';
    my $c = Portico::Client->new($p->port);
    ok !$c, 'nothing listens after -s stop';
    $p->finish;

    # -s with no running master
    my $r2 = portico_t('-s', 'stop', '-c', $p->config_file);
    isnt $r2->{exit}, 0, '-s stop with no master running fails';
    my $r3 = portico_t('-s', 'bogus', '-c', $p->config_file);
    isnt $r3->{exit}, 0, '-s with an unknown signal word fails';
}

# No sanitizer report from any of the runs above.
my @san = grep { /Sanitizer|runtime error:/ } map { Portico::slurp($_) } glob("$dir/run*.out $dir/run*.err");
ok !@san, 'no sanitizer report from any CLI run' or diag substr(join("\n", @san), 0, 3000);

# Found by fuzz_config: a certificate with unreadable files followed by a
# readable one wrote through a NULL pointer (segfault in -t and on reload).
{
    my $f = write_file(test_dir() . '/cert-after-unreadable.ini',
        "[listener l]\nlisten = 127.0.0.1:8443\n"
      . "certificate = /nonexistent/cert.pem /nonexistent/key.pem\n"
      . "certificate = /dev/null /dev/null\n");
    my $r = portico_t('-t', '-c', $f);
    is $r->{signal}, 0, 'certificate after an unreadable one: no crash';
    is $r->{exit}, 1, 'certificate after an unreadable one: exit 1';
    like $r->{err}, qr/cert-after-unreadable\.ini:3: cannot read "\/nonexistent\/cert\.pem"/, 'FILE:LINE error'
      or diag $r->{all};
}

done_testing;
