package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"sealgate/internal/smtpclient"
)

// Attempt statuses, AttemptEvent.Status.
const (
	StatusSent     = "sent"     // the server took the message for these recipients
	StatusDeferred = "deferred" // temporary failure: retried at AttemptEvent.Next
	StatusBounced  = "bounced"  // permanent failure: given up on
	StatusExpired  = "expired"  // temporary failures for longer than Runner.MaxAge: given up on
)

// AttemptEvent is the outcome of one delivery attempt for one group of
// recipients that went to the same place and got the same answer. The Runner
// logs one line per event ("delivery attempt") and then hands it to
// Runner.OnAttempt: enough to answer "did mail to X go out, and what did the
// receiver say?" from the log alone.
type AttemptEvent struct {
	QueueID  string
	Identity string
	Rcpts    []string
	// Domain is the recipients' domain for delivery to MX hosts; for a smart
	// host, the domain of the first recipient.
	Domain string
	// Host and IP are the server the last connection of the attempt was made
	// to (the MX host name or the next hop's host), "" when none was reached.
	Host, IP string
	// SourceIP is our address on that connection (the source_ip of DMARC
	// aggregate reports, RFC 7489 Appendix C), "" when none was made.
	SourceIP string
	// HeaderFrom and DKIM are the message's header From domain and the
	// signatures we added (Envelope.HeaderFrom, Envelope.DKIM).
	HeaderFrom string
	DKIM       []DKIMSignature
	// TLSVersion is "TLS1.3" and so on, "" without TLS; CertVerified says
	// whether the server's certificate verified for Host.
	TLSVersion   string
	CertVerified bool
	// DANE is what DANE (RFC 7672) made of Host for delivery to MX hosts: DANEVerified, or why
	// not (DANEInsecure, DANENoTLSA, DANEUnusable, DANEFailedPrefix and the reason); "" for a
	// smart host. Logged as dane=.
	DANE string
	// Code, EnhancedCode (RFC 3463) and Text are the server's reply: to the
	// message when sent, else the refusal; without a reply (no connection,
	// a policy refusal of ours) Code is 0 and Text says what failed.
	Code         int
	EnhancedCode string
	Text         string
	Status       string // StatusSent, StatusDeferred, StatusBounced or StatusExpired
	Attempt      int    // 1 for the first attempt
	// Next is when the recipients are tried again (StatusDeferred only).
	Next time.Time
	// Delay is how long the message had been queued at the end of the attempt.
	Delay time.Duration
}

// Hop is what a Deliverer reports, through ReportHop, about one group of
// recipients of an attempt: where it went and how. The per-recipient results
// stay in Deliver's error; a Hop adds the server, its TLS and its reply.
type Hop struct {
	Rcpts  []string
	Domain string
	Host   string // the server's name (MX host or next hop host); "" if none was reached
	IP     string
	// SourceIP is our end of the connection, "" if none was made.
	SourceIP string
	TLS      *smtpclient.TLSInfo // nil without TLS
	Reply    *smtpclient.Reply   // the reply to the message, when it was sent
	DANE     string              // AttemptEvent.DANE
	// NoDSN is set when the server took the message without offering DSN
	// (RFC 3461): recipients that asked NOTIFY=SUCCESS are owed a "relayed"
	// DSN (§6.2.1), which the Runner's Bouncer sends.
	NoDSN bool
}

type hopsKey struct{}

// hopRecorder collects the Hops of one attempt.
type hopRecorder struct {
	mu   sync.Mutex
	hops []Hop
}

func withHopRecorder(ctx context.Context) (context.Context, *hopRecorder) {
	rec := &hopRecorder{}
	return context.WithValue(ctx, hopsKey{}, rec), rec
}

