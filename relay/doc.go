// Package relay is sealgate's outbound side: the durable spool that is the one
// hand-off between submission and delivery, and the delivery of what it holds.
//
// The spool (Spool) keeps each message durable before the 250 reply to DATA
// (RFC 5321 §4.1.1.4, §6.1: the server "accepts responsibility"), so it is sent
// only for a message that survives a crash, and a crash never exposes half a
// message. Small messages (the common case) are appended to a journal segment,
// one record each, made durable by one fdatasync shared by every message
// appended meanwhile (journal.go); they stay there until their first delivery
// attempt ends. Larger ones, and every message whose first attempt did not
// settle it, live in their own file, msg/<id>.msg: the body, streamed to disk
// during DATA into msg/<id>.part, then the final, signed header block, the
// envelope and a checksummed trailer appended at Commit; one fsync of that file,
// its rename to .msg (the commit point) and a directory fsync group-committed
// with concurrent messages. Retries record a newer envelope in msg/<id>.env,
// written atomically beside the untouched message file.
// The envelope carries the DSN parameters ENVID, RET, NOTIFY and ORCPT
// (RFC 3461) through to delivery.
//
// Runner takes committed messages to a Deliverer, with bounded concurrency and
// retries with backoff for temporary (4yz) failures. Two Deliverers exist:
// OutboxSink writes .eml files (dev mode) and NextHop relays over plain SMTP to
// one fixed server through internal/smtpclient, which sends the signed bytes
// unchanged apart from dot-stuffing and reports each recipient's result.
//
// Deliberately not done here yet: MX lookup and delivery to the recipients'
// domains; TLS policy (MTA-STS, DANE) and SUBMITTER in delivery; generating DSNs
// (RFC 3464): messages that fail are moved to the spool's failed/ directory with
// a "bounce needed" log event instead; per-domain rate limits. Delivery never
// rewrites a message: one with a bare CR or LF is refused rather than repaired,
// because repair would break the DKIM and ARC signatures.
package relay
