# Signals at odd times, under continuous load (keep-alive clients and a new
# connection per request, plus wrk when it is installed): a storm of HUPs,
# a HUP while the previous reload's workers still start (with a different
# worker count each time), a storm of USR1 (also while workers start), USR2
# twice (and to the new master while the old one lives), HUP to the old
# master during an upgrade (and HUP, then WINCH, while the reload's workers
# start), QUIT right after a HUP, TERM to the new master of an upgrade, and
# a master that stalls for 2.5 s inside a reload. Each asserts no failed and
# no non-2xx request, the masters that must live do, the worker count the
# configuration says, every pid file where README says it is, no process
# left after the end, and no unexpected [error] line.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use Portico;
use Upstream;
use Load;

my $t_start = time;
my $up = Upstream->new(name => 'app');
my ($wrk) = grep { -x } map { "$_/wrk" } split /:/, $ENV{PATH};

# VER is the body of /ver: it shows which configuration a worker runs.
sub conf {
    my (%o) = @_;
    my $w = $o{workers} // 2;
    my $v = $o{ver} // 'v0';
    return <<"EOF";
[main]
workers = $w
shutdown_timeout = 2s
access_log = {dir}/access.log

[listener web]
listen = 127.0.0.1:{port}

[upstream app]
server = {up:app}

[route ver]
path = = /ver
return = 200 $v

[route all]
upstream = app
EOF
}