// ReportHop records h for the attempt whose context ctx is (the one the Runner
// passes to Deliver). A recipient reported twice keeps its last Hop. Outside a
// Runner's attempt it does nothing.
func ReportHop(ctx context.Context, h Hop) {
	rec, _ := ctx.Value(hopsKey{}).(*hopRecorder)
	if rec == nil {
		return
	}
	// A copy: Deliverers may pass env.To, which settle edits in place.
	h.Rcpts = slices.Clone(h.Rcpts)
	rec.mu.Lock()
	rec.hops = append(rec.hops, h)
	rec.mu.Unlock()
}

func (rec *hopRecorder) list() []Hop {
	if rec == nil {
		return nil
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.hops
}

// outcome is what settle decided for one recipient.
type outcome struct {
	status string
	err    error // nil when sent
}

// attemptEvents groups the recipients of an attempt by Hop, status and reply,
// one AttemptEvent per group, in the order of rcpts.
func attemptEvents(env *Envelope, rcpts []string, hops []Hop, outcomes map[string]outcome, attempt int, next, now time.Time) []AttemptEvent {
	hopOf := map[string]int{}
	for i, h := range hops {
		for _, r := range h.Rcpts {
			hopOf[r] = i
		}
	}
	type key struct {
		hop    int
		status string
		reply  string
	}
	index := map[key]int{}
	var events []AttemptEvent
	for _, rcpt := range rcpts {
		o, ok := outcomes[rcpt]
		if !ok {
			continue
		}
		h, hasHop := hopOf[rcpt]
		var hop Hop
		if hasHop {
			hop = hops[h]
		} else {
			h = -1
			hop.Domain = domainOf(rcpt)
		}
		ev := AttemptEvent{QueueID: env.ID, Identity: env.Identity, Domain: hop.Domain, Host: hop.Host, IP: hop.IP,
			DANE: hop.DANE, SourceIP: hop.SourceIP, HeaderFrom: env.HeaderFrom, DKIM: env.DKIM,
			Status: o.status, Attempt: attempt, Delay: now.Sub(env.ReceivedAt)}
		if hop.TLS != nil {
			ev.TLSVersion = tls.VersionName(hop.TLS.Version)
			ev.CertVerified = hop.TLS.Verified
		}
		if o.status == StatusDeferred {
			ev.Next = next
		}
		var re *smtpclient.ReplyError
		switch {
		case o.err == nil && hop.Reply != nil:
			ev.Code = hop.Reply.Code
			ev.EnhancedCode, ev.Text = hop.Reply.EnhancedCode()
		case o.err == nil:
		case errors.As(o.err, &re):
			ev.Code = re.Code
			ev.EnhancedCode, ev.Text = re.EnhancedCode()
		default:
			ev.Text = o.err.Error()
		}
		k := key{h, o.status, ev.Text}
		if i, ok := index[k]; ok {
			events[i].Rcpts = append(events[i].Rcpts, rcpt)
			continue
		}
		ev.Rcpts = []string{rcpt}
		index[k] = len(events)
		events = append(events, ev)
	}
	return events
}

// logAttempt writes the one log line of an AttemptEvent.
func logAttempt(log *slog.Logger, ev AttemptEvent) {
	level := slog.LevelInfo
	if ev.Status != StatusSent {
		level = slog.LevelWarn
	}
	attrs := []any{"status", ev.Status, "rcpts", strings.Join(ev.Rcpts, ","), "domain", ev.Domain,
		"host", ev.Host, "ip", ev.IP, "tls", ev.TLSVersion, "cert_verified", ev.CertVerified,
		"code", ev.Code, "enhanced_code", ev.EnhancedCode, "reply", ev.Text,
		"delay", ev.Delay.Round(time.Millisecond), "attempt", ev.Attempt}
	if ev.DANE != "" {
		attrs = append(attrs, "dane", ev.DANE)
	}
	if !ev.Next.IsZero() {
		attrs = append(attrs, "next_attempt", ev.Next.UTC().Format(time.RFC3339))
	}
	log.Log(context.Background(), level, "delivery attempt", attrs...)
}

// domainOf returns the domain of an address, lower-cased; "" when it has none.
func domainOf(rcpt string) string {
	i := strings.LastIndexByte(rcpt, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(rcpt[i+1:])
}
