package relay

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Deliverer hands one queued message to its destination. msg is the full message
// (header block, blank line, body) as committed. A nil error means every
// recipient in env.To was accepted. Otherwise the error is one of:
//   - *RecipientsError: some recipients failed (each permanently or temporarily),
//     the others, listed as accepted, were delivered;
//   - *PermanentError (anywhere in the chain): retrying will not help;
//   - anything else: a temporary failure of the whole message, retried later.
type Deliverer interface {
	Deliver(ctx context.Context, env *Envelope, msg io.Reader) error
}

// PermanentError marks a failure that retrying will not fix: a 5yz reply
// (RFC 5321 §4.2.1) or a message we refuse to send.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err has a *PermanentError in its chain.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RecipientsError reports a transaction in which some recipients failed.
type RecipientsError struct {
	Accepted []string         // delivered
	Failed   []RecipientError // not delivered; see RecipientError.Err
}

// RecipientError is the failure of one recipient; Err is a *PermanentError when
// the failure is permanent.
type RecipientError struct {
	Rcpt string
	Err  error
}

func (e *RecipientsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d recipients failed:", len(e.Failed), len(e.Failed)+len(e.Accepted))
	for i, f := range e.Failed {
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, " <%s>: %v", f.Rcpt, f.Err)
	}
	return b.String()
}

// Default Runner settings.
var (
	// DefaultBackoff is the delay before retry n (the last entry repeats): 1m,
	// 5m, 15m, 30m, 1h, then every 2h until MaxAge.
	DefaultBackoff = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}
)

// Defaults for the Runner fields of the same names.
const (
	// DefaultMaxAge is how long temporary failures are retried; RFC 5321
	// §4.5.4.1 suggests giving up after 4-5 days.
	DefaultMaxAge = 5 * 24 * time.Hour
	// DefaultWorkers is how many messages are delivered at once. Each worker
	// spends most of an attempt waiting (on the next hop's replies, and on the
	// spool's grouped sync that makes its removal durable), so more workers
	// than cores pay: on 2 cores, delivering to a local sink, 4 drained about
	// 1500 msg/s, 16 about 2300 and 32 about 2700.
	DefaultWorkers        = 32
	DefaultPollInterval   = time.Minute
	DefaultAttemptTimeout = 10 * time.Minute
	// DefaultDrainTimeout is a Runner.DrainTimeout for serve: deliveries in
	// flight at SIGTERM get this long to finish, well inside a service
	// manager's stop timeout (systemd's default is 90 s).
	DefaultDrainTimeout = 20 * time.Second
)

// Runner delivers what the Spool holds: it picks up committed messages (woken
// by Spool.Notify, with a periodic rescan as fallback), runs at most Workers
// deliveries at once, removes a message once delivered, and reschedules
// temporary failures with Backoff. A message that fails permanently, or that
// is still failing after MaxAge, is moved to the spool's failed/ directory with
// the failed recipients recorded. The Bouncer (DSNSender) tells the sender with
// a delivery status notification (RFC 3464); without one, a "bounce needed"
// event is logged. failed/ is where an admin finds what was not delivered,
// with why. Nothing is dropped silently.
type Runner struct {
	Spool     *Spool
	Deliverer Deliverer
	Logger    *slog.Logger // default slog.Default()

	Workers        int             // concurrent deliveries; default DefaultWorkers
	Backoff        []time.Duration // default DefaultBackoff
	MaxAge         time.Duration   // default DefaultMaxAge
	PollInterval   time.Duration   // fallback rescan of the spool; default DefaultPollInterval
	AttemptTimeout time.Duration   // per delivery attempt; default DefaultAttemptTimeout

	// OnAttempt, when set, is called with each AttemptEvent after its log line
	// (for metrics), from the worker that made the attempt.
	OnAttempt func(AttemptEvent)

	// Bouncer, when set, sends delivery status notifications (RFC 3464) for
	// the recipients given up on (DSNSender); without one they are only
	// recorded in failed/ and logged as "bounce needed".
	Bouncer Bouncer
	// DrainTimeout is how long deliveries in flight may go on once Run's
	// context is done (SIGTERM) before they are cancelled; 0 cancels them at
	// once. See DefaultDrainTimeout.
	DrainTimeout time.Duration

	// Control, when set, is the control socket Run serves while it runs,
	// with the queue commands (RegisterQueue) added to its handlers.
	Control *ControlServer

	ctlOnce sync.Once
	ctl     chan func(*runState) // control requests run in Run's loop (queue_control.go)

	// DelayWarning, when positive and the Bouncer is a DelayNotifier, sends
	// one delay warning for a message still being retried this long after
	// acceptance.
	DelayWarning time.Duration

	backlog backlogGauge // Backlog (runner_backlog.go)
}