sub gone { my $pid = shift; !-e "/proc/$pid" || slurp("/proc/$pid/stat") =~ /^\d+ \(.*?\) Z/ }
sub kids { grep { !gone($_) } proc_children($_[0]) }
sub read_pid { my $t = slurp($_[0]) // ''; return $t =~ /^(\d+)/ ? $1 : 0 }

# Every live process running with P's configuration file: its masters (an
# upgraded one is no child of ours once the old one exits) and workers.
sub procs_of {
    my ($p) = @_;
    my $cf = $p->config_file;
    return grep { !gone($_) && slurp("/proc/$_/cmdline") =~ /\Q$cf\E/ }
      map { m{^/proc/(\d+)/} ? $1 : () } glob '/proc/[0-9]*/cmdline';
}

my %is_master;
sub workers_of { grep { !$is_master{$_} } kids($_[0]) }

# The configuration is replaced by a rename: a master reading it in the
# middle of a write must never see half a file.
sub set_conf {
    my ($p, %o) = @_;
    my $f = $p->config_file;
    write_file("$f.tmp", $p->_inject_main($p->expand(conf(%o))));
    rename "$f.tmp", $f or die "rename: $!";
}

sub log_count { my ($p, $re) = @_; scalar grep { /$re/ } $p->error_lines }

# The body of /ver, N times on new connections: the versions seen.
sub versions {
    my ($port, $n) = @_;
    my %v;
    $v{ http_get($port, '/ver', headers => ['Connection: close'], timeout => T(5))->body // '?' }++
      for 1 .. ($n // 6);
    return join ' ', sort keys %v;
}

# Wait until MASTER runs exactly N workers and every one answers /ver with VER.
sub settle {
    my ($p, $master, $n, $ver, %o) = @_;
    my $ok = wait_for(sub { workers_of($master) == $n && versions($p->port) eq $ver }, T(10));
    return $ok if $o{quiet};
    ok $ok, "settled: master $master runs $n workers, all answering $ver"
      or diag sprintf "workers of %d: %s; /ver: %s", $master, join(' ', workers_of($master)),
      versions($p->port);
    return $ok;
}

sub load_start {
    my ($port, %o) = @_;
    my @l = (Load->start($port, clients => 2, mode => 'keepalive', %o),
             Load->start($port, clients => 2, mode => 'close', %o));
    if ($o{wrk} && $wrk) {
        my $out = test_dir() . '/wrk' . time . '.out';
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            open STDOUT, '>', $out;
            open STDERR, '>&', \*STDOUT;
            exec $wrk, '-t1', '-c4', '-d60s', "http://127.0.0.1:$port/wrk" or POSIX::_exit(127);
        }
        push @l, { wrk => $pid, out => $out };
    }
    return \@l;
}

# Stop the load; zero failed and zero non-2xx unless MAX_FAILED allows some
# (TERM is a fast stop: see g). Returns the failures' error lines.
sub load_check {
    my ($name, $loads, $max_failed) = @_;
    my ($ok, $failed, $non2xx, @err) = (0, 0, 0);
    my $wrk_out;
    for my $l (@$loads) {
        if (ref $l eq 'HASH') {
            kill 'INT', $l->{wrk};
            waitpid $l->{wrk}, 0;
            $wrk_out = slurp($l->{out});
            next;
        }
        my $r = $l->stop;
        $ok += $r->{ok};
        $failed += $r->{failed};
        $non2xx += $r->{non2xx};
        push @err, @{ $r->{errors} };
    }
    cmp_ok $failed, '<=', $max_failed // 0, "$name: failed requests ($failed, $ok answered)"
      or diag join "\n", @err;
    is $non2xx, 0, "$name: no non-2xx response" or diag join "\n", @err;
    cmp_ok $ok, '>', 20, "$name: the load ran";
    if (defined $wrk_out) {
        my ($n) = $wrk_out =~ /(\d+) requests in/;
        ok $n && $wrk_out !~ /Socket errors|Non-2xx/, "$name: wrk, " . ($n // 0) . ' requests, no error'
          or diag $wrk_out;
    }
    diag sprintf "%s: %d answered, %d failed, %d non-2xx%s", $name, $ok, $failed, $non2xx,
      defined $wrk_out ? sprintf(', wrk %s', ($wrk_out =~ /(\d+) requests in/)[0] // '?') : '';
    return @err;
}

# USR2 to MASTER: returns the new master's pid once all its workers are ready.
sub upgrade {
    my ($p, $master, $n) = @_;
    kill 'USR2', $master;
    my $pidf = $p->pid_file;
    my $new;
    wait_for(sub { $new = read_pid($pidf); $new && $new != $master }, T(5)) or return 0;
    $is_master{$new} = 1;
    wait_for(sub { log_count($p, qr/ $new#m all $n workers ready/) }, T(5)) or return 0;
    return $new;
}

# The end of an instance: every process of it gone, the logs clean.
sub all_gone {
    my ($p, $name, %o) = @_;
    my @left;
    ok wait_for(sub { @left = procs_of($p); !@left }, T(5)), "$name: no process left"
      or diag "left: @left";
    kill 'KILL', @left if @left;
    $p->check_logs unless $o{logs_checked};
}

# a) 10 HUPs without a pause, each after a new configuration: the last one
# is in force, every reload either ran or was folded into the next.
# c) 20 USR1 after logrotate renamed the logs, then 20 more during a reload.
# b) HUP while the new workers of the previous reload start, workers 2 -> 3
# -> 1 and so on.
# h) a master stalled for 2.5 s inside a reload does not kill its workers.
{
    my $p = Portico->start(conf(), upstreams => { app => $up });
    my $m = $p->pid;
    $is_master{$m} = 1;
    my $port = $p->port;

    my $load = load_start($port, wrk => 1);
    sleep 0.3;
    for my $i (1 .. 10) {
        set_conf($p, ver => "v$i");
        kill 'HUP', $m;
    }
    settle($p, $m, 2, 'v10');
    ok wait_for(sub { log_count($p, qr/#m reloading /) == log_count($p, qr/#m reload done/) }, T(5)),
      'a: no reload left in progress';
    my $runs = log_count($p, qr/#m reload done/);
    ok $runs >= 1 && $runs <= 10, "a: 10 HUPs ran $runs reloads (the ones that came during a "
      . 'reload were folded into one more)';
    is log_count($p, qr/reload aborted|reload refused/), 0, 'a: none aborted or refused';
    ok !gone($m), 'a: the master lives';
    load_check('a: 10 HUPs in a row', $load);

    # c: logrotate, then a USR1 storm; the workers must not die of it.
    $load = load_start($port);
    my @before = sort { $a <=> $b } workers_of($m);
    my ($el, $al) = ($p->error_log, $p->dir . '/access.log');
    rename $el, "$el.1" or die;
    rename $al, "$al.1" or die;
    kill 'USR1', $m for 1 .. 20;
    ok wait_for(sub { slurp($el) =~ /logs reopened/ }, T(3)), 'c: the master writes a new error log';
    sleep 0.3;
    is_deeply [sort { $a <=> $b } workers_of($m)], \@before, 'c: 20 USR1: the same workers run';
    is http_get($port, '/after-rotation', timeout => T(5))->status, 200, 'c: serving';
    ok wait_for(sub { slurp($al) =~ m{/after-rotation} }, T(3)), 'c: the new access log is written';
    # USR1 while a reload forks its workers: a worker that does not read
    # its signalfd yet must not take USR1 for a kill. HUP and USR1 pending
    # together (the master stopped) are read in that order, in one turn:
    # USR1 reaches workers forked microseconds before.
    for my $round (1 .. 3) {
        set_conf($p, ver => "v1$round");
        kill 'STOP', $m;
        kill 'HUP', $m;
        kill 'USR1', $m;
        kill 'CONT', $m;
        kill 'USR1', $m for 1 .. 19;
        sleep 0.05;
    }
    settle($p, $m, 2, 'v13');
    is log_count($p, qr/killed by signal|exited with status [1-9]/), 0,
      'c: USR1 during reloads killed no worker'
      or diag join "\n", grep { /killed by signal|exited with status/ } $p->error_lines;
    load_check('c: USR1 storms', $load);

    # b: HUPs 10-50 ms apart (the generation before still drains), each
    # with another worker count; then HUPs while the new workers of the
    # reload before are still starting: the master is frozen (SIGSTOP) as
    # soon as it forked one, so that the second HUP must wait for the first
    # reload (a round where the reload was over already is done again).
    $load = load_start($port);
    my ($v, $n) = (20, 2);
    for my $i (0 .. 5) {
        $n = (3, 1, 2)[ $i % 3 ];
        set_conf($p, workers => $n, ver => 'v' . ++$v);
        kill 'HUP', $m;
        sleep 0.01 + rand(0.04);
    }
    my ($rounds, $tries) = (0, 0);
    for my $pair ([3, 1], [2, 3], [1, 2]) {
        # Each transition gets its own budget: a loaded machine may let the
        # workers get ready before the master is frozen a few times in a row.
        for (my $t = 0; $t < 12 && ++$tries; $t++) {
            my %old = map { $_ => 1 } kids($m);
            my $busy = log_count($p, qr/#m reload already in progress: another one follows it/);
            my $hups = log_count($p, qr/#m signal 1 \(SIGHUP\)/);
            set_conf($p, workers => $pair->[0], ver => 'v' . ++$v);
            kill 'HUP', $m;
            my $until = time + T(2);
            1 until grep({ !$old{$_} } proc_children($m)) || time > $until;
            kill 'STOP', $m;
            $n = $pair->[1];
            set_conf($p, workers => $n, ver => 'v' . ++$v);
            kill 'HUP', $m;
            kill 'CONT', $m;
            wait_for(sub { log_count($p, qr/#m signal 1 \(SIGHUP\)/) >= $hups + 2 }, T(3));
            settle($p, $m, $n, "v$v", quiet => 1);
            if (log_count($p, qr/#m reload already in progress: another one follows it/) > $busy) {
                $rounds++;
                last;
            }
        }
    }
    is $rounds, 3, "b: 3 times a HUP came while the reload before started its workers, and "
      . "waited for it ($tries tries)";
    settle($p, $m, $n, "v$v");
    ok wait_for(sub { log_count($p, qr/#m reloading /) == log_count($p, qr/#m reload done/) }, T(5)),
      'b: no reload left in progress';
    is log_count($p, qr/reload aborted|reload refused/), 0, 'b: none aborted or refused';
    ok !gone($m), 'b: the master lives';
    sleep 0.3;
    load_check('b: HUPs while workers start, workers 3 -> 1 -> 2 -> 3 ...', $load);

    # h: a master slow inside one turn of its loop (here its configuration
    # is a FIFO that gives the text only after 2.5 s; a slow fork or disk
    # does the same) has the workers' heartbeats of that time unread: it must
    # not take them for hung and kill them with their connections.
    $load = load_start($port);
    my $cf = $p->config_file;
    my $text = $p->_inject_main($p->expand(conf(ver => 'v50')));
    POSIX::mkfifo("$cf.fifo", 0600) or die "mkfifo: $!";
    rename "$cf.fifo", $cf or die "rename: $!";
    kill 'HUP', $m;
    sleep 2.5;
    open my $fifo, '>', $cf or die "open fifo: $!";    # the master waits in open()
    print $fifo $text;
    close $fifo;
    set_conf($p, ver => 'v50');
    settle($p, $m, 2, 'v50');
    is log_count($p, qr/no heartbeat/), 0, 'h: a master stalled for 2.5 s killed no worker'
      or diag join "\n", grep { /heartbeat|killed/ } $p->error_lines;
    sleep 0.3;
    load_check('h: a master stalled in a reload for 2.5 s', $load);

    $p->finish;
    all_gone($p, 'a, b, c, h', logs_checked => 1);
}

# d) USR2 twice: one new master; USR2 to the new master while the old one
# lives is refused too. WINCH and QUIT the old one; HUP the new one.
# e) HUP to the old master during the next upgrade: a reload of its own
# workers; then HUP and WINCH at once; HUP (rollback); WINCH while a
# reload's new workers already accept; QUIT the new master: the pid file
# goes back to the old one.
# g) TERM to the new master of an upgrade before WINCH: the old master's
# workers never stopped and serve on; its pid file comes back.
{
    my $p = Portico->start(conf(), upstreams => { app => $up });
    my $m1 = $p->pid;
    $is_master{$m1} = 1;
    my $port = $p->port;
    my $pidf = $p->pid_file;

    my $load = load_start($port, wrk => 1);
    my @w1 = workers_of($m1);
    kill 'USR2', $m1;
    sleep 0.03;
    kill 'USR2', $m1;
    my $m2;
    ok wait_for(sub { $m2 = read_pid($pidf); $m2 && $m2 != $m1 }, T(5)), 'd: a new master wrote the pid file';
    $is_master{$m2} = 1;
    ok wait_for(sub { log_count($p, qr/ $m2#m all 2 workers ready/) }, T(5)), "d: new master $m2 runs its workers";
    my @extra = grep { my $k = $_; !grep { $_ == $k } @w1 } kids($m1);
    is_deeply \@extra, [$m2], 'd: exactly one new master' or diag "children of $m1: @{[ kids($m1) ]}";
    my $refused = log_count($p, qr/ $m1#m binary upgrade refused: new master pid $m2 is still running/);
    my $received = log_count($p, qr/ $m1#m signal 12 \(SIGUSR2\)/);
    ok $received == 2 ? $refused == 1 : $refused == 0,
      "d: the second USR2 was refused ($refused) or merged with the first by the kernel ($received received)";
    is read_pid("$pidf.oldbin"), $m1, 'd: .oldbin names the old master';

    # USR2 to the new master while the old one lives: a third master would
    # take PID_FILE.oldbin from the old one (nginx refuses it too).
    kill 'USR2', $m2;
    ok wait_for(sub { log_count($p, qr/ $m2#m binary upgrade refused: the old master pid $m1 still runs/) }, T(3)),
      'd: USR2 to the new master while the old one runs is refused';
    sleep 0.2;
    is_deeply [grep { $is_master{$_} } kids($m2)], [], 'd: no third master';
    is read_pid($pidf), $m2, 'd: the pid file still names the new master';
    is read_pid("$pidf.oldbin"), $m1, 'd: .oldbin still names the old master';

    kill 'WINCH', $m1;
    ok wait_for(sub { !workers_of($m1) }, T(8)), 'd: WINCH drained the old workers';
    kill 'QUIT', $m1;
    ok wait_for(sub { !$p->alive }, T(8)), 'd: QUIT: the old master exits';
    is(($p->{exit_status} // -1) >> 8, 0, 'd: with status 0');
    ok !-e "$pidf.oldbin", 'd: .oldbin removed';
    is read_pid($pidf), $m2, 'd: the pid file names the new master';
    set_conf($p, ver => 'v30');
    kill 'HUP', $m2;
    settle($p, $m2, 2, 'v30');
    load_check('d: USR2 twice, USR2 to the new master, WINCH, QUIT, HUP', $load);

    # e: HUP to the old master (m2) while m3 runs beside it.
    $load = load_start($port);
    my $m3 = upgrade($p, $m2, 2);
    ok $m3, "e: upgrade to master $m3";
    set_conf($p, ver => 'v31');
    my $done = log_count($p, qr/ $m2#m reload done/);
    kill 'HUP', $m2;
    ok wait_for(sub { log_count($p, qr/ $m2#m reload done/) > $done }, T(5)),
      'e: HUP to the old master before WINCH reloads its own workers';
    ok wait_for(sub { workers_of($m2) == 2 && workers_of($m3) == 2 }, T(8)),
      'e: both masters run 2 workers';
    ok wait_for(sub { versions($port, 10) =~ /^(v30 )?v31$/ }, T(5)),
      "e: the old master's workers answer v31 (the new master's v30)";
    # HUP and WINCH at once (both pending while the master is stopped): the
    # kernel hands them over in signal order, so the reload starts and
    # WINCH drops it before its workers are ready.
    set_conf($p, ver => 'v32');
    kill 'STOP', $m2;
    kill 'HUP', $m2;
    kill 'WINCH', $m2;
    kill 'CONT', $m2;
    ok wait_for(sub { log_count($p, qr/ $m2#m reload dropped: WINCH/) }, T(3)),
      'e: HUP + WINCH: WINCH drops the reload (a notice, no error)';
    ok wait_for(sub { !workers_of($m2) }, T(8)), 'e: HUP + WINCH: the old master has no worker left';
    ok wait_for(sub { workers_of($m3) == 2 }, T(3)), 'e: the new master still runs 2';
    is read_pid($pidf), $m3, 'e: the pid file names the new master';
    is read_pid("$pidf.oldbin"), $m2, 'e: .oldbin the old one';
    kill 'HUP', $m2;
    ok wait_for(sub { workers_of($m2) == 2 }, T(5)), 'e: HUP after WINCH: the old workers are back';
    # WINCH once the new workers of a reload accept, before the master read
    # their READY: the master is frozen right after it forked them, WINCH
    # comes, the workers get 0.2 s of traffic, then the master goes on and
    # reads WINCH in the same turn. They must drain, not be killed.
    # (A round where the master had gone back to epoll_wait reads the READYs
    # first and commits the reload: it is done again, up to 16 times.)
    set_conf($p, ver => 'v31');
    my $kills = log_count($p, qr/ $m2#m worker .*killed by signal/);
    my $dropped = log_count($p, qr/ $m2#m reload dropped: WINCH/);
    my $rounds = 0;
    # On a loaded machine a round often misses the window: up to 16 rounds
    # for two hits, and at least one is required.
    while ($rounds++ < 16 && log_count($p, qr/ $m2#m reload dropped: WINCH/) < $dropped + 2) {
        my %old = map { $_ => 1 } kids($m2);
        kill 'HUP', $m2;
        my $until = time + T(2);
        1 until grep({ !$old{$_} } proc_children($m2)) || time > $until;
        kill 'STOP', $m2;
        kill 'WINCH', $m2;
        sleep 0.2;
        kill 'CONT', $m2;
        wait_for(sub { !workers_of($m2) }, T(8));
        kill 'HUP', $m2;
        wait_for(sub { workers_of($m2) == 2 }, T(5));
    }
    cmp_ok log_count($p, qr/ $m2#m reload dropped: WINCH/), '>=', $dropped + 1,
      "e: WINCH dropped a reload whose workers were accepting ($rounds rounds)";
    is log_count($p, qr/ $m2#m worker .*killed by signal/), $kills,
      'e: their workers drained, none was killed';
    is scalar(workers_of($m2)), 2, 'e: rolled back again: the old master runs 2 workers';
    # Roll back for good: QUIT the new master.
    kill 'QUIT', $m3;
    ok wait_for(sub { gone($m3) }, T(8)), 'e: QUIT: the new master exits';
    ok wait_for(sub { read_pid($pidf) == $m2 && !-e "$pidf.oldbin" }, T(5)),
      'e: the pid file names the old master again, no .oldbin';
    # The rollback starts workers on the configuration in force: the one of
    # the last reload that completed (v31), not the file.
    settle($p, $m2, 2, 'v31');
    load_check('e: HUP to the old master during an upgrade, HUP + WINCH, rollbacks', $load);

    # g: TERM to the new master before WINCH.
    $load = load_start($port);
    my $m4 = upgrade($p, $m2, 2);
    ok $m4, "g: upgrade to master $m4";
    sleep 0.3;
    my @w4 = workers_of($m4);
    my @w2 = sort { $a <=> $b } workers_of($m2);
    my $restarts = log_count($p, qr/ $m2#m binary upgrade: .*starting our workers again/);
    my $t_term = time;
    kill 'TERM', $m4;
    ok wait_for(sub { gone($m4) }, T(5)), 'g: TERM: the new master exits';
    ok wait_for(sub { !grep { !gone($_) } @w4 }, T(3)), 'g: and its workers';
    my $t_gone = time;
    ok wait_for(sub { read_pid($pidf) == $m2 && !-e "$pidf.oldbin" }, T(5)),
      'g: the old master takes its pid file back, no .oldbin';
    is log_count($p, qr/ $m2#m binary upgrade: .*starting our workers again/), $restarts,
      'g: the old master did not restart workers it never stopped';
    is_deeply [sort { $a <=> $b } workers_of($m2)], \@w2, 'g: the old master runs the same 2 workers';
    is http_get($port, '/after-term', timeout => T(5))->status, 200, 'g: serving';
    # A fast stop terminates the new master's workers: a request in flight
    # or the next one on a kept-alive connection of theirs fails, at most one
    # per client (each has one connection); none after they are gone.
    my @err = load_check('g: TERM to the new master before WINCH', $load, 4);
    diag "g: $_" for @err;
    my @late = grep { /^client \d+: (\d+\.\d+)/ && $1 > $t_gone + 0.2 } @err;
    is_deeply \@late, [], 'g: no failure once the new master is gone';

    # QUIT to the new master before WINCH, instead: nothing is lost.
    $load = load_start($port);
    my $m5 = upgrade($p, $m2, 2);
    ok $m5, "g: upgrade to master $m5";
    sleep 0.3;
    kill 'QUIT', $m5;
    ok wait_for(sub { gone($m5) }, T(5)), 'g: QUIT: the new master exits';
    ok wait_for(sub { read_pid($pidf) == $m2 && !-e "$pidf.oldbin" }, T(5)),
      'g: the old master takes its pid file back';
    is scalar(workers_of($m2)), 2, 'g: and runs its 2 workers';
    load_check('g: QUIT to the new master before WINCH', $load);

    kill 'TERM', $m2;
    ok wait_for(sub { gone($m2) }, T(5)), 'TERM stops the remaining master';
    ok !-e $pidf, 'its pid file is removed';
    all_gone($p, 'd, e, g');
}

# f) QUIT right after HUP, with a request in flight: the reload is dropped,
# every worker drains, the master exits within shutdown_timeout.
{
    my $p = Portico->start(conf(), upstreams => { app => $up });
    my $m = $p->pid;
    my $port = $p->port;
    my $load = load_start($port, until_refused => 1);
    my $slow = Portico::Client->new($port);
    $slow->send(Portico::build_request('GET', '/slow', headers => ['X-Up-Delay: 1']));
    sleep 0.2;
    set_conf($p, workers => 3, ver => 'v40');
    my $t0 = time;
    kill 'STOP', $m;    # both pending: HUP is read first, then QUIT
    kill 'HUP', $m;
    kill 'QUIT', $m;
    kill 'CONT', $m;
    my $s = $slow->read_final(timeout => T(5));
    is $s->status, 200, 'f: the request in flight finishes';
    $slow->close;
    ok wait_for(sub { !$p->alive }, T(5)), 'f: the master exits';
    my $dt = time - $t0;
    cmp_ok $dt, '<', 2 + T(1.5), sprintf 'f: within shutdown_timeout (2 s) and a second: %.1f s', $dt;
    is(($p->{exit_status} // -1) >> 8, 0, 'f: with status 0');
    is log_count($p, qr/#m reload dropped: shutting down/), 1, 'f: the reload was dropped (a notice)';
    ok !-e $p->pid_file, 'f: the pid file is removed';
    ok !Portico::Client->new($port), 'f: nothing listens afterwards';
    load_check('f: HUP then QUIT', $load);
    all_gone($p, 'f');
}

diag sprintf 'signal storms: %.1f s', time - $t_start;
done_testing;
