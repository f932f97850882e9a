package relay

// Delivery status notifications (RFC 3464) for the Runner: which recipients
// are reported on (the NOTIFY rules of RFC 3461 §4.1), and how a failure
// becomes a Status, Remote-MTA and Diagnostic-Code. The message itself is
// built and queued by DSNSender (dsn_message.go).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"sealgate/internal/smtpclient"
)

// Bouncer sends the delivery status notifications of a Runner. Bounce is
// called once per delivery attempt that gave up on recipients, before the
// outcome is written to the spool and while the message is still queued
// (Spool.Open works). failed are the recipients given up on in this attempt,
// with why; their records are the last len(failed) entries of env.Failed,
// whose DSN fields Bounce sets (the DSN's queue id, or why none was sent). An
// error means a DSN that should have been queued was not; the Runner logs it,
// and the message still goes to failed/ with the records.
type Bouncer interface {
	Bounce(ctx context.Context, env *Envelope, failed []RecipientError) error
}

// DelayNotifier is implemented by a Bouncer that also sends delay warnings
// (Action: delayed, RFC 3464 §2.3.3). The Runner calls Delayed at most once
// per message, after a deferral when the message has been queued for
// Runner.DelayWarning; env.To are the recipients still being retried and err
// their last failure.
type DelayNotifier interface {
	Delayed(ctx context.Context, env *Envelope, err error) error
}

// RelayNotifier is implemented by a Bouncer that also sends "relayed" DSNs
// (RFC 3461 §6.2.1): for recipients that asked NOTIFY=SUCCESS and were taken
// by a server that does not offer DSN, which therefore cannot report their
// delivery. The Runner calls Relayed after such a delivery, before the
// message leaves the queue (Spool.Open works).
type RelayNotifier interface {
	Relayed(ctx context.Context, env *Envelope, rcpts []RelayedRecipient) error
}

// RelayedRecipient is one recipient of a "relayed" DSN.
type RelayedRecipient struct {
	Rcpt, ORcpt string
	RemoteMTA   string // the server that took it
	Reply       string // its reply to the message, "250 ..."
	Status      string // the reply's enhanced status code (RFC 3463), "" if none
}

// reportRelayed sends the "relayed" DSN owed for those of accepted that asked
// NOTIFY=SUCCESS and went to a server without DSN (Hop.NoDSN).
func (r *Runner) reportRelayed(ctx context.Context, env *Envelope, hops []Hop, accepted []string, log *slog.Logger) {
	rn, ok := r.Bouncer.(RelayNotifier)
	if !ok || env.From == "" || len(env.Notify) == 0 {
		return
	}
	var out []RelayedRecipient
	for _, rcpt := range accepted {
		i := slices.Index(env.To, rcpt)
		if i < 0 || i >= len(env.Notify) || !notifyWants(env.Notify[i], "SUCCESS") {
			continue
		}
		h, ok := hopOf(hops, rcpt)
		if !ok || !h.NoDSN {
			continue
		}
		rr := RelayedRecipient{Rcpt: rcpt, RemoteMTA: h.Host}
		if i < len(env.ORcpt) {
			rr.ORcpt = env.ORcpt[i]
		}
		if h.Reply != nil {
			rr.Reply = h.Reply.String()
			rr.Status, _ = h.Reply.EnhancedCode()
		}
		out = append(out, rr)
	}
	if len(out) == 0 {
		return
	}
	if err := rn.Relayed(ctx, env, out); err != nil {
		log.Error("relay: relayed DSN not queued", "error", err)
	}
}

// hopOf returns the last Hop reported for rcpt.
func hopOf(hops []Hop, rcpt string) (Hop, bool) {
	for i := len(hops) - 1; i >= 0; i-- {
		if slices.Contains(hops[i].Rcpts, rcpt) {
			return hops[i], true
		}
	}
	return Hop{}, false
}

// DSN values of FailedRecipient.DSN other than a queue id.
const (
	DSNNotRequested = "not requested"           // NOTIFY did not ask for it
	DSNNullSender   = "none to the null sender" // RFC 5321 §4.5.5: never a DSN to <>
)

