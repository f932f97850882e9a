// Package verify is the receiving side of mail authentication: it evaluates a message the
// way a strict receiving MTA would, stage by stage of the SMTP session, and explains each
// result. sealgate uses it to record the checks of client-network and client-certificate mail
// in its ARC-Authentication-Results (package submit), to decide whether a forwarder must
// rewrite From (the author domain's DMARC policy), for `sealgate verify`, and under the
// readiness tests of package selftest.
//
// Given the connecting IP, the HELO name, the MAIL FROM reverse-path (with its SUBMITTER
// parameter, RFC 4405) and the message, Verify runs:
//
//   - at connect: DNSBL queries of the IP (RFC 5782; answers in 127.255.255.0/24 are the
//     list's errors, not listings) and iprev, forward-confirmed reverse DNS (RFC 8601 §3);
//   - at HELO: whether the name resolves to the IP, or the address literal equals it
//     (RFC 5321 §4.1.4, which forbids refusing mail for this alone);
//   - at MAIL FROM and RCPT: SPF (RFC 7208) of the MAIL FROM domain and of the HELO name, with
//     the initial processing of RFC 7208 §4.3 (a malformed domain or an address literal gives
//     none, a reverse-path without local part is postmaster), the lookup and void lookup
//     limits of RFC 7208 §4.6.4 counted, and a DNS timeout reported as temperror with
//     SPFResult.TimedOut; the OpenSPF RFC 7208 test suite runs in our tests (202 of 203, the
//     deviation named in rfc7208_test.go); callback verification of
//     the return path (MAIL FROM:<>, RCPT, QUIT, never DATA; off unless asked for); and with
//     SUBMITTER an early DMARC look at the purported responsible address's domain (RFC 4407);
//   - at DATA: every DKIM signature (RFC 6376, through package sign), the ARC chain
//     (RFC 8617, through package arc), whether the From domain exists, and DMARC computed both
//     ways: RFC 9989 (DNS tree walk for the policy and the organisational domain, psd=, np=,
//     t=, no pct) and RFC 7489 (Public Suffix List, pct), with strict and relaxed alignment of
//     the DKIM d= and SPF domains and the disposition each would apply. Receivers run both in
//     2026, so a disagreement between them is reported.
//
// The Report holds typed results, one Authentication-Results field (RFC 8601), one explained
// line per check and the verdict a receiver following the staged flow would give. Every DNS
// lookup goes through internal/resolver, so a zone file can stand in for the network.
// CheckSPF, CheckSPFSyntax, CheckIPRev, CheckDNSBL, CheckHELO, DomainExists, ParseDMARCRecord,
// DMARCPolicy and AuthorDMARC are the single checks, for callers that test a domain's records
// or one identity rather than a whole message.
//
// SPF is evaluated by blitiri.com.ar/go/spf through an adapter (spfresolver.go) that also
// covers what the library does not: record syntax checked whole, ':' and '/' inside a and mx
// domain-specs, the p macro, target names that cannot be DNS names. Names with white space
// are not asked (internal/resolver refuses them).
//
// Verify does not deliver, store or change the message, send DMARC reports, run content filters,
// validate DNSSEC or trust anyone's Authentication-Results fields; ARC results are reported,
// not used to override DMARC (that is a receiver's local policy). Callback verification makes
// real SMTP connections only when Options.Callback is set. Testing a domain or a message
// before publishing p=reject (with findings and fixes) is package selftest's job, not this one's.
package verify
