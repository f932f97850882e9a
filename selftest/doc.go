// Package selftest is the receiving side of mail authentication: it evaluates a message the
// way a strict receiving MTA would, stage by stage of the SMTP session, so that a domain owner
// can see before publishing DMARC p=reject whether what sealgate sends for them passes, and
// why not when it does not.
//
// Given the connecting IP, the HELO name, the MAIL FROM reverse-path (with its SUBMITTER
// parameter, RFC 4405) and the message, Verify runs:
//
//   - at connect: DNSBL queries of the IP (RFC 5782; answers in 127.255.255.0/24 are the
//     list's errors, not listings) and iprev, forward-confirmed reverse DNS (RFC 8601 §3);
//   - at HELO: whether the name resolves to the IP, or the address literal equals it
//     (RFC 5321 §4.1.4, which forbids refusing mail for this alone);
//   - at MAIL FROM and RCPT: SPF (RFC 7208) of the MAIL FROM domain and of the HELO name, with
//     the lookup and void lookup limits of RFC 7208 §4.6.4 counted; callback verification of
//     the return path (MAIL FROM:<>, RCPT, QUIT, never DATA; off unless asked for); and with
//     SUBMITTER an early DMARC look at the purported responsible address's domain;
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
// CheckSPF, CheckIPRev, CheckDNSBL, CheckHELO, DomainExists and ParseDMARCRecord are the
// single checks, for callers that test a domain's records rather than a message.
//
// Two readiness tests build on them, each finding with its reason and fix (the zone-file
// line to publish, or the change to make): Message has a message sent through the relay
// (MessageOptions.Send: the caller's pipeline, spool and outbound client) to a small
// receiving SMTP server on 127.0.0.1 offering SUBMITTER, and verifies what it received as
// seen from each egress address and HELO name; Domain checks a domain's DKIM keys, SPF for
// every egress, DMARC record (both RFCs, rua and the report opt-in of RFC 7489 §7.1), MX,
// HELO names, reverse DNS and DNSBLs.
//
// Verify does not deliver, store or change the message, send DMARC reports, run content filters,
// validate DNSSEC or trust anyone's Authentication-Results fields; ARC results are reported,
// not used to override DMARC (that is a receiver's local policy). Callback verification makes
// real SMTP connections only when Options.Callback is set.
package selftest
