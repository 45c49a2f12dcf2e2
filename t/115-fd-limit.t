# The master raises RLIMIT_NOFILE to what a worker needs (2 * max_connections
# + keepalive * servers + listening sockets + 64) before forking, and again
# on reload; when the hard limit is below that it raises the soft limit to
# the hard one, logs one [warn] naming the numbers, and still serves. A
# limit already higher is left alone. Needs util-linux's prlimit (and
# setpriv when run as root, to test the non-root path).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;
use Upstream;

sub which { my ($n) = @_; my ($p) = grep { -x } map { "$_/$n" } split /:/, $ENV{PATH}; $p }

my $prlimit = which('prlimit') or plan skip_all => 'prlimit (util-linux) is not installed';

# (soft, hard) "Max open files" of PID; "unlimited" as a huge number.
sub nofile {
    my ($pid) = @_;
    for (split /\n/, slurp("/proc/$pid/limits")) {
        next unless /^Max open files\s+(\S+)\s+(\S+)/;
        return map { $_ eq 'unlimited' ? 2**62 : $_ } $1, $2;
    }
    return (0, 0);
}

sub has_sys_resource {
    my ($eff) = slurp('/proc/self/status') =~ /^CapEff:\s*([0-9a-f]+)/m;
    return $eff && (hex(substr($eff, -8)) >> 24) & 1;    # CAP_SYS_RESOURCE = 24
}

# Without CAP_SYS_RESOURCE nothing can raise a hard limit, prlimit included:
# the tests use the hard limit we were given, up to 65536.
my (undef, $our_hard) = nofile($$);
my $H = $our_hard < 65536 ? $our_hard : 65536;
$H = 65536 if has_sys_resource();
plan skip_all => "the hard descriptor limit ($our_hard) is too low to test with" if $H < 3000;

sub fd_warnings { grep { /\[warn\].*file descriptors per worker/ } $_[0]->error_lines }

my $up = Upstream->new(name => 'app');

my $tmpl = <<'EOF';
[main]
max_connections = MAXCONN

[listener web]
listen = 127.0.0.1:{port}

[upstream app]
server = {up:app}
keepalive = 32

[route ok]
path = /ok
return = 200 ok

[route all]
upstream = app
EOF
sub conf { (my $c = $tmpl) =~ s/MAXCONN/$_[0]/; $c }

# Soft 1024, hard room enough: raised to the need, at start and on reload.
{
    my $max = $H >= 22000 ? 10000 : int(($H - 1200) / 2);
    my $p = Portico->start(conf($max), upstreams => { app => $up },
        wrap => [$prlimit, "--nofile=1024:$H", '--']);
    my ($w) = $p->workers;
    my ($soft, $hard) = nofile($w);
    cmp_ok $soft, '>=', 2 * $max, "max_connections $max: the worker's soft limit is $soft";
    is $hard, $H, 'the hard limit is unchanged';
    is((nofile($p->pid))[0], $soft, 'the master has the same limit');
    ok scalar(grep { /\[info\].* file descriptor limit raised from 1024 to $soft$/ } $p->error_lines),
      'the raise is logged at info' or diag join "\n", $p->error_lines;
    is scalar(fd_warnings($p)), 0, 'no warning';
    is http_get($p->port, '/proxied')->status, 200, 'proxies';

    my $more = $max + 400;
    write_file($p->config_file, $p->_inject_main($p->expand(conf($more))));
    $p->signal('HUP');
    ok wait_for(sub { grep { /reload done/ } $p->error_lines }, T(10)), 'reload done';
    my $nw = wait_for(sub { my @n = grep { $_ != $w } $p->workers; @n ? \@n : 0 }, T(5)) || [];
    my ($soft2) = nofile($nw->[0] // 0);
    cmp_ok $soft2, '>=', 2 * $more, "after a reload to max_connections $more: $soft2";
    is http_get($p->port, '/after-reload')->status, 200, 'serves after the reload';
    $p->finish;
}

# The hard limit below the need: the soft limit goes up to the hard, one
# [warn] names the numbers and the fix, and portico serves all the same.
# As root the master would first raise the hard limit: setpriv takes
# CAP_SYS_RESOURCE away so that the same path is tested.
SKIP: {
    my @wrap = ($prlimit, '--nofile=256:512', '--');
    if ($> == 0) {
        my $setpriv = which('setpriv') or skip 'running as root without setpriv', 7;
        push @wrap, $setpriv, '--bounding-set=-sys_resource', '--inh-caps=-sys_resource', '--';
    }
    my $p = Portico->start(conf(1000), upstreams => { app => $up }, wrap => \@wrap);
    my ($w) = $p->workers;
    my ($soft, $hard) = nofile($w);
    is $soft, 512, 'the soft limit was raised to the hard limit';
    is $hard, 512, 'the hard limit is unchanged';
    my @warn = fd_warnings($p);
    is scalar(@warn), 1, 'one warning' or diag join "\n", $p->error_lines;
    like $warn[0] // '',
      qr/max_connections 1000 needs about \d+ file descriptors per worker, but the hard limit \(RLIMIT_NOFILE\) is 512: raise it \(ulimit -Hn, systemd LimitNOFILE=\) or lower max_connections/,
      'it names max_connections, the need, the hard limit and the fix';
    my $r = http_get($p->port, '/ok');
    is $r->status, 200, 'still serves';
    is $r->body, 'ok', 'the return body';
    $p->finish;
}

# As root with CAP_SYS_RESOURCE the hard limit is raised as well.
SKIP: {
    skip 'needs root with CAP_SYS_RESOURCE', 3 unless $> == 0 && has_sys_resource();
    my $p = Portico->start(conf(1000), upstreams => { app => $up },
        wrap => [$prlimit, '--nofile=256:512', '--']);
    my ($soft, $hard) = nofile(($p->workers)[0]);
    cmp_ok $soft, '>=', 2000, "root: the soft limit is $soft";
    is $hard, $soft, 'and the hard limit went up with it';
    is scalar(fd_warnings($p)), 0, 'no warning';
    $p->finish;
}

# A limit already above the need stays as it is.
{
    my $h = $H < 60000 ? $H : 60000;
    my $p = Portico->start(conf(100), upstreams => { app => $up },
        wrap => [$prlimit, "--nofile=$h:$h", '--']);
    my ($soft, $hard) = nofile(($p->workers)[0]);
    is $soft, $h, "a soft limit of $h is left alone (max_connections 100)";
    is $hard, $h, 'and the hard one';
    ok !grep({ /file descriptor limit raised/ } $p->error_lines), 'nothing logged about it';
    $p->finish;
}

# -t checks the configuration only: no limit is touched, nothing is said.
{
    my $file = write_file(test_dir() . '/check.ini', <<"EOF");
[main]
max_connections = 1000
error_log = stderr

[listener web]
listen = 127.0.0.1:${\ free_port()}

[route ok]
return = 200 ok
EOF
    my $bin = portico_bin();
    my $out = qx{$prlimit --nofile=256:512 -- $bin -t -c $file 2>&1};
    is $?, 0, '-t under a low limit exits 0';
    is $out, "configuration ok\n", 'and says nothing about descriptors';
}

done_testing;
