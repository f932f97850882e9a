#!/usr/bin/perl
# Verify DKIM signatures and ARC chains with Mail::DKIM, for sealgate's interop test.
#
# Usage: verify.pl DNS-PORT JOB.json
#
# JOB is a JSON list of message files. Keys are looked up on the test's DNS server at
# 127.0.0.1:DNS-PORT. Prints one JSON object: {"ed25519_supported": 0|1,
# "messages": {"a.eml": {"dkim": [...], "arc": {...}}, ...}}, one "dkim" entry per
# DKIM-Signature in the order Mail::DKIM reports them (header order).
use strict;
use warnings;

use JSON::PP;
use Mail::DKIM::ARC::Verifier;
use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS;

my ( $port, $job ) = @ARGV;
die "usage: verify.pl DNS-PORT JOB.json\n" unless $port && $job;

Mail::DKIM::DNS::resolver(
    Net::DNS::Resolver->new(
        nameservers => ['127.0.0.1'],
        port        => $port,
        recurse     => 1,
        udp_timeout => 5,
        tcp_timeout => 5,
        retry       => 2,
    )
);

# Mail::DKIM gained Ed25519 (RFC 8463) after 1.20230212; say whether this one has it.
my $ed25519 = eval { require Mail::DKIM::Algorithm::ed25519_sha256; 1 } ? 1 : 0;

sub slurp {
    my ($path) = @_;
    open my $fh, '<:raw', $path or die "open $path: $!\n";
    local $/;
    my $text = <$fh>;
    close $fh;
    # An MTA hands Mail::DKIM CRLF text; turn bare LF into CRLF as one would.
    $text =~ s/(?<!\r)\n/\r\n/g;
    return $text;
}

my $list = do {
    open my $fh, '<', $job or die "open $job: $!\n";
    local $/;
    decode_json(<$fh>);
};

my %out;
for my $path (@$list) {
    my $text = slurp($path);
    my %res;

    my $v = Mail::DKIM::Verifier->new();
    $v->PRINT($text);
    $v->CLOSE();
    my @dkim;
    for my $sig ( $v->signatures ) {
        next unless ref($sig) eq 'Mail::DKIM::Signature';    # not DomainKeys
        push @dkim, {
            d      => lc( $sig->domain // '' ),
            s      => $sig->selector // '',
            a      => $sig->algorithm // '',
            result => $sig->result // '',
            detail => $sig->result_detail // '',
        };
    }
    $res{dkim} = \@dkim;

    my $arc = Mail::DKIM::ARC::Verifier->new();
    $arc->PRINT($text);
    $arc->CLOSE();
    $res{arc} = { result => $arc->result // '', detail => $arc->result_detail // '' };

    $out{$path} = \%res;
}

print JSON::PP->new->canonical->utf8->encode( { ed25519_supported => $ed25519, messages => \%out } );