type attemptResult struct {
	id   string
	next time.Time // zero: the message left the queue
}

// Run delivers until ctx is done, then starts no more deliveries, lets those
// in flight finish for up to DrainTimeout, cancels those left, waits for them
// to end and returns nil. An interrupted delivery is retried at the next start,
// without counting as an attempt. While it runs, Run also serves the queue
// commands of the control socket (ControlServer, RegisterQueue).
func (r *Runner) Run(ctx context.Context) error {
	if r.Spool == nil || r.Deliverer == nil {
		return errors.New("relay: Runner needs a Spool and a Deliverer")
	}
	log := r.logger()
	workers := cmpOr(r.Workers, DefaultWorkers)
	poll := cmpOr(r.PollInterval, DefaultPollInterval)

	q := &schedule{index: map[string]*scheduled{}}
	inflight := map[string]bool{}
	done := make(chan attemptResult, workers) // never blocks a worker: at most workers in flight
	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	defer timer.Stop()
	// Attempts run under their own context, cancelled only when the drain
	// deadline passes (finish).
	actx, cancelAttempts := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelAttempts()
	// The workers live as long as Run: a goroutine per attempt would grow a new
	// stack for each (reading the envelope, SMTP, logging), a measurable share
	// of delivery's CPU. jobs never blocks: at most workers ids are in flight.
	jobs := make(chan string, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				done <- attemptResult{id: id, next: r.attempt(actx, id, log)}
			}
		}()
	}
	finish := func() {
		close(jobs)
		r.finish(&wg, cancelAttempts, len(inflight), log)
	}
	ctl := r.controlChan()
	defer r.serveControl(ctx, log)()

	var lastScan time.Time
	rescan := true
	// A stopped Runner drains nothing: nobody is to wait for it.
	defer r.backlog.set(0)
	for {
		// The select below picks at random among ready cases: an attempt that
		// ended because ctx was cancelled may be seen before ctx.Done. Start
		// nothing more once ctx is done.
		if ctx.Err() != nil {
			finish()
			return nil
		}
		if rescan {
			r.scan(q, inflight, log)
			lastScan, rescan = time.Now(), false
		}
		now := time.Now()
		for len(inflight) < workers {
			id, ok := q.popDue(now)
			if !ok {
				break
			}
			inflight[id] = true
			jobs <- id
		}
		r.backlog.set(q.fresh)

		wake := lastScan.Add(poll)
		if t, ok := q.peek(); ok && len(inflight) < workers && t.Before(wake) {
			wake = t
		}
		timer.Reset(time.Until(wake))

		select {
		case <-ctx.Done():
			finish()
			return nil
		case fn := <-ctl:
			fn(&runState{q: q, inflight: inflight})
		case <-r.Spool.Notify():
			for _, id := range r.Spool.takeCommitted() {
				if !inflight[id] {
					q.set(id, time.Time{})
				}
			}
		case res := <-done:
			delete(inflight, res.id)
			if !res.next.IsZero() {
				q.set(res.id, res.next)
			}
		case <-timer.C:
			rescan = !time.Now().Before(lastScan.Add(poll))
		}
	}
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// scan brings the schedule in line with the spool: new ids are read, ids gone
// from the spool are forgotten.
func (r *Runner) scan(q *schedule, inflight map[string]bool, log *slog.Logger) {
	ids, err := r.Spool.List()
	if err != nil {
		log.Error("relay: list spool", "error", err)
		return
	}
	present := make(map[string]bool, len(ids))
	for _, id := range ids {
		present[id] = true
		if inflight[id] || q.has(id) {
			continue
		}
		env, err := r.Spool.Envelope(id)
		if errors.Is(err, fs.ErrNotExist) {
			continue // delivered or failed meanwhile
		}
		if err != nil {
			// Keep it queued and retry; an admin sees the log.
			log.Error("relay: read queued message", "queue_id", id, "error", err)
			q.set(id, time.Now().Add(cmpOr(r.PollInterval, DefaultPollInterval)))
			continue
		}
		q.set(id, env.NextAttempt)
	}
	q.retain(present)
}

