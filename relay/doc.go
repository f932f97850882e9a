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
// retries with backoff for temporary (4yz) failures, and logs one "delivery
// attempt" line per recipient group and attempt (AttemptEvent, Runner.OnAttempt);
// its Backlog (messages due that no worker has taken) is what the submission
// side's flow control slows intake by.
// Transport is the Deliverer for the Internet: recipients' MX hosts (RFC 5321
// §5.1, null MX of RFC 7505) or smart hosts, routes per client organisation and
// per recipient domain, STARTTLS whenever offered and implicit TLS, AUTH to
// smart hosts, MTA-STS (RFC 8461), REQUIRETLS (RFC 8689), SUBMITTER (RFC 4405),
// and sessions kept and reused per destination within limits. OutboxSink writes
// .eml files (dev mode).
// All SMTP goes through internal/smtpclient, which sends the signed bytes
// unchanged apart from dot-stuffing and reports each recipient's result.
//
// What is given up on goes to failed/ with each recipient's status, and the
// Runner's Bouncer (DSNSender) tells the sender with a delivery status
// notification (RFC 3464): failed, delayed (optional) and relayed (RFC 3461
// §6.2.1), never to the null sender. At shutdown the Runner lets deliveries in
// flight finish for DrainTimeout. It also serves the control socket
// (ControlServer, one JSON line per request) through which "sealgate queue"
// lists, shows, retries, deletes and requeues messages without a second writer.
//
// Deliberately not done here: DANE (RFC 7672; Transport.checkTLS is where a
// TLSA check would go); per-domain rate limits; a persistent MTA-STS cache (it
// is in memory). Delivery never rewrites a message: one with a bare CR or LF is
// refused rather than repaired, because repair would break the DKIM and ARC
// signatures.
package relay
