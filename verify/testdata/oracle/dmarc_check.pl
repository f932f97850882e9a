#!/usr/bin/perl
# RFC 7489 DMARC verdicts by Mail::DMARC (Debian libmail-dmarc-perl), the oracle of
# verify's oracle_test.go. Usage: dmarc_check.pl HOST PORT < cases
# Each input line is JSON: {"from":"corp.example","dkim":[{"domain":"d","selector":"s",
# "result":"pass"}],"spf":{"domain":"d","scope":"mfrom","result":"pass"}}; each output line
# is "RESULT DISPOSITION".
use strict;
use warnings;
use JSON::PP;
use Net::DNS;
use Mail::DMARC::PurePerl;

my ($host, $port) = @ARGV;
my $resolver = Net::DNS::Resolver->new(nameservers => [$host], port => $port, recurse => 1, dnsrch => 0, defnames => 0);
$resolver->udp_timeout(5);
$resolver->tcp_timeout(5);
$| = 1;
while (my $line = <STDIN>) {
    my $c = decode_json($line);
    my $dmarc = Mail::DMARC::PurePerl->new;
    $dmarc->set_resolver($resolver);
    $dmarc->config->{report_store}{auto_save} = 0;
    $dmarc->source_ip('192.0.2.25');
    $dmarc->envelope_to('example.com');
    $dmarc->header_from($c->{from});
    $dmarc->dkim($c->{dkim});
    $dmarc->spf(%{$c->{spf}}) if $c->{spf};
    my $r = $dmarc->validate();
    printf "%s %s\n", $r->result, $r->disposition;
}
