// Package smtpclient is sealgate's outbound SMTP client (RFC 5321): one session
// with one server, carrying mail transactions for delivery and recipient probes
// for callback verification.
//
// What it does:
//   - Sends a message's bytes unchanged apart from dot-stuffing (RFC 5321
//     §4.5.2), and refuses, rather than repairs, a message with a bare CR or LF:
//     repair would break its DKIM and ARC signatures.
//   - Reports the server's reply to each recipient separately, and the reply to
//     the message.
//   - With a server that offers PIPELINING (RFC 2920), sends a transaction's
//     RSET, MAIL, RCPTs and DATA in one write, so a message costs two round
//     trips instead of one per command.
//   - Carries many transactions per session (RFC 5321 §4.5.3.2 leaves that to
//     the client), each after the first opened with RSET, which also tells a
//     session the server dropped meanwhile (ErrStaleSession).
//   - Writes every envelope address through one function (ForwardPath,
//     ReversePath) that refuses what is not a valid RFC 5321 Mailbox and writes
//     the canonical form of what is (the local part quoted exactly when it must
//     be), so nothing malformed, and no address other than the one stored,
//     reaches the wire.
//   - Sends the MAIL and RCPT parameters of SIZE (RFC 1870), BODY=8BITMIME (RFC
//     6152), SMTPUTF8 (RFC 6531), DSN (RFC 3461) and SUBMITTER (RFC 4405), each
//     only when the server offers the extension, xtext-encoded (RFC 3461 §4) where
//     those RFCs say so (an ORCPT of type utf-8 as RFC 6533 §3 utf-8-addr-xtext);
//     a transaction that needs SMTPUTF8 fails on a server without it
//     (ErrNoSMTPUTF8: no downgrade).
//   - REQUIRETLS (RFC 8689): a transaction that asks for it goes only over
//     verified TLS to a server offering it.
//   - STARTTLS (RFC 3207) and implicit TLS (RFC 8314), reporting whether the
//     server's certificate verified, and AUTH (RFC 4954) with any go-sasl
//     client, only under TLS.
//   - Dials from a chosen source address (Dialer.LocalAddr).
//
// What it does not do: choose servers (MX lookup, RFC 5321 §5), keep sessions
// between callers (pooling is the caller's; see relay.Transport), retry, decide
// TLS policy (MTA-STS, DANE: the caller reads TLS() and decides), CHUNKING/BDAT,
// or rewriting a message in any way.
package smtpclient
