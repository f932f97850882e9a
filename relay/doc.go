// Package relay is sealgate's outbound side: the durable spool that is the one
// hand-off between submission and delivery, and the delivery of what it holds.
// It has three rooms, each a group of files named by its prefix, and the Runner
// that joins them.
//
// # The queue (queue_*.go)
//
// The spool (Spool, queue_spool.go) keeps each message durable before the 250
// reply to DATA (RFC 5321 §4.1.1.4, §6.1: the server "accepts responsibility"),
// so it is sent only for a message that survives a crash, and a crash never
// exposes half a message. Small messages (the common case) are appended to a
// journal segment, one record each, made durable by one fdatasync shared by every
// message appended meanwhile (queue_journal.go); they stay there until their
// first delivery attempt ends, their envelope kept in memory meanwhile. Larger
// ones, and every message whose first attempt did not settle it, live in their
// own file, msg/<id>.msg (queue_format.go): the body, streamed to disk during
// DATA into msg/<id>.part, then the final, signed header block, the envelope and
// a checksummed trailer appended at Commit (queue_commit.go); one fsync of that
// file, its rename to .msg (the commit point) and a directory fsync
// group-committed with concurrent messages (queue_groupsync.go). Retries record a
// newer envelope in msg/<id>.env, written atomically beside the untouched message
// file (queue_lifecycle.go); OpenSpool repairs what a crash leaves
// (queue_recover.go). The envelope carries the DSN parameters ENVID, RET, NOTIFY
// and ORCPT (RFC 3461) through to delivery. The queue side of the control socket
// (queue_control.go) lists, shows, retries, deletes and requeues messages for
// "sealgate queue".
//
// # The transport (transport*.go)
//
// Transport (transport.go) is the Deliverer for the Internet: recipients' MX
// hosts (RFC 5321 §5.1, null MX of RFC 7505; transport_mx.go) or smart hosts,
// routes per client organisation and per recipient domain, STARTTLS whenever
// offered and implicit TLS, AUTH to smart hosts, MTA-STS (RFC 8461;
// transport_mtasts.go), DANE for MX hosts (RFC 7672, over a resolver marked
// validating; transport_dane.go: TLSA lookup, DANE-EE and DANE-TA checks, and
// the decision table of §2.2, which outranks MTA-STS), TLS reporting of each
// session with an MX host (RFC 8460, counted by internal/tlsrpt;
// transport_tlsrpt.go), REQUIRETLS (RFC 8689),
// SUBMITTER (RFC 4405), and
// sessions kept and reused per destination within limits (transport_pool.go).
// What each attempt met is reported as Hops and AttemptEvents
// (transport_attempt.go). OutboxSink (transport_outbox.go) writes .eml files
// instead (dev mode). All SMTP goes through internal/smtpclient, which sends the
// signed bytes unchanged apart from dot-stuffing and reports each recipient's
// result.
//
// International mail: SMTPUTF8 (RFC 6531) is asked for only when Envelope.UTF8
// says the message needs it, and BODY=8BITMIME (RFC 6152) declared when the
// client declared it; an MX host without SMTPUTF8 is passed over, and when no
// next hop offers it those recipients fail with 5.6.7, never a downgrade (RFC
// 6531 §3.5).
//
// # Delivery status notifications (dsn*.go)
//
// What is given up on goes to failed/ with each recipient's status, and the
// Runner's Bouncer (DSNSender, dsn.go) tells the sender with a delivery status
// notification (RFC 3464; the message in dsn_message.go): failed, delayed
// (optional) and relayed (RFC 3461 §6.2.1), never to the null sender; for a
// message that needed SMTPUTF8, an RFC 6533 global DSN. A DSN is queued in the
// spool like any message.
//
// # The Runner (runner*.go)
//
// Runner (runner.go) takes committed messages to a Deliverer, with bounded
// concurrency and retries with backoff for temporary (4yz) failures, and logs one
// "delivery attempt" line per recipient group and attempt (AttemptEvent,
// Runner.OnAttempt); its Backlog (runner_backlog.go: messages due that no worker
// has taken) is what the submission side's flow control slows intake by. At
// shutdown it lets deliveries in flight finish for DrainTimeout. It serves the
// control socket (ControlServer, runner_control.go, one JSON line per request)
// so that "sealgate queue" changes the queue without a second writer.
//
// Why rooms of files and not packages: the rooms share the Envelope, the
// Deliverer's result types (PermanentError, RecipientsError) and, in their tests,
// one another's servers and spools; the control socket's queue side reads the
// spool's internals (journal entries, message files) and the Runner's state.
// Packages would have to export those internals or hold them in a fourth
// package, and would move relay.Spool, relay.Envelope and relay.Route, which
// submit, internal/config and cmd/sealgate use, for no gain in what a reader
// must hold in mind: the file prefixes and this comment show the rooms as well.
//
// Deliberately not done here: DNSSEC validation itself (DANE trusts the AD bit
// of a validating resolver, dns.dnssec); DANE for smart hosts (routes with a
// next hop use their TLS mode); per-domain rate limits; a persistent MTA-STS
// cache (it is in memory). Delivery never rewrites a message: one with a bare CR or LF is
// refused rather than repaired, because repair would break the DKIM and ARC
// signatures.
package relay
