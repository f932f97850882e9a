// Package smtpedge holds everything sealgate does around github.com/emersion/go-smtp
// rather than through its API: each piece covers one behaviour of go-smtp that a relay
// which signs what it accepts cannot live with. Checked against go-smtp v0.26.0 (go.mod);
// when go-smtp changes, this is the one place to look again.
//
//   - OneConnListener: go-smtp's Server.Debug writer is one per server, and it is the
//     only place where the bytes go-smtp reads are visible after TLS. submit serves each
//     connection with an smtp.Server of its own, handed its one connection by this
//     listener, so that the Debug writer (WireScanner) belongs to that connection alone.
//   - WireScanner: go-smtp's DATA reader (data.go, unchanged in v0.26.0) drops both the
//     "." and the CR of a line "." followed by a bare CR (CR LF "." CR X), so a session
//     would get the message two bytes short instead of seeing a bare CR, the stuff of
//     SMTP smuggling; and its parser (parse.go) removes the quoting of a Quoted-string
//     local part, so <"a@b"@c.example> and the invalid <a@b@c.example> reach the session
//     alike. The scanner reads the Debug copy of the client's bytes and reports both
//     (WireConn.Smuggling, WireConn.AddPath), and passes over BDAT chunks by their size
//     as go-smtp reads them (RFC 3030 §2).
//   - ParseWirePath: a copy of go-smtp v0.26.0's path parser (parser.parsePath,
//     parseReversePath and parseForwardPath in its parse.go) that keeps the mailbox as
//     written, so it can be matched with the value go-smtp passes on.
//   - DeadlineReader: go-smtp re-arms its read timeout only when it reads a command
//     line, so one timeout would cover a whole DATA upload; and its DATA reader returns
//     only on a full buffer or CRLF.CRLF, so bytes in which it sees no end stay unchecked
//     in its buffer. The reader re-arms the deadline per read and polls.
//   - LineEndCheck: go-smtp passes bare CR and LF through in DATA (and BDAT); the check
//     finds them so that the session refuses the message (RFC 5321 §2.3.8).
//
// Not here, because it cannot be done within go-smtp's API: RFC 4954 §4 says an AUTH
// response that is not valid base64 gets 501; go-smtp (v0.25.1 and v0.26.0, conn.go
// handleAuth) decodes the initial response and every continuation itself and answers 454
// 4.7.0 "Invalid base64 data" before any callback of ours runs (AuthSession.Auth is
// called after the initial response is decoded, sasl.Server.Next only with decoded
// bytes). Its reply cannot be rewritten either: after STARTTLS go-smtp writes through a
// tls.Conn it makes itself over our connection, so below it we see ciphertext, and the
// Debug writer gets the reply only after it was sent. The fix belongs in go-smtp
// (answer 501 5.5.2 there); until then such an AUTH gets 454 4.7.0, checks no password
// and is not counted by the AUTH throttle.
//
// What this package does not do: it holds no policy. Which replies to give, and when to
// close a connection, is submit's (clientConn implements WireConn).
package smtpedge
