package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"sealgate/internal/atomicfile"
)

// OutboxSink is a Deliverer for dev mode: it writes each message to
// Dir/<queue id>.eml (mode 0600) instead of sending it. The name is the queue id
// alone, so a message delivered again (after a crash between the write and its
// removal from the spool) replaces its earlier copy instead of adding a second.
type OutboxSink struct {
	Dir string
}

// Deliver writes msg atomically (temporary file, fsync, rename, directory fsync),
// then removes temporary files that an earlier, interrupted delivery of the same
// message left behind: they hold a copy of it too.
func (o OutboxSink) Deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	if err := checkID(env.ID); err != nil {
		return &PermanentError{Err: err}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("outbox: create %s: %w", o.Dir, err)
	}
	p := filepath.Join(o.Dir, env.ID+".eml")
	err := atomicfile.WriteFunc(p, atomicfile.Options{Perm: 0o600}, func(w io.Writer) error {
		_, err := io.Copy(w, msg)
		return err
	})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	// The Runner delivers one message at most once at a time, so no write of p runs now.
	if err := atomicfile.RemoveTemps(p, ""); err != nil {
		slog.Warn("outbox: leftover of an interrupted delivery not removed", "queue_id", env.ID, "error", err)
	}
	slog.Info("delivered to outbox", "queue_id", env.ID, "path", p)
	return nil
}

// NextHop is a Deliverer that relays every message over plain SMTP (RFC 5321)
// to one fixed server, without TLS or authentication: for dev mode and tests.
// Each recipient gets its own result; see RecipientsError.
//
// Connections are kept open after a delivery and reused for the next message (RFC 5321
// §4.5.3 lets a client send many transactions per session), checked with RSET first; so a
// busy queue does not pay a connect, greeting and EHLO per message. When the server offers
// PIPELINING (RFC 2920), RSET, MAIL, the RCPTs and DATA go out in one write, so a message
// costs two round trips instead of one per command. Use it by pointer.
type NextHop struct {
	Addr     string        // host:port
	HeloName string        // EHLO/HELO name; default the host name
	Timeout  time.Duration // dial and each command/reply; default 2 minutes
	// MaxIdle is how many connections are kept open between messages; 0 means 4,
	// negative means none (one connection per message).
	MaxIdle int

	mu   sync.Mutex
	idle []idleClient
}

// idleClient is an open session waiting for its next transaction.
type idleClient struct {
	c     *smtpClient
	since time.Time
}

// maxIdleAge bounds how long a connection waits unused; servers drop idle clients after
// a few minutes (RFC 5321 §4.5.3.2.7 suggests 5), so reuse stays well inside that.
const maxIdleAge = 30 * time.Second

// client returns a session for the next transaction: an idle one (reused, to be
// checked with RSET by the transaction) or a new one.
func (h *NextHop) client(ctx context.Context, helo string, timeout time.Duration) (c *smtpClient, reused bool, err error) {
	for {
		h.mu.Lock()
		var ic idleClient
		ok := len(h.idle) > 0
		if ok {
			ic = h.idle[len(h.idle)-1]
			h.idle = h.idle[:len(h.idle)-1]
		}
		h.mu.Unlock()
		if !ok {
			break
		}
		if time.Since(ic.since) > maxIdleAge {
			ic.c.quit()
			continue
		}
		ic.c.stop = context.AfterFunc(ctx, func() { ic.c.conn.Close() })
		return ic.c, true, nil
	}
	c, err = dialSMTP(ctx, h.Addr, timeout)
	if err != nil {
		return nil, false, err
	}
	if err := c.hello(helo); err != nil {
		c.close()
		return nil, false, err
	}
	return c, false, nil
}

// release keeps c for the next message, or ends the session when enough are idle.
func (h *NextHop) release(c *smtpClient) {
	c.stop() // the delivery's context no longer governs the connection
	max := h.MaxIdle
	if max == 0 {
		max = 4
	}
	h.mu.Lock()
	if len(h.idle) < max {
		h.idle = append(h.idle, idleClient{c: c, since: time.Now()})
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	c.quit()
}

// Close ends every idle session.
func (h *NextHop) Close() {
	h.mu.Lock()
	idle := h.idle
	h.idle = nil
	h.mu.Unlock()
	for _, ic := range idle {
		ic.c.quit()
	}
}

// Deliver relays one message. It refuses, with a *PermanentError, a message
// containing a bare CR or LF: submission already rejects those, this is
// defence in depth, and a relay must not change the signed bytes to fix them.
func (h *NextHop) Deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	err := h.deliver(ctx, env, msg)
	var re *ReplyError
	if errors.As(err, &re) && re.Permanent() && !IsPermanent(err) {
		err = &PermanentError{Err: err}
	}
	if err != nil {
		return fmt.Errorf("relay: deliver %s to %s: %w", env.ID, h.Addr, err)
	}
	return nil
}

func (h *NextHop) deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	helo := h.HeloName
	if helo == "" {
		helo, _ = os.Hostname()
		if helo == "" {
			helo = "localhost"
		}
	}
	for _, a := range append([]string{env.From}, env.To...) {
		if err := checkAddress(a); err != nil {
			return &PermanentError{Err: err}
		}
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := h.client(ctx, helo, timeout)
		if err != nil {
			return err
		}
		err = h.transaction(c, reused, env, msg)
		if errors.Is(err, errStaleSession) && attempt == 0 {
			continue // the idle session had died before it took anything: use a new one
		}
		return err
	}
}

// errStaleSession reports a reused session that did not answer RSET.
var errStaleSession = errors.New("reused SMTP session did not answer RSET")

