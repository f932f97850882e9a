// Package resolver is the DNS resolver every lookup in sealgate goes through: DKIM and ARC key
// records, SPF, DMARC, MX, address and PTR lookups for the self-test and the relay.
//
// It is a stub resolver built on github.com/miekg/dns (RFC 1035) that asks recursive servers
// with the RD bit set, advertises a 1232-octet EDNS0 buffer (RFC 6891) so that a DKIM record
// holding an RSA-2048 key fits in one UDP answer, and retries over TCP when an answer is still
// truncated (RFC 7766). It follows CNAME chains found in the answer (RFC 1034 §3.6.2) and
// tells "no such record" (NXDOMAIN, NODATA; RFC 2308) apart from temporary failures (SERVFAIL,
// REFUSED, timeouts, network errors), because DKIM, SPF and DMARC map them to different results
// (permerror/none versus temperror).
//
// A resolver can instead answer from a zone file alone (Config.ZoneFile, NewZoneResolver), which
// the admin commands and the tests use to check records before they are published.
//
// DNSSEC (RFC 4033-4035) is left to the recursive server: with Config.DNSSEC it is trusted as
// validating (as Postfix's smtp_dns_support_level = dnssec), queries carry the DO and AD bits
// and LookupSecure reports the AD bit of each answer (RFC 6840 §5.7), which DANE (RFC 7672)
// needs; Cache keeps that status with each answer. Without it every answer is insecure.
//
// It does not validate DNSSEC signatures itself, apply resolv.conf search domains (every name is
// absolute) or handle wildcards in zone files.
package resolver
