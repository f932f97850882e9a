package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"sealgate/internal/atomicfile"
	"sealgate/internal/smtpclient"
)

// OutboxSink is a Deliverer for dev mode: it writes each message to
// Dir/<queue id>.eml (mode 0600) instead of sending it. The name is the queue id
// alone, so a message delivered again (after a crash between the write and its
// removal from the spool) replaces its earlier copy instead of adding a second.
type OutboxSink struct {
	Dir string
	// Verify, when set, is given each message once it is written, to show what a
	// receiver would make of it (dev mode logs the Authentication-Results it would
	// get). It cannot fail the delivery.
	Verify func(ctx context.Context, env *Envelope, msg []byte)
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
	var copied bytes.Buffer
	if o.Verify != nil {
		msg = io.TeeReader(msg, &copied)
	}
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
	if o.Verify != nil {
		o.Verify(ctx, env, copied.Bytes())
	}
	return nil
}

// NextHop is a Deliverer that relays every message over plain SMTP (RFC 5321)
// to one fixed server, without TLS or authentication: for dev mode and tests.
// Each recipient gets its own result; see RecipientsError. The SMTP is
// internal/smtpclient's: the message goes out byte for byte apart from
// dot-stuffing, the envelope pipelined when the server offers PIPELINING
// (RFC 2920), so a message costs two round trips.
//
// Sessions are kept open after a delivery and reused for the next message (RFC 5321
// §4.5.3.2 lets a client send many transactions per session), each transaction
// opened with RSET; so a busy queue does not pay a connect, greeting and EHLO per
// message. A kept session the server dropped meanwhile (it restarted, or timed
// the session out) is noticed at that RSET, before anything of the message was
// taken, and the message goes on the next kept session or a new one: as many as
// are kept, plus one new, so a restart of the next hop defers nothing. Use it by
// pointer.
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
	c     *smtpclient.Client
	since time.Time
}

// maxIdleAge bounds how long a connection waits unused; servers drop idle clients after
// a few minutes (RFC 5321 §4.5.3.2.7 suggests 5), so reuse stays well inside that.
const maxIdleAge = 30 * time.Second

func (h *NextHop) maxIdle() int {
	switch {
	case h.MaxIdle == 0:
		return 4
	case h.MaxIdle < 0:
		return 0
	}
	return h.MaxIdle
}

// client returns a session for the next transaction: a kept one (reused) or a
// new one.
func (h *NextHop) client(ctx context.Context) (c *smtpclient.Client, reused bool, err error) {
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
		if !ic.c.Reusable() { // closed meanwhile
			continue
		}
		if time.Since(ic.since) > maxIdleAge {
			ic.c.Quit()
			continue
		}
		return ic.c, true, nil
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	d := smtpclient.Dialer{HeloName: h.HeloName, Timeout: timeout}
	c, err = d.Dial(ctx, h.Addr)
	return c, false, err
}

// release keeps c for the next message, or ends the session when enough are idle.
func (h *NextHop) release(c *smtpclient.Client) {
	h.mu.Lock()
	if len(h.idle) < h.maxIdle() {
		h.idle = append(h.idle, idleClient{c: c, since: time.Now()})
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	c.Quit()
}

// Close ends every idle session.
func (h *NextHop) Close() {
	h.mu.Lock()
	idle := h.idle
	h.idle = nil
	h.mu.Unlock()
	for _, ic := range idle {
		ic.c.Quit()
	}
}

// Deliver relays one message. It refuses, with a *PermanentError, a message
// containing a bare CR or LF (submission already rejects those, this is defence
// in depth, and a relay must not change the signed bytes to fix them) and an
// envelope address that is not a valid RFC 5321 Mailbox (see
// smtpclient.Mailbox): nothing of such a message is sent.
func (h *NextHop) Deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	err := h.deliver(ctx, env, msg)
	var re *smtpclient.ReplyError
	var ue *smtpclient.UnsendableError
	if (errors.As(err, &re) && re.Permanent() || errors.As(err, &ue)) && !IsPermanent(err) {
		err = &PermanentError{Err: err}
	}
	if err != nil {
		return fmt.Errorf("relay: deliver %s to %s: %w", env.ID, h.Addr, err)
	}
	return nil
}

