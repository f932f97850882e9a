package relay

// The queue commands of the control socket (runner_control.go): what "sealgate queue"
// asks a running relay. Every change runs inside the Runner's loop (Runner.do),
// which is the one place that knows what is being delivered, so a message is
// never deleted or requeued under a delivery in progress.

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"sealgate/internal/atomicfile"
)

// Message states in QueueEntry.State.
const (
	StateQueued   = "queued"   // waiting for its first attempt
	StateDeferred = "deferred" // failed temporarily, waiting for its next attempt
	StateActive   = "active"   // being delivered now
	StateFailed   = "failed"   // given up on, kept in failed/
)

// QueueEntry is one message as "queue list" shows it.
type QueueEntry struct {
	ID          string    `json:"id"`
	State       string    `json:"state"`
	From        string    `json:"from"`
	To          []string  `json:"to"`               // still to be delivered
	Failed      []string  `json:"failed,omitempty"` // given up on
	Identity    string    `json:"identity"`
	Size        int64     `json:"size"`
	ReceivedAt  time.Time `json:"received_at"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// QueueMessage is one message as "queue show" shows it: its entry, the whole
// envelope (per-recipient state, DSN parameters) and its header block.
type QueueMessage struct {
	QueueEntry
	Envelope *Envelope `json:"envelope"`
	Header   string    `json:"header"`
}

// QueueStats is what "queue stats" shows.
type QueueStats struct {
	Total   int            `json:"total"`
	ByState map[string]int `json:"by_state"`
	// ByDomain counts the recipients still to be delivered (queued, deferred
	// or active) by destination domain.
	ByDomain map[string]int `json:"by_domain"`
	Oldest   time.Time      `json:"oldest,omitzero"` // acceptance of the oldest message not failed
	// OldestAgeSeconds is the age of Oldest when the stats were taken.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// QueueIDArgs are the arguments of the commands on one message.
type QueueIDArgs struct {
	ID  string `json:"id,omitempty"`
	All bool   `json:"all,omitempty"` // queue.retry only
}

// QueueChange is what a changing command did.
type QueueChange struct {
	IDs     []string      `json:"ids"`
	Removed []*QueueEntry `json:"removed,omitempty"` // queue.delete
}

// runState is the Run loop's view of the queue, lent to control requests.
type runState struct {
	q        *schedule
	inflight map[string]bool
}

func (r *Runner) controlChan() chan func(*runState) {
	r.ctlOnce.Do(func() { r.ctl = make(chan func(*runState)) })
	return r.ctl
}

// do runs fn inside the Run loop and waits for it.
func (r *Runner) do(ctx context.Context, fn func(*runState) error) error {
	var err error
	ran := make(chan struct{})
	select {
	case r.controlChan() <- func(st *runState) { err = fn(st); close(ran) }:
	case <-ctx.Done():
		return errors.New("the delivery runner is not taking requests (starting or stopping); try again")
	}
	<-ran
	return err
}

// serveControl starts serving r.Control, if set, until ctx is done; the
// function returned waits for it to have removed its socket.
func (r *Runner) serveControl(ctx context.Context, log *slog.Logger) (wait func()) {
	if r.Control == nil {
		return func() {}
	}
	r.RegisterQueue(r.Control)
	ln, err := r.Control.Listen()
	if err != nil {
		log.Error("relay: no control socket; the queue commands will not reach this process", "error", err)
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Control.ServeListener(ctx, ln); err != nil {
			log.Error("relay: control socket", "error", err)
		}
	}()
	return func() { <-done }
}

// finish ends Run: deliveries in flight get DrainTimeout to end, then are
// cancelled (they will be retried, see settle), and Run waits for them.
func (r *Runner) finish(wg *sync.WaitGroup, cancel context.CancelFunc, inflight int, log *slog.Logger) {
	if inflight > 0 && r.DrainTimeout > 0 {
		log.Info("shutdown: letting deliveries in flight finish", "in_flight", inflight, "deadline", r.DrainTimeout)
		ended := make(chan struct{})
		go func() { wg.Wait(); close(ended) }()
		t := time.NewTimer(r.DrainTimeout)
		select {
		case <-ended:
		case <-t.C:
			log.Warn("shutdown: cancelling deliveries still in flight; they stay queued and will be retried")
		}
		t.Stop()
	}
	cancel()
	wg.Wait()
}

// RegisterQueue registers the queue commands on c: queue.list, queue.show,
// queue.retry, queue.delete, queue.requeue and queue.stats, served by r
// while it runs.
func (r *Runner) RegisterQueue(c *ControlServer) {
	// Reading commands take a snapshot of the schedule in the loop and read
	// the spool outside it, so a long queue does not hold up deliveries.
	c.Handle("queue.list", func(ctx context.Context, _ json.RawMessage) (any, error) {
		st, err := r.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		return r.Spool.entries(st)
	})
	c.Handle("queue.stats", func(ctx context.Context, _ json.RawMessage) (any, error) {
		st, err := r.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		entries, err := r.Spool.entries(st)
		if err != nil {
			return nil, err
		}
		return queueStats(entries, time.Now()), nil
	})
	c.Handle("queue.show", func(ctx context.Context, raw json.RawMessage) (any, error) {
		a, err := idArgs(raw)
		if err != nil {
			return nil, err
		}
		st, err := r.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		return r.Spool.show(st, a.ID)
	})
	c.Handle("queue.retry", func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a QueueIDArgs
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &a); err != nil {
				return nil, fmt.Errorf("bad arguments: %v", err)
			}
		}
		if a.All == (a.ID != "") {
			return nil, errors.New("queue.retry: give a queue id or all, not both")
		}
		if !a.All {
			if err := checkID(a.ID); err != nil {
				return nil, err
			}
		}
		out := &QueueChange{IDs: []string{}}
		err := r.do(ctx, func(st *runState) error {
			now := time.Now()
			if a.All {
				for id := range st.q.index {
					st.q.set(id, now)
					out.IDs = append(out.IDs, id)
				}
				sort.Strings(out.IDs)
				return nil
			}
			switch {
			case st.inflight[a.ID]:
				return fmt.Errorf("%s is being delivered now", a.ID)
			case st.q.has(a.ID):
				st.q.set(a.ID, now)
				out.IDs = append(out.IDs, a.ID)
				return nil
			}
			if _, err := os.Stat(r.Spool.path(dirFailed, a.ID, extMsg)); err == nil {
				return fmt.Errorf("%s is in failed/: use requeue to deliver it again", a.ID)
			}
			return fmt.Errorf("no message %s in the queue", a.ID)
		})
		return out, err
	})
	c.Handle("queue.delete", func(ctx context.Context, raw json.RawMessage) (any, error) {
		a, err := idArgs(raw)
		if err != nil {
			return nil, err
		}
		out := &QueueChange{}
		err = r.do(ctx, func(st *runState) error {
			if st.inflight[a.ID] {
				return fmt.Errorf("%s is being delivered now; try again when the attempt has ended", a.ID)
			}
			m, err := r.Spool.show(st, a.ID)
			if err != nil {
				return err
			}
			if m.State == StateFailed {
				err = r.Spool.removeFailed(a.ID)
			} else {
				err = r.Spool.Remove(a.ID)
			}
			if err != nil {
				return err
			}
			st.q.remove(a.ID)
			out.IDs = []string{a.ID}
			out.Removed = []*QueueEntry{&m.QueueEntry}
			r.logger().Warn("message deleted by an admin (queue delete)", "queue_id", a.ID, "state", m.State,
				"from", m.From, "rcpts", len(m.To)+len(m.Failed))
			return nil
		})
		return out, err
	})
	c.Handle("queue.requeue", func(ctx context.Context, raw json.RawMessage) (any, error) {
		a, err := idArgs(raw)
		if err != nil {
			return nil, err
		}
		out := &QueueChange{}
		err = r.do(ctx, func(st *runState) error {
			env, err := r.Spool.requeue(a.ID, time.Now())
			if err != nil {
				return err
			}
			st.q.set(a.ID, time.Time{})
			out.IDs = []string{a.ID}
			r.logger().Warn("failed message requeued by an admin (queue requeue)", "queue_id", a.ID, "rcpts", len(env.To))
			return nil
		})
		return out, err
	})
}

// snapshot copies the Run loop's schedule and deliveries in flight.
func (r *Runner) snapshot(ctx context.Context) (*runState, error) {
	snap := &runState{q: &schedule{index: map[string]*scheduled{}}, inflight: map[string]bool{}}
	err := r.do(ctx, func(st *runState) error {
		for id := range st.inflight {
			snap.inflight[id] = true
		}
		for id, it := range st.q.index {
			snap.q.index[id] = &scheduled{id: id, due: it.due}
		}
		return nil
	})
	return snap, err
}

// remove drops id from the schedule, if it is there.
func (q *schedule) remove(id string) {
	if it := q.index[id]; it != nil {
		heap.Remove(q, it.pos)
		delete(q.index, id)
		q.count(it, -1)
	}
}

func idArgs(raw json.RawMessage) (QueueIDArgs, error) {
	var a QueueIDArgs
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a); err != nil {
			return a, fmt.Errorf("bad arguments: %v", err)
		}
	}
	if a.ID == "" {
		return a, errors.New("a queue id is required")
	}
	return a, checkID(a.ID)
}

// entry makes the QueueEntry of env in state.
func entry(env *Envelope, state string) QueueEntry {
	e := QueueEntry{ID: env.ID, State: state, From: env.From, To: slices.Clone(env.To), Identity: env.Identity,
		Size: env.Size, ReceivedAt: env.ReceivedAt, Attempts: env.Attempts, LastError: env.LastError}
	if state != StateFailed && state != StateActive {
		e.NextAttempt = env.NextAttempt
	}
	for _, f := range env.Failed {
		e.Failed = append(e.Failed, f.Rcpt)
	}
	if e.To == nil {
		e.To = []string{}
	}
	return e
}

func stateOf(env *Envelope, st *runState) string {
	switch {
	case st != nil && st.inflight[env.ID]:
		return StateActive
	case env.Attempts > 0:
		return StateDeferred
	}
	return StateQueued
}

// entries lists the queued messages, then those in failed/, oldest first.
func (s *Spool) entries(st *runState) ([]QueueEntry, error) {
	out := []QueueEntry{}
	ids, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		env, err := s.Envelope(id)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		e := entry(env, stateOf(env, st))
		if st != nil && st.q.has(id) {
			e.NextAttempt = st.q.index[id].due
		}
		out = append(out, e)
	}
	failed, err := s.listFailed()
	if err != nil {
		return nil, err
	}
	queued := make(map[string]bool, len(ids))
	for _, id := range ids {
		queued[id] = true
	}
	for _, id := range failed {
		if queued[id] {
			continue // being moved to failed/ (or back): listed as queued until done
		}
		m, err := s.readMessage(dirFailed, id, false)
		if err != nil {
			continue // moved or damaged meanwhile; OpenSpool deals with damage
		}
		out = append(out, entry(m.env, StateFailed))
	}
	return out, nil
}

// show returns message id, queued or failed.
func (s *Spool) show(st *runState, id string) (*QueueMessage, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var header []byte
	var env *Envelope
	state := ""
	if _, m, found, err := s.journal.get(id); found {
		if err != nil {
			return nil, err
		}
		env, header = m.env, m.header
		state = stateOf(env, st)
	} else if m, err := s.readMessage(dirMsg, id, false); err == nil {
		env, header = m.env, m.header
		state = stateOf(env, st)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	} else if m, err := s.readMessage(dirFailed, id, false); err == nil {
		env, header, state = m.env, m.header, StateFailed
	} else if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no message %s in the queue or in failed/", id)
	} else {
		return nil, err
	}
	e := entry(env, state)
	if st != nil && st.q.has(id) {
		e.NextAttempt = st.q.index[id].due
	}
	return &QueueMessage{QueueEntry: e, Envelope: env, Header: string(header)}, nil
}

func queueStats(entries []QueueEntry, now time.Time) *QueueStats {
	st := &QueueStats{Total: len(entries), ByState: map[string]int{}, ByDomain: map[string]int{}}
	for _, e := range entries {
		st.ByState[e.State]++
		if e.State == StateFailed {
			continue
		}
		for _, rcpt := range e.To {
			st.ByDomain[domainOf(rcpt)]++
		}
		if st.Oldest.IsZero() || e.ReceivedAt.Before(st.Oldest) {
			st.Oldest = e.ReceivedAt
		}
	}
	if !st.Oldest.IsZero() {
		st.OldestAgeSeconds = now.Sub(st.Oldest).Seconds()
	}
	return st
}

// listFailed returns the ids of the messages in failed/, oldest first.
func (s *Spool) listFailed() ([]string, error) {
	d := filepath.Join(s.dir, dirFailed)
	entries, err := os.ReadDir(d)
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", d, err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), extMsg); ok && validID(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// removeFailed deletes message id from failed/: the .msg, then its .env, then
// a directory fsync.
func (s *Spool) removeFailed(id string) error {
	for _, ext := range []string{extMsg, extEnv} {
		p := s.path(dirFailed, id, ext)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: remove %s: %w", p, err)
		}
	}
	return s.fail.sync()
}

// requeue brings message id back from failed/ to the queue, to be delivered
// to the recipients that failed, as if accepted now (RequeuedAt; attempts and
// the delay warning start over). Order: the message written anew, with its
// new envelope, to msg/<id>.msg (temporary file, fsync, rename, msg/ fsync);
// only then its failed/ files removed (and failed/ fsynced). A crash in
// between leaves it both queued and in failed/; requeue again finishes the
// removal.
func (s *Spool) requeue(id string, now time.Time) (*Envelope, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.path(dirMsg, id, extMsg)); err == nil {
		if _, ferr := os.Stat(s.path(dirFailed, id, extMsg)); ferr == nil {
			// An interrupted requeue: the queued copy is complete.
			env, err := s.Envelope(id)
			if err != nil {
				return nil, err
			}
			return env, s.removeFailed(id)
		}
		return nil, fmt.Errorf("%s is queued, not failed", id)
	}
	if _, ok := s.journal.lookup(id); ok {
		return nil, fmt.Errorf("%s is queued, not failed", id)
	}
	m, err := s.readMessage(dirFailed, id, true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no message %s in failed/", id)
	}
	if err != nil {
		return nil, err
	}
	defer m.f.Close()
	old := m.env
	if len(old.Failed) == 0 && len(old.To) == 0 {
		return nil, fmt.Errorf("%s has no recipients left to deliver to", id)
	}
	// Everything of the envelope as accepted is kept; the delivery state starts over.
	env := new(Envelope)
	*env = *old
	env.Failed, env.Attempts, env.NextAttempt, env.LastError = nil, 0, time.Time{}, ""
	env.DelayWarned, env.RequeuedAt = time.Time{}, now
	env.Notify, env.ORcpt = nil, nil
	// Still-pending recipients (a message failed/ by an older version) and the failed ones.
	notify := slices.Clone(old.Notify)
	orcpt := slices.Clone(old.ORcpt)
	env.To = slices.Clone(old.To)
	for len(notify) < len(env.To) {
		notify = append(notify, "")
	}
	for len(orcpt) < len(env.To) {
		orcpt = append(orcpt, "")
	}
	for _, f := range old.Failed {
		env.To = append(env.To, f.Rcpt)
		notify = append(notify, f.Notify)
		orcpt = append(orcpt, f.ORcpt)
	}
	if slices.ContainsFunc(notify, func(v string) bool { return v != "" }) {
		env.Notify = notify
	}
	if slices.ContainsFunc(orcpt, func(v string) bool { return v != "" }) {
		env.ORcpt = orcpt
	}
	tail, err := appendTail(nil, kindMsg, m.t.bodyLen, m.header, env)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	err = atomicfile.WriteFunc(s.path(dirMsg, id, extMsg), s.tmpOptions(), func(w io.Writer) error {
		_, err := io.Copy(w, io.MultiReader(io.NewSectionReader(m.f, 0, m.t.bodyLen), bytes.NewReader(tail)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("spool: requeue %s: %w", id, err)
	}
	if err := s.msgDir.sync(); err != nil {
		return nil, err
	}
	return env, s.removeFailed(id)
}