// report hands the recipients given up on in this attempt to the Bouncer and,
// for a deferral (temp != nil), sends the delay warning when due. It runs in
// settle before the envelope is written, so what it records is kept.
func (r *Runner) report(ctx context.Context, env *Envelope, hops []Hop, temp error, now time.Time, log *slog.Logger) {
	failed := env.bounce
	env.bounce = nil
	if len(failed) > 0 {
		first := len(env.Failed) - len(failed)
		for i := first; i < len(env.Failed); i++ {
			if f := &env.Failed[i]; f.RemoteMTA == "" {
				f.RemoteMTA = hopHost(hops, f.Rcpt)
			}
		}
		if r.Bouncer != nil {
			if err := r.Bouncer.Bounce(ctx, env, failed); err != nil {
				log.Error("relay: DSN not queued; the failure is recorded in failed/", "error", err)
				for i := first; i < len(env.Failed); i++ {
					if env.Failed[i].DSN == "" {
						env.Failed[i].DSN = "not queued: " + err.Error()
					}
				}
			}
		}
	}
	if temp == nil || r.DelayWarning <= 0 || !env.DelayWarned.IsZero() || now.Sub(env.ReceivedAt) < r.DelayWarning {
		return
	}
	dn, ok := r.Bouncer.(DelayNotifier)
	if !ok {
		return
	}
	env.DelayWarned = now // once per message, whatever comes of it
	if err := dn.Delayed(ctx, env, temp); err != nil {
		log.Error("relay: delay warning not queued", "error", err)
	}
}

// hopHost returns the server rcpt went to in this attempt, "" if unknown.
func hopHost(hops []Hop, rcpt string) string {
	h, _ := hopOf(hops, rcpt)
	return h.Host
}

// failureDetail returns what a DSN says about a failure: the enhanced status
// code (RFC 3463) and the server's reply, "" when no server replied. The
// server's own enhanced code is used when it gave one of the right class;
// otherwise one is derived: X.0.0 from the reply code, 4.4.7 (delivery time
// expired) for a temporary failure without a reply, 5.6.7 for a message that
// needs SMTPUTF8 at a next hop without it, 5.0.0 for our other own refusals.
func failureDetail(err error) (status, reply string) {
	var re *smtpclient.ReplyError
	if errors.As(err, &re) {
		code, _ := re.EnhancedCode()
		reply = fmt.Sprintf("%d %s", re.Code, strings.ReplaceAll(re.Message, "\n", " "))
		if code == "" {
			code = fmt.Sprintf("%d.0.0", re.Code/100)
			if re.Code/100 != 4 && re.Code/100 != 5 {
				code = "5.5.0" // an unexpected reply: a protocol error
			}
		}
		return code, reply
	}
	if errors.Is(err, smtpclient.ErrNoSMTPUTF8) {
		// RFC 6531 §3.5, RFC 3463 X.6.7: non-ASCII addresses not permitted
		// (the next hop does not offer SMTPUTF8, and there is no downgrade).
		return "5.6.7", ""
	}
	if IsPermanent(err) {
		return "5.0.0", ""
	}
	return "4.4.7", ""
}

// recipientErr returns rcpt's own failure when err holds a RecipientsError
// that has one (a message given up on after MaxAge carries the last attempt's),
// else err.
func recipientErr(err error, rcpt string) error {
	var rerr *RecipientsError
	if errors.As(err, &rerr) {
		for _, f := range rerr.Failed {
			if f.Rcpt == rcpt {
				return f.Err
			}
		}
	}
	return err
}

// notifyWants reports whether a recipient's NOTIFY value asks for a DSN of
// the given kind ("FAILURE", "DELAY", "SUCCESS"). Without NOTIFY, failures
// and delays are reported (RFC 3461 §4.1: NOTIFY=FAILURE or FAILURE,DELAY).
func notifyWants(notify, kind string) bool {
	if notify == "" {
		return kind == "FAILURE" || kind == "DELAY"
	}
	for _, v := range strings.Split(notify, ",") {
		if strings.EqualFold(strings.TrimSpace(v), kind) {
			return true
		}
	}
	return false
}