// transaction runs one mail transaction on c, and keeps c for the next message
// when it ends cleanly. A reused session gets RSET first, to check it is alive.
// With PIPELINING (RFC 2920) RSET, MAIL, every RCPT and DATA go out in one write
// and their replies are read in order; otherwise one command at a time.
func (h *NextHop) transaction(c *smtpClient, reused bool, env *Envelope, msg io.Reader) error {
	keep := false
	defer func() {
		if keep {
			h.release(c)
		} else {
			c.close()
		}
	}()

	var mailParams []string
	if v, ok := c.extension("SIZE"); ok {
		// RFC 1870 §6: declare the size; a known limit lets us fail before sending.
		if max, err := strconv.ParseInt(v, 10, 64); err == nil && max > 0 && env.Size > max {
			return &PermanentError{Err: fmt.Errorf("message of %d bytes exceeds the next hop's SIZE %d", env.Size, max)}
		}
		mailParams = append(mailParams, "SIZE="+strconv.FormatInt(env.Size, 10))
	}
	if needsUTF8(env) {
		if _, ok := c.extension("SMTPUTF8"); !ok {
			return &PermanentError{Err: errors.New("non-ASCII address but the next hop does not offer SMTPUTF8 (RFC 6531)")}
		}
		mailParams = append(mailParams, "SMTPUTF8")
	}
	_, dsn := c.extension("DSN")
	if dsn { // RFC 3461 §4.3, §4.4
		if env.Ret != "" {
			mailParams = append(mailParams, "RET="+env.Ret)
		}
		if env.EnvID != "" {
			mailParams = append(mailParams, "ENVID="+xtext(env.EnvID))
		}
	}
	cmds := make([]string, 0, len(env.To)+3)
	if reused {
		cmds = append(cmds, "RSET")
	}
	cmds = append(cmds, mailCmd(env.From, mailParams))
	for i, rcpt := range env.To {
		var params []string
		if dsn { // RFC 3461 §4.1, §4.2
			if len(env.Notify) > i && env.Notify[i] != "" {
				params = append(params, "NOTIFY="+env.Notify[i])
			}
			if len(env.ORcpt) > i && env.ORcpt[i] != "" {
				params = append(params, "ORCPT="+orcptParam(env.ORcpt[i]))
			}
		}
		cmds = append(cmds, rcptCmd(rcpt, params))
	}
	cmds = append(cmds, "DATA")

	// send and reply hand out the commands and read their replies: all commands
	// at once when pipelining, else each just before its reply.
	_, pipelining := c.extension("PIPELINING")
	if pipelining {
		if err := c.send(cmds...); err != nil {
			if reused {
				err = fmt.Errorf("%w: %w", errStaleSession, err)
			}
			return err
		}
	}
	next := 0
	reply := func(expect int) (string, error) {
		line := cmds[next]
		next++
		if !pipelining {
			if err := c.send(line); err != nil {
				return "", err
			}
		}
		_, msg, err := c.read(line, expect)
		return msg, err
	}

	if reused {
		if _, err := reply(250); err != nil {
			return fmt.Errorf("%w: %w", errStaleSession, err)
		}
	}
	if _, err := reply(2); err != nil {
		return err // MAIL refused; with pipelining the rest is moot, and the session is closed
	}
	var accepted []string
	var failed []RecipientError
	for _, rcpt := range env.To {
		_, err := reply(2)
		var re *ReplyError
		switch {
		case err == nil:
			accepted = append(accepted, rcpt)
		case errors.As(err, &re) && re.Permanent():
			failed = append(failed, RecipientError{Rcpt: rcpt, Err: &PermanentError{Err: err}})
		case errors.As(err, &re):
			failed = append(failed, RecipientError{Rcpt: rcpt, Err: err})
		default:
			return err // connection trouble: the whole message is retried
		}
	}
	if len(accepted) == 0 {
		if pipelining {
			// DATA was sent too. A server that accepts it anyway (RFC 2920 §3.1)
			// gets an empty message ended at once, which it must refuse.
			if _, err := reply(354); err == nil {
				c.send(".")
				c.read("end of data", 2)
			}
		}
		c.quit()
		rerr := &RecipientsError{Failed: failed}
		for _, f := range failed {
			if !IsPermanent(f.Err) {
				return rerr
			}
		}
		return &PermanentError{Err: rerr}
	}
	if _, err := reply(354); err != nil {
		return err
	}
	if err := c.body(msg); err != nil {
		if errors.Is(err, errBareLineEnd) {
			// The connection is closed without the final ".", so the server drops it.
			return &PermanentError{Err: err}
		}
		return err
	}
	keep = true
	if len(failed) > 0 {
		return &RecipientsError{Accepted: accepted, Failed: failed}
	}
	return nil
}

// checkAddress refuses what would break the command line; the address syntax
// itself was checked at submission.
func checkAddress(a string) error {
	for i := 0; i < len(a); i++ {
		if c := a[i]; c < ' ' || c == 0x7f || c == '<' || c == '>' {
			return fmt.Errorf("invalid character %q in address %q", c, a)
		}
	}
	if !utf8.ValidString(a) {
		return fmt.Errorf("address %q is not valid UTF-8", a)
	}
	return nil
}

func needsUTF8(env *Envelope) bool {
	for _, a := range append([]string{env.From}, env.To...) {
		for i := 0; i < len(a); i++ {
			if a[i] >= 0x80 {
				return true
			}
		}
	}
	return false
}

// orcptParam encodes a stored "addr-type;address" as the ORCPT value (RFC 3461 §4.2).
func orcptParam(s string) string {
	typ, addr, ok := strings.Cut(s, ";")
	if !ok {
		typ, addr = "rfc822", s
	}
	return typ + ";" + xtext(addr)
}
