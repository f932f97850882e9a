// Package e2e holds sealgate's end-to-end tests: they build the real binary, run
// `sealgate serve --dev` as a subprocess on loopback ports (internal/sealgatetest,
// shared with the load benchmark), and talk SMTP to it with swaks and with a small
// raw client of their own (so that every byte on the wire is under the test's
// control). What they cover:
//
//   - swaks_test.go: AUTH PLAIN over STARTTLS, AUTH LOGIN over implicit TLS and the
//     smart host by network; the delivered messages verify with dkimpy (both DKIM
//     signatures and the ARC chain) and carry the expected AAR and Received;
//   - policy_test.go: every sender-policy refusal, with its exact reply and proof that
//     nothing was spooled;
//   - openrelay_test.go: the open-relay battery (unauthenticated clients and foreign
//     recipients in every address form: percent hack, source route, quoted local part,
//     bang path, address literal), AUTH before TLS, auth state across
//     STARTTLS/RSET/reconnect, and the failed-AUTH throttle;
//   - smuggling_test.go: the published SMTP smuggling payloads (lenient end-of-data
//     sequences; DATA ends only on CRLF.CRLF, RFC 5321 §4.1.1.4);
//   - smtputf8_test.go: international mail: Python's smtplib submits with SMTPUTF8
//     from an IDN domain (a test-made configuration with its key), dkimpy verifies
//     the DKIM signature (d= as A-labels) and the ARC chain over the UTF-8 header,
//     the next hop gets SMTPUTF8; look-alike domains are refused with 5.7.1; a next
//     hop without SMTPUTF8 yields an RFC 6533 DSN with 5.6.7;
//   - crash_test.go: SIGKILL under load, restart, every 250'd message still
//     spooled byte for byte, and, delivering to the outbox meanwhile, in the outbox
//     exactly once.
//
// External tools: swaks (Debian package swaks) and /usr/bin/python3 with dkimpy
// (python3-dkim). When they are missing the tests that need them skip, or fail when
// the environment has CI=true.
package e2e
