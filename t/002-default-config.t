# etc/portico.ini as shipped (its port rewritten to a free one) serves a
# welcome page on / and 200 on /healthz.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Portico;

my $shipped = repo_root() . '/etc/portico.ini';
plan skip_all => 'no etc/portico.ini' unless -f $shipped;

my $text = slurp($shipped);
like $text, qr/^\s*listen\s*=\s*\S*:8080\s*$/m, 'shipped config listens on port 8080';
# Use a free port instead of 8080, and the harness's logs and pid file.
$text =~ s/^(\s*listen\s*=\s*\S*):8080\s*$/$1:{port}/mg;
$text =~ s/^(\s*(?:error_log|pid_file|access_log|user)\s*=.*)$/; $1/mg;

my $p = Portico->start($text);
my $port = $p->port;

my $r = http_get($port, '/');
is $r->status, 200, 'GET / is 200' or diag $r->summary;
like $r->body, qr/portico/i, 'welcome page mentions portico';
ok length $r->body > 20, 'welcome page has some content';
like $r->header('content-type') // '', qr{^text/(html|plain)}, 'welcome page has a text content type';

$r = http_get($port, '/healthz');
is $r->status, 200, 'GET /healthz is 200' or diag $r->summary;

$r = http_request($port, 'HEAD', '/');
is $r->status, 200, 'HEAD / is 200';
is $r->body, '', 'HEAD / has no body';

$p->finish;
done_testing;
