# Generated broken configurations: wrong types, out-of-range numbers, bad
# sizes and durations, empty values, bad and duplicate listen addresses,
# unknown references, missing and duplicate sections, unreadable files,
# unresolvable hosts, garbage lines, unterminated sections. For each,
# `portico -t -c FILE` must exit 1 (never a signal, never hang) and print
# exactly one error line, `FILE:LINE: ...`, naming the faulty line.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;

my $dir = Portico::test_dir();
Portico::write_file("$dir/unreadable.pem", "x\n");
chmod 0, "$dir/unreadable.pem";
Portico::write_file("$dir/garbage.pem", "not a certificate\n");

# A valid configuration as sections of lines. A case adds one line to a
# section (or replaces the whole text); the added line is the one the error
# must name.
my @base = (
    ['[main]',            'workers = 1'],
    ['[listener web]',    'listen = 127.0.0.1:18080'],
    ['[upstream app]',    'server = 127.0.0.1:9'],
    ['[route all]',       'upstream = app'],
);
my %sec = (main => 0, listener => 1, upstream => 2, route => 3);

# Render with LINE appended to section SEC; returns (text, line number).
sub with_line {
    my ($sec, $line) = @_;
    my ($text, $n, $at) = ('', 0, 0);
    for my $i (0 .. $#base) {
        for my $l (@{ $base[$i] }) { $text .= "$l\n"; $n++ }
        if ($i == $sec{$sec}) { $text .= "$line\n"; $at = ++$n }
        $text .= "\n";
        $n++;
    }
    return ($text, $at);
}

my @cases;    # [name, text, line]
sub bad {
    my ($sec, $key, @values) = @_;
    for my $v (@values) {
        my ($text, $at) = with_line($sec, "$key = $v");
        push @cases, ["[$sec] $key = '$v'", $text, $at];
    }
}

my @durations = ('abc', '10x', '-1s', '', '1.5.2s', '99999999h', 's', '10 s x');
my @counts    = ('abc', '-1', '', '1.5', '0x', '99999999999999999999', '1e3');

bad main => 'workers',           'abc', '0', '-2', '', '100000', 'auto2';
bad main => 'max_connections',   @counts, '0';
bad main => 'shutdown_timeout',  @durations;
bad main => 'log_level',         'loud', '', 'INFO2';
bad main => 'access_log_format', 'xml', '';
bad main => 'reuseport',         'maybe', '', '2';
bad main => 'error_log',         "$dir/no/such/dir/error.log";
bad main => 'no_such_key',       '1';
bad main => 'include',           '*.ini';

bad listener => 'listen', 'nope', '127.0.0.1', '127.0.0.1:99999', '127.0.0.1:-1', '[::1:80',
    '999.1.1.1:80', '', ':80x', 'portico-no-such-host.invalid:80', '127.0.0.1:18080';
bad listener => 'backlog',                @counts, '0';
bad listener => $_,                       @durations
    for qw(header_timeout body_timeout idle_timeout send_timeout);
bad listener => 'max_header_size',        'abc', '1', '10g', '', '-5k', '16kk', '16 k';
bad listener => 'max_headers',            '0', 'abc', '100000';
bad listener => 'max_body_size',          '8q', '', '-1';
bad listener => 'max_requests',           '0', 'abc';
bad listener => 'max_connections_per_ip', '70000', '-1', 'abc';
bad listener => 'body_min_rate',          'abc', '-1', '1q';
bad listener => 'redirect_to_https',      '70000', 'abc', '0';
bad listener => 'tls_protocols',          'TLSv1.1', 'SSLv3 TLSv1.2';
bad listener => 'alpn',                   'h3', 'spdy/3';
bad listener => 'tls_session_tickets',    'perhaps';
bad listener => 'certificate', '/nonexistent/cert.pem /nonexistent/key.pem', 'onlyone',
    "$dir/unreadable.pem $dir/unreadable.pem", "$dir/garbage.pem $dir/garbage.pem";
bad listener => 'proxy_protocol',         'v1';

bad upstream => 'server', '', 'nohostport', '127.0.0.1:99999', '127.0.0.1:80 weight=0',
    '127.0.0.1:80 weight=abc', '127.0.0.1:80 max_conns=-1', '127.0.0.1:80 bogus=1',
    'portico-no-such-host.invalid:80';
bad upstream => 'balance',           'fastest', '';
bad upstream => 'keepalive',         '-1', 'abc';
bad upstream => 'retries',           '1000', 'x';
bad upstream => 'max_fails',         'x';
bad upstream => $_,                  @durations
    for qw(keepalive_timeout connect_timeout read_timeout fail_timeout);
bad upstream => 'tls',               'maybe';

bad route => 'listener',  'missing';
bad route => 'host',      '';
bad route => 'no_such_key', 'x';

