// Package selftest tells a domain owner, before publishing DMARC p=reject, whether what
// sealgate sends for them passes at a strict receiver, and what to change when it does not.
// Each finding has its reason and fix (the zone-file line to publish, or the change to make).
//
// Two readiness tests, both judging with package verify (the receiver's checks):
//
//   - Message has a message sent through the relay (MessageOptions.Send: the caller's
//     pipeline, spool and outbound client) to a small receiving SMTP server on 127.0.0.1
//     offering SUBMITTER (RFC 4405), and verifies what it received as seen from each egress
//     address and HELO name: does DMARC pass by RFC 9989 and RFC 7489, and would p=reject lose
//     the mail. With MessageOptions.Forwarder it also reports the forwarder's view: the
//     author's domain in X-Original-From, why From was rewritten or kept, and the ARC chain
//     (RFC 8617 §7.2) a receiver may accept instead.
//   - Domain checks a domain's DKIM keys (RFC 6376, RFC 8301 key sizes), SPF for every egress
//     (RFC 7208, its syntax and lookup limits), DMARC record (both RFCs, rua and the report
//     opt-in of RFC 7489 §7.1), MX of the return path (RFC 7505 null MX), HELO names, reverse
//     DNS and DNSBLs (RFC 5782).
//
// A check that could not be made because its DNS timed out is "unknown", neither pass nor
// fail: when it is SPF's (verify.SPFResult.TimedOut), the verdict is "could not check SPF
// (DNS timed out)" instead of ready or not ready, since a receiver would defer the mail.
//
// selftest does not change DNS or the configuration; it prints what to publish. Its receiving
// server accepts every recipient and keeps what it took in memory for the one test; it is
// not a mail server. Verifying one message as a receiver is package verify's job.
package selftest
