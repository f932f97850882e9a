package relay

// The delivery status notification message (RFC 3464): a multipart/report
// (RFC 6522) with report-type=delivery-status of three parts: a human-readable
// explanation, the message/delivery-status fields, and the original message's
// header (text/rfc822-headers) or, with RET=FULL (RFC 3461 §4.3), the whole
// message (message/rfc822). It is sent from the null reverse-path (RFC 5321
// §4.5.5, RFC 3461 §6.2), DKIM-signed when keys are given, and queued in the
// spool like any accepted message.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"sealgate/internal/dkimcore"
	"sealgate/internal/smtpclient"
	"sealgate/sign"
)

// DSNIdentity is the Envelope.Identity of the DSNs the relay queues.
const DSNIdentity = "sealgate-dsn"

// DSNSender is the Bouncer (and DelayNotifier) that builds DSNs and commits
// them to Spool, to be delivered to the original reverse-path.
type DSNSender struct {
	Spool *Spool
	// Hostname is the Reporting-MTA (RFC 3464 §2.2.2) and the right side of
	// the DSNs' Message-IDs.
	Hostname string
	// From is the DSNs' From: address, such as MAILER-DAEMON@example.com.
	From string
	// Keys, when set, DKIM-sign each DSN (d= Keys.Domain); nil sends them unsigned.
	// SetKeys replaces them while the sender runs.
	Keys *sign.DomainKeys
	// reloaded holds the keys of the last SetKeys, which replace Keys.
	reloaded atomic.Pointer[reloadedKeys]
	// RetryUntil is how long after acceptance a message is retried: the
	// Will-Retry-Until of delay warnings (Runner.MaxAge); 0 leaves it out.
	RetryUntil time.Duration
	Logger     *slog.Logger // default slog.Default()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// dsnRcpt is one per-recipient block of a DSN.
type dsnRcpt struct {
	rcpt, orcpt      string
	action, status   string
	remoteMTA, reply string
	text             string // why, for the human-readable part
	lastAttempt      time.Time
	willRetryUntil   time.Time
	failedIndex      int // index in env.Failed, -1 for a delay
}

type reloadedKeys struct{ dk *sign.DomainKeys }

// SetKeys replaces the keys DSNs are signed with (nil: unsigned) from the next DSN
// on, as a reload or a key rotation's switch does for messages; a DSN being built
// keeps the keys it started with.
func (d *DSNSender) SetKeys(dk *sign.DomainKeys) { d.reloaded.Store(&reloadedKeys{dk}) }

func (d *DSNSender) keys() *sign.DomainKeys {
	if k := d.reloaded.Load(); k != nil {
		return k.dk
	}
	return d.Keys
}

func (d *DSNSender) log() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

func (d *DSNSender) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Bounce queues one DSN (Action: failed) to env.From for those of failed
// whose NOTIFY asks for failures, and records in env.Failed what was done for
// each: the DSN's queue id, DSNNotRequested, or DSNNullSender.
func (d *DSNSender) Bounce(ctx context.Context, env *Envelope, failed []RecipientError) error {
	first := len(env.Failed) - len(failed)
	if first < 0 {
		return fmt.Errorf("dsn: %d failed recipients, only %d recorded", len(failed), len(env.Failed))
	}
	log := d.log().With("queue_id", env.ID)
	var rcpts []dsnRcpt
	for i := first; i < len(env.Failed); i++ {
		f := &env.Failed[i]
		switch {
		case env.From == "":
			f.DSN = DSNNullSender
		case !notifyWants(f.Notify, "FAILURE"):
			f.DSN = DSNNotRequested
		default:
			rcpts = append(rcpts, dsnRcpt{rcpt: f.Rcpt, orcpt: f.ORcpt, action: "failed", status: f.Status,
				remoteMTA: f.RemoteMTA, reply: f.Reply, text: f.Error, lastAttempt: f.At, failedIndex: i})
		}
	}
	if env.From == "" {
		log.Warn("undeliverable message from the null sender; no DSN (RFC 5321 §4.5.5)", "failed_rcpts", len(failed))
		return nil
	}
	if len(rcpts) == 0 {
		log.Info("no DSN: the failed recipients' NOTIFY did not ask for one", "failed_rcpts", len(failed))
		return nil
	}
	id, err := d.queue(env, rcpts, env.Ret == "FULL")
	if err != nil {
		return err
	}
	for _, r := range rcpts {
		env.Failed[r.failedIndex].DSN = id
	}
	log.Info("DSN queued", "dsn_queue_id", id, "action", "failed", "to", env.From, "rcpts", len(rcpts))
	return nil
}

// Delayed queues one DSN (Action: delayed) to env.From for the recipients of
// env.To whose NOTIFY asks for delays. It never includes the message body.
func (d *DSNSender) Delayed(ctx context.Context, env *Envelope, cause error) error {
	if env.From == "" {
		return nil
	}
	// The failure of each recipient: its own in a RecipientsError, else the
	// attempt's.
	perRcpt := map[string]error{}
	var rerr *RecipientsError
	if errors.As(cause, &rerr) {
		for _, f := range rerr.Failed {
			perRcpt[f.Rcpt] = f.Err
		}
	}
	now := d.now()
	var until time.Time
	if d.RetryUntil > 0 {
		until = env.queuedSince().Add(d.RetryUntil)
	}
	var rcpts []dsnRcpt
	for i, rcpt := range env.To {
		var notify, orcpt string
		if i < len(env.Notify) {
			notify = env.Notify[i]
		}
		if i < len(env.ORcpt) {
			orcpt = env.ORcpt[i]
		}
		if !notifyWants(notify, "DELAY") {
			continue
		}
		err := perRcpt[rcpt]
		if err == nil {
			err = cause
		}
		status, reply := failureDetail(err)
		if !strings.HasPrefix(status, "4.") {
			status = "4.0.0" // RFC 3463 §3.1: a delay is a persistent transient failure
		}
		rcpts = append(rcpts, dsnRcpt{rcpt: rcpt, orcpt: orcpt, action: "delayed", status: status,
			reply: reply, text: err.Error(), lastAttempt: now, willRetryUntil: until, failedIndex: -1})
	}
	if len(rcpts) == 0 {
		return nil
	}
	id, err := d.queue(env, rcpts, false)
	if err != nil {
		return err
	}
	d.log().Info("DSN queued", "queue_id", env.ID, "dsn_queue_id", id, "action", "delayed", "to", env.From, "rcpts", len(rcpts))
	return nil
}

// Relayed queues one DSN (Action: relayed, RFC 3461 §6.2.1) to env.From for
// rcpts, taken by a server that does not offer DSN. It returns the header only.
func (d *DSNSender) Relayed(ctx context.Context, env *Envelope, rcpts []RelayedRecipient) error {
	if env.From == "" || len(rcpts) == 0 {
		return nil
	}
	now := d.now()
	var out []dsnRcpt
	for _, r := range rcpts {
		status := r.Status
		if !strings.HasPrefix(status, "2.") {
			status = "2.0.0"
		}
		out = append(out, dsnRcpt{rcpt: r.Rcpt, orcpt: r.ORcpt, action: "relayed", status: status,
			remoteMTA: r.RemoteMTA, reply: r.Reply, text: "relayed to " + r.RemoteMTA + ", which does not send delivery notifications",
			lastAttempt: now, failedIndex: -1})
	}
	id, err := d.queue(env, out, false)
	if err != nil {
		return err
	}
	d.log().Info("DSN queued", "queue_id", env.ID, "dsn_queue_id", id, "action", "relayed", "to", env.From, "rcpts", len(out))
	return nil
}

// queue builds the DSN about env for rcpts and commits it to the spool.
func (d *DSNSender) queue(env *Envelope, rcpts []dsnRcpt, full bool) (string, error) {
	if d.Spool == nil {
		return "", errors.New("dsn: no spool")
	}
	orig, msg, err := d.Spool.Open(env.ID)
	if err != nil {
		return "", fmt.Errorf("dsn: read the original message: %w", err)
	}
	defer msg.Close()
	header, body, err := d.build(orig, msg, rcpts, full)
	if err != nil {
		return "", err
	}
	in, err := d.Spool.Create()
	if err != nil {
		return "", fmt.Errorf("dsn: %w", err)
	}
	defer in.Abort()
	if _, err := in.Write(body); err != nil {
		return "", fmt.Errorf("dsn: %w", err)
	}
	// No DSN about a DSN: NOTIFY=NEVER (RFC 3461 §6.2); the null sender would
	// stop one here anyway.
	denv := &Envelope{From: "", To: []string{env.From}, Identity: DSNIdentity, Notify: []string{"NEVER"},
		UTF8: !isASCII([]byte(env.From)), EightBit: !isASCII(body)}
	id, err := in.Commit(denv, header)
	if err != nil {
		return "", fmt.Errorf("dsn: %w", err)
	}
	return id, nil
}

// build returns the DSN's header block (each field ending in CRLF, signed
// when Keys is set) and body.
func (d *DSNSender) build(env *Envelope, msg io.Reader, rcpts []dsnRcpt, full bool) (header, body []byte, err error) {
	orig, err := io.ReadAll(msg)
	if err != nil {
		return nil, nil, fmt.Errorf("dsn: read the original message: %w", err)
	}
	origHeader := orig
	if i := bytes.Index(orig, []byte("\r\n\r\n")); i >= 0 {
		origHeader = orig[:i+2]
	}
	now := d.now()
	var rnd [12]byte
	rand.Read(rnd[:])
	boundary := "=_dsn_" + hex.EncodeToString(rnd[:])
	action := rcpts[0].action
	global := env.UTF8 || !isASCII(origHeader) || !isASCII([]byte(env.From))
	for _, r := range rcpts {
		global = global || !isASCII([]byte(r.rcpt))
	}
	// In a global DSN, UTF-8 is kept (controls still replaced); in a plain one
	// it is replaced, so that the report is ASCII.
	text, charset := asciiOnly, "us-ascii"
	reportType, statusType, origFull, origHeaders := "delivery-status", "message/delivery-status", "message/rfc822", "text/rfc822-headers"
	if global {
		text, charset = noControls, "utf-8"
		reportType, statusType, origFull, origHeaders = "global-delivery-status", "message/global-delivery-status", "message/global", "message/global-headers"
	}
	// finalRecipient is an address field of the delivery-status part: type
	// rfc822 for an ASCII address, utf-8 in a global DSN (RFC 6533 §3).
	finalRecipient := func(a string) string {
		if global && !isASCII([]byte(a)) {
			return "utf-8; " + noControls(a)
		}
		return "rfc822; " + asciiOnly(a)
	}

	var b bytes.Buffer
	crlf := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }

	// Part 1: for people.
	crlf("--%s", boundary)
	crlf("Content-Type: text/plain; charset=%s", charset)
	if global {
		crlf("Content-Transfer-Encoding: 8bit")
	}
	crlf("Content-Description: Notification")
	crlf("")
	crlf("This is the mail system at %s.", d.Hostname)
	crlf("")
	switch action {
	case "delayed":
		crlf("Your message has not been delivered yet to the recipients below. It is still")
		crlf("queued and will be retried; you do not need to send it again.")
	case "relayed":
		crlf("Your message was passed on for the recipients below, as you asked to be told")
		crlf("of its delivery. The server it went to does not send delivery notifications,")
		crlf("so you will not hear of it again.")
	default:
		crlf("Your message could not be delivered to the recipients below. This is a")
		crlf("permanent error; it will not be retried.")
	}
	crlf("")
	for _, r := range rcpts {
		crlf("<%s>:", text(r.rcpt))
		for _, line := range wrapText(text(r.text), 72) {
			crlf("    %s", line)
		}
	}
	crlf("")

	// Part 2: for programs (RFC 3464 §2.2, §2.3).
	crlf("--%s", boundary)
	crlf("Content-Type: %s", statusType)
	if global {
		crlf("Content-Transfer-Encoding: 8bit")
	}
	crlf("Content-Description: Delivery report")
	crlf("")
	crlf("Reporting-MTA: dns; %s", d.Hostname)
	if env.EnvID != "" {
		crlf("Original-Envelope-Id: %s", xtextIfNeeded(env.EnvID))
	}
	crlf("Arrival-Date: %s", env.ReceivedAt.Format(time.RFC1123Z))
	for _, r := range rcpts {
		crlf("")
		crlf("Final-Recipient: %s", finalRecipient(r.rcpt))
		if r.orcpt != "" {
			typ, addr, ok := strings.Cut(r.orcpt, ";")
			if !ok {
				typ, addr = "rfc822", r.orcpt
			}
			switch {
			case strings.EqualFold(typ, "utf-8") && global:
				addr = noControls(addr) // utf-8-addr-unitext (RFC 6533 §3)
			case strings.EqualFold(typ, "utf-8"):
				addr = smtpclient.UTF8AddrXText(addr)
			default:
				addr = xtextIfNeeded(addr)
			}
			crlf("Original-Recipient: %s; %s", typ, addr)
		}
		crlf("Action: %s", r.action)
		crlf("Status: %s", r.status)
		if r.remoteMTA != "" {
			crlf("Remote-MTA: dns; %s", r.remoteMTA)
		}
		if r.reply != "" {
			crlf("Diagnostic-Code: smtp; %s", text(r.reply))
		}
		if !r.lastAttempt.IsZero() {
			crlf("Last-Attempt-Date: %s", r.lastAttempt.Format(time.RFC1123Z))
		}
		if !r.willRetryUntil.IsZero() {
			crlf("Will-Retry-Until: %s", r.willRetryUntil.Format(time.RFC1123Z))
		}
	}
	crlf("")

	// Part 3: the original (RFC 3462 §3: headers only unless RET=FULL).
	crlf("--%s", boundary)
	if full {
		crlf("Content-Type: %s", origFull)
		if !isASCII(orig) {
			crlf("Content-Transfer-Encoding: 8bit")
		}
		crlf("Content-Description: Undelivered message")
		crlf("")
		b.Write(orig)
		if !bytes.HasSuffix(orig, []byte("\r\n")) {
			b.WriteString("\r\n")
		}
	} else {
		crlf("Content-Type: %s", origHeaders)
		if !isASCII(origHeader) {
			crlf("Content-Transfer-Encoding: 8bit")
		}
		crlf("Content-Description: Header of the message")
		crlf("")
		b.Write(origHeader)
	}
	crlf("")
	crlf("--%s--", boundary)
	body = b.Bytes()

	subject := "Undelivered Mail Returned to Sender"
	switch action {
	case "delayed":
		subject = "Delayed Mail (still being retried)"
	case "relayed":
		subject = "Relayed Mail (no further notifications)"
	}
	from := d.From
	var hdr dkimcore.Header
	field := func(format string, args ...any) {
		hdr = append(hdr, dkimcore.Field(fmt.Sprintf(format+"\r\n", args...)))
	}
	field("From: Mail Delivery System <%s>", from)
	field("To: <%s>", env.From)
	field("Subject: %s", subject)
	field("Date: %s", now.Format(time.RFC1123Z))
	field("Message-ID: <%s.%s@%s>", now.UTC().Format("20060102150405"), hex.EncodeToString(rnd[:6]), d.Hostname)
	if mid := originalMessageID(origHeader); mid != "" {
		field("In-Reply-To: %s", mid)
		field("References: %s", mid)
	}
	field("Auto-Submitted: auto-replied") // RFC 3834 §5
	field("MIME-Version: 1.0")
	field("Content-Type: multipart/report; report-type=%s;\r\n\tboundary=\"%s\"", reportType, boundary)
	if !isASCII(body) {
		field("Content-Transfer-Encoding: 8bit")
	}
	if dk := d.keys(); dk != nil && len(dk.Keys) > 0 {
		o := dk.Options()
		o.Time = now
		sigs, err := sign.Sign(hdr, dkimcore.HashBody(body, dkimcore.Relaxed), o)
		if err != nil {
			return nil, nil, fmt.Errorf("dsn: DKIM-sign: %w", err)
		}
		hdr = append(sigs, hdr...)
	}
	return hdr.Bytes(), body, nil
}