// attempt delivers one message and settles the outcome; it returns when the
// message is due again, or zero if it left the queue.
func (r *Runner) attempt(ctx context.Context, id string, log *slog.Logger) time.Time {
	log = log.With("queue_id", id)
	env, msg, err := r.Spool.Open(id)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}
	}
	if err != nil {
		log.Error("relay: open queued message", "error", err)
		return time.Now().Add(r.backoff(1))
	}
	log = log.With("identity", env.Identity)
	dctx, cancel := context.WithTimeout(ctx, cmpOr(r.AttemptTimeout, DefaultAttemptTimeout))
	dctx, hops := withHopRecorder(dctx)
	err = r.Deliverer.Deliver(dctx, env, msg)
	cancel()
	msg.Close()
	return r.settle(ctx, env, hops.list(), err, log)
}

// settle records the outcome of a delivery attempt in the spool, and logs one
// "delivery attempt" line per AttemptEvent (hops say where each recipient went).
func (r *Runner) settle(ctx context.Context, env *Envelope, hops []Hop, err error, log *slog.Logger) time.Time {
	now := time.Now()
	if err != nil && ctx.Err() != nil {
		log.Info("delivery interrupted by shutdown; will retry", "error", err)
		return now
	}
	// What each recipient of this attempt came to, for the attempt's events.
	rcpts := slices.Clone(env.To)
	attempt := env.Attempts + 1
	outcomes := make(map[string]outcome, len(rcpts))
	tempStatus, next := StatusDeferred, time.Time{}
	defer func() {
		for rcpt, o := range outcomes {
			if o.status == StatusDeferred {
				o.status = tempStatus
				outcomes[rcpt] = o
			}
		}
		for _, ev := range attemptEvents(env, rcpts, hops, outcomes, attempt, next, now) {
			logAttempt(log, ev)
			if r.OnAttempt != nil {
				r.OnAttempt(ev)
			}
		}
	}()
	for _, rcpt := range rcpts {
		switch {
		case err == nil:
			outcomes[rcpt] = outcome{status: StatusSent}
		case IsPermanent(err):
			outcomes[rcpt] = outcome{status: StatusBounced, err: err}
		default:
			outcomes[rcpt] = outcome{status: StatusDeferred, err: err}
		}
	}

	if err == nil {
		r.reportRelayed(ctx, env, hops, env.To, log)
		if rerr := r.Spool.Remove(env.ID); rerr != nil {
			log.Error("relay: delivered but not removed; may be delivered again", "error", rerr)
		}
		return time.Time{}
	}

	temp := err // failure still to retry, nil when none is left
	var rerr *RecipientsError
	switch {
	case errors.As(err, &rerr):
		r.reportRelayed(ctx, env, hops, rerr.Accepted, log)
		accepted := map[string]bool{}
		for _, a := range rerr.Accepted {
			accepted[a] = true
			outcomes[a] = outcome{status: StatusSent}
		}
		permanent := map[string]error{}
		for _, f := range rerr.Failed {
			if IsPermanent(f.Err) {
				permanent[f.Rcpt] = f.Err
				outcomes[f.Rcpt] = outcome{status: StatusBounced, err: f.Err}
			} else {
				outcomes[f.Rcpt] = outcome{status: StatusDeferred, err: f.Err}
			}
		}
		for i := len(env.To) - 1; i >= 0; i-- {
			rcpt := env.To[i]
			if accepted[rcpt] {
				env.removeRecipient(i)
			} else if perr, ok := permanent[rcpt]; ok {
				r.giveUp(env, i, perr, now, log)
			}
		}
	case IsPermanent(err):
		for i := len(env.To) - 1; i >= 0; i-- {
			r.giveUp(env, i, err, now, log)
		}
	}
	if len(env.To) == 0 {
		temp = nil
	}

	if temp != nil {
		env.Attempts++
		env.LastError = temp.Error()
		if now.Sub(env.queuedSince()) < cmpOr(r.MaxAge, DefaultMaxAge) {
			env.NextAttempt = now.Add(r.backoff(env.Attempts))
			r.report(ctx, env, hops, temp, now, log)
			if uerr := r.Spool.Update(env); uerr != nil {
				log.Error("relay: record deferral", "error", uerr)
			}
			next = env.NextAttempt
			return env.NextAttempt
		}
		tempStatus = StatusExpired
		gaveUp := fmt.Errorf("still failing after %d attempts since %s: %w",
			env.Attempts, env.ReceivedAt.Format(time.RFC3339), temp)
		for i := len(env.To) - 1; i >= 0; i-- {
			r.giveUp(env, i, gaveUp, now, log)
		}
	}

	// Every recipient is settled and some failed. The Bouncer reports those
	// given up on now (never to the null sender, RFC 5321 §4.5.5); the envelope
	// in failed/ keeps each failed recipient with what its DSN said.
	r.report(ctx, env, hops, nil, now, log)
	if ferr := r.Spool.Fail(env); ferr != nil {
		log.Error("relay: move failed message to failed/", "error", ferr)
		return now.Add(r.backoff(1)) // still queued; settle again later
	}
	if r.Bouncer == nil {
		log.Error("bounce needed", "from", env.From, "failed_rcpts", len(env.Failed),
			"last_error", env.LastError)
	} else {
		log.Warn("message failed; kept in failed/", "from", env.From, "failed_rcpts", len(env.Failed),
			"last_error", env.LastError)
	}
	return time.Time{}
}