# Whole texts: a marker '<<<' ends the line the error must name.
my @texts = (
    ['route -> missing upstream', "[listener web]\nlisten = 127.0.0.1:18080\n\n[route all]\nupstream = nope <<<\n"],
    ['route without an action', "[listener web]\nlisten = 127.0.0.1:18080\n\n[route all] <<<\npath = /\n"],
    ['return code out of range', "[listener web]\nlisten = 127.0.0.1:18080\n\n[route all]\nreturn = 999 x <<<\n"],
    ['return code not a number', "[listener web]\nlisten = 127.0.0.1:18080\n\n[route all]\nreturn = abc <<<\n"],
    ['two actions', "[listener web]\nlisten = 127.0.0.1:18080\n[upstream app]\nserver = 127.0.0.1:9\n\n[route all]\nreturn = 200 ok\nupstream = app <<<\n"],
    ['duplicate listener', "[listener web]\nlisten = 127.0.0.1:18080\n[listener web] <<<\nlisten = 127.0.0.1:18081\n[route all]\nreturn = 200 x\n"],
    ['duplicate upstream', "[listener web]\nlisten = 127.0.0.1:18080\n[upstream a]\nserver = 127.0.0.1:9\n[upstream a] <<<\nserver = 127.0.0.1:9\n[route all]\nreturn = 200 x\n"],
    ['duplicate route', "[listener web]\nlisten = 127.0.0.1:18080\n[route r]\nreturn = 200 x\n[route r] <<<\nreturn = 200 y\n"],
    ['duplicate [main]', "[main]\nworkers = 1\n[main] <<<\n[listener web]\nlisten = 127.0.0.1:18080\n[route all]\nreturn = 200 x\n"],
    ['same listen address twice', "[listener a]\nlisten = 127.0.0.1:18080\n[listener b]\nlisten = 127.0.0.1:18080 <<<\n[route all]\nreturn = 200 x\n"],
    ['unknown section', "[listener web]\nlisten = 127.0.0.1:18080\n[frontend x] <<<\n[route all]\nreturn = 200 x\n"],
    ['section without a name', "[listener] <<<\nlisten = 127.0.0.1:18080\n[route all]\nreturn = 200 x\n"],
    ['unterminated section', "[listener web]\nlisten = 127.0.0.1:18080\n[route all <<<\nreturn = 200 x\n"],
    ['garbage line', "[listener web]\nlisten = 127.0.0.1:18080\nthis is not ini <<<\n[route all]\nreturn = 200 x\n"],
    ['key before any section', "workers = 2 <<<\n[listener web]\nlisten = 127.0.0.1:18080\n[route all]\nreturn = 200 x\n"],
    ['listener without listen', "[listener web] <<<\nbacklog = 10\n[route all]\nreturn = 200 x\n"],
    ['upstream without server', "[listener web]\nlisten = 127.0.0.1:18080\n[upstream app] <<<\nbalance = round_robin\n[route all]\nupstream = app\n"],
    ['binary garbage', "[listener web]\nlisten = 127.0.0.1:18080\n\x01\x02\xff\xfe <<<\n[route all]\nreturn = 200 x\n"],
    ['value with a NUL-free control char', "[listener web]\nlisten = 127.0.0.1:18080\nbacklog = 1\x07 <<<\n[route all]\nreturn = 200 x\n"],
    ['very long line', "[listener web]\nlisten = 127.0.0.1:18080\nbacklog = " . ('9' x 5000) . " <<<\n[route all]\nreturn = 200 x\n"],
);
for my $t (@texts) {
    my ($name, $text) = @$t;
    my @lines = split /\n/, $text, -1;
    my ($at) = grep { $lines[$_ - 1] =~ /<<<$/ } 1 .. @lines;
    $text =~ s/ <<<$//mg;
    push @cases, [$name, $text, $at];
}

my $n = 0;
for my $c (@cases) {
    my ($name, $text, $line) = @$c;
    my $file = "$dir/bad" . ++$n . '.ini';
    Portico::write_file($file, $text);
    my $r = Portico::portico_t('-t', '-c', $file);
    my @err = grep { length } split /\n/, $r->{err};
    my $ok = !$r->{signal} && !$r->{timed_out} && $r->{exit} == 1 && @err == 1
        && $err[0] =~ /^\Q$file\E:(\d+): \S/ && $1 == $line;
    ok $ok, "$name: one error naming line $line"
        or diag "exit=$r->{exit} signal=$r->{signal} timed_out=$r->{timed_out}\n$r->{all}---\n$text";
}

# The base itself is fine (the cases above fail for their own line only).
{
    my ($text) = with_line('main', '# nothing');
    Portico::write_file("$dir/good.ini", $text);
    my $r = Portico::portico_t('-t', '-c', "$dir/good.ini");
    is $r->{exit}, 0, 'the base configuration is valid' or diag $r->{all};
}

done_testing;