// originalMessageID returns the Message-ID of a header block, "" if it has
// none or an odd one.
func originalMessageID(header []byte) string {
	h, err := dkimcore.ReadHeader(bufio.NewReader(io.MultiReader(bytes.NewReader(header), strings.NewReader("\r\n"))), false)
	if err != nil {
		return ""
	}
	v := h.Values("Message-ID")
	if len(v) != 1 {
		return ""
	}
	id := strings.TrimSpace(v[0])
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") || strings.ContainsAny(id, " \t\r\n") || !isASCII([]byte(id)) {
		return ""
	}
	return id
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// asciiOnly replaces control characters (and, in text, non-ASCII bytes) so a
// value cannot break the field or line it goes in.
func asciiOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r >= 0x80 {
			return '?'
		}
		return r
	}, s)
}

// noControls replaces control characters so a value cannot break the field or
// line it goes in; UTF-8 is kept (a global DSN, RFC 6533).
func noControls(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}

// xtextIfNeeded returns s as it is when it is printable ASCII without
// specials, else xtext-encoded (RFC 3461 §4).
func xtextIfNeeded(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' || c == '+' || c == '=' {
			return smtpclient.XText(s)
		}
	}
	return s
}

// wrapText splits s into lines of at most width bytes where it can, at spaces.
func wrapText(s string, width int) []string {
	var lines []string
	words := strings.Fields(s)
	line := ""
	for _, w := range words {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