func (h *NextHop) deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	tx := transaction(env)
	// Refuse an unsendable envelope before taking a session for it.
	if _, err := smtpclient.ReversePath(tx.From); err != nil {
		return err
	}
	for _, r := range tx.Rcpts {
		if _, err := smtpclient.ForwardPath(r.Addr); err != nil {
			return err
		}
	}
	// Every kept session may have died (the next hop restarted): try each, then a new one.
	for attempt := 0; ; attempt++ {
		c, reused, err := h.client(ctx)
		if err != nil {
			return err
		}
		err = h.transaction(ctx, c, tx, env, msg)
		if errors.Is(err, smtpclient.ErrStaleSession) && reused && attempt < h.maxIdle()+1 {
			continue // it had died before it took anything
		}
		return err
	}
}

// transaction builds the client's transaction from a spooled envelope.
func transaction(env *Envelope) *smtpclient.Transaction {
	tx := &smtpclient.Transaction{From: env.From, Size: env.Size, Ret: env.Ret, EnvID: env.EnvID,
		Submitter: env.Submitter, RequireTLS: env.RequireTLS, Rcpts: make([]smtpclient.Recipient, len(env.To))}
	for i, rcpt := range env.To {
		r := smtpclient.Recipient{Addr: rcpt}
		if len(env.Notify) > i {
			r.Notify = env.Notify[i]
		}
		if len(env.ORcpt) > i {
			r.ORcpt = env.ORcpt[i]
		}
		tx.Rcpts[i] = r
	}
	return tx
}

// transaction runs one mail transaction on c, keeps c for the next message when
// it ended cleanly, and turns the replies into Deliverer results.
func (h *NextHop) transaction(ctx context.Context, c *smtpclient.Client, tx *smtpclient.Transaction, env *Envelope, msg io.Reader) error {
	stop := c.CloseOnDone(ctx)
	res, err := c.Send(tx, msg)
	stop() // the delivery's context no longer governs the session
	hop := Hop{Rcpts: env.To, Host: h.Addr}
	if len(env.To) > 0 {
		hop.Domain = domainOf(env.To[0])
	}
	if host, _, err := net.SplitHostPort(h.Addr); err == nil {
		hop.Host = host
	}
	if ip, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		hop.IP = ip
	}
	if res != nil {
		hop.Reply = res.Data
		_, dsn := c.Extension("DSN")
		hop.NoDSN = !dsn
	}
	ReportHop(ctx, hop)
	if err != nil {
		if c.Reusable() { // refused before anything was written
			h.release(c)
		} else {
			c.Close()
		}
		return err
	}
	var accepted []string
	var failed []RecipientError
	for i, rerr := range res.Rcpts {
		rcpt := env.To[i]
		var re *smtpclient.ReplyError
		switch {
		case rerr == nil:
			accepted = append(accepted, rcpt)
		case errors.As(rerr, &re) && re.Permanent():
			failed = append(failed, RecipientError{Rcpt: rcpt, Err: &PermanentError{Err: rerr}})
		default:
			failed = append(failed, RecipientError{Rcpt: rcpt, Err: rerr})
		}
	}
	if len(accepted) == 0 {
		c.Quit()
		rerr := &RecipientsError{Failed: failed}
		for _, f := range failed {
			if !IsPermanent(f.Err) {
				return rerr
			}
		}
		return &PermanentError{Err: rerr}
	}
	if c.Reusable() {
		h.release(c)
	} else {
		c.Close()
	}
	if len(failed) > 0 {
		return &RecipientsError{Accepted: accepted, Failed: failed}
	}
	return nil
}