// giveUp moves env.To[i] to env.Failed, and keeps it for the Bouncer (report).
func (r *Runner) giveUp(env *Envelope, i int, err error, now time.Time, log *slog.Logger) {
	f := FailedRecipient{Rcpt: env.To[i], Error: err.Error(), At: now}
	f.Status, f.Reply = failureDetail(recipientErr(err, f.Rcpt))
	env.bounce = append(env.bounce, RecipientError{Rcpt: f.Rcpt, Err: err})
	if len(env.Notify) > i {
		f.Notify = env.Notify[i]
	}
	if len(env.ORcpt) > i {
		f.ORcpt = env.ORcpt[i]
	}
	env.Failed = append(env.Failed, f)
	env.removeRecipient(i)
	env.LastError = err.Error()
	log.Warn("recipient failed", "rcpt", f.Rcpt, "error", err)
}

func (r *Runner) backoff(attempts int) time.Duration {
	b := r.Backoff
	if len(b) == 0 {
		b = DefaultBackoff
	}
	return b[min(max(attempts, 1), len(b))-1]
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// schedule is a min-heap of queued messages by due time, then id (= age).
type schedule struct {
	items []*scheduled
	index map[string]*scheduled
	// fresh counts the items never attempted (due time zero): with the workers
	// all busy, the Runner's backlog (runner_backlog.go).
	fresh int
}

type scheduled struct {
	id  string
	due time.Time
	pos int
}

func (q *schedule) Len() int { return len(q.items) }
func (q *schedule) Less(i, j int) bool {
	a, b := q.items[i], q.items[j]
	if !a.due.Equal(b.due) {
		return a.due.Before(b.due)
	}
	return a.id < b.id
}
func (q *schedule) Swap(i, j int) {
	q.items[i], q.items[j] = q.items[j], q.items[i]
	q.items[i].pos, q.items[j].pos = i, j
}
func (q *schedule) Push(x any) {
	it := x.(*scheduled)
	it.pos = len(q.items)
	q.items = append(q.items, it)
}
func (q *schedule) Pop() any {
	it := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	return it
}

func (q *schedule) has(id string) bool { return q.index[id] != nil }

func (q *schedule) set(id string, due time.Time) {
	if it := q.index[id]; it != nil {
		q.count(it, -1)
		it.due = due
		q.count(it, 1)
		heap.Fix(q, it.pos)
		return
	}
	it := &scheduled{id: id, due: due}
	q.index[id] = it
	q.count(it, 1)
	heap.Push(q, it)
}

// count adds d to fresh if it is a message never attempted.
func (q *schedule) count(it *scheduled, d int) {
	if it.due.IsZero() {
		q.fresh += d
	}
}

func (q *schedule) peek() (time.Time, bool) {
	if len(q.items) == 0 {
		return time.Time{}, false
	}
	return q.items[0].due, true
}

func (q *schedule) popDue(now time.Time) (string, bool) {
	if len(q.items) == 0 || q.items[0].due.After(now) {
		return "", false
	}
	it := heap.Pop(q).(*scheduled)
	delete(q.index, it.id)
	q.count(it, -1)
	return it.id, true
}

func (q *schedule) retain(present map[string]bool) {
	for id, it := range q.index {
		if !present[id] {
			heap.Remove(q, it.pos)
			delete(q.index, id)
			q.count(it, -1)
		}
	}
}
