package relay

import (
	"sync"
	"sync/atomic"
)

// The Runner's backlog gauge: how many messages are due for delivery now and
// wait for a worker, for the submission side's flow control (which delays the
// next message while the gauge is over its threshold, as Postfix's
// in_flow_delay does). Reading it is one atomic load, cheap enough for every
// MAIL command; the Runner sets it once per turn of its loop.
//
// Only messages never attempted count (committed, recovered at start or
// requeued by an admin, and not yet taken by a worker): a deferred message
// waits for its retry time, not for delivery capacity, and a retry coming due
// is not new intake to slow down.

// backlogGauge holds the count and wakes waiters when it falls.
type backlogGauge struct {
	n atomic.Int64

	mu   sync.Mutex
	fell chan struct{} // closed when n falls; nil while nobody waits
}

// set stores n, waking those waiting in changed when it is lower than before.
func (g *backlogGauge) set(n int) {
	if old := g.n.Swap(int64(n)); int64(n) >= old {
		return
	}
	g.mu.Lock()
	if g.fell != nil {
		close(g.fell)
		g.fell = nil
	}
	g.mu.Unlock()
}

// changed returns a channel closed the next time the count falls. Read the
// count after calling it, so that a fall in between is not missed.
func (g *backlogGauge) changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fell == nil {
		g.fell = make(chan struct{})
	}
	return g.fell
}

// Backlog returns the number of messages due for delivery that no worker has
// taken yet: accepted (or recovered, or requeued) and never attempted. It is 0
// while the workers keep up, and before Run starts and after it returns.
// Deferred messages do not count. Safe for concurrent use; see BacklogFell.
func (r *Runner) Backlog() int { return int(r.backlog.n.Load()) }

// BacklogFell returns a channel that is closed the next time Backlog falls
// (a worker took a message). Call it before reading Backlog, so that a fall
// in between closes the channel already returned.
func (r *Runner) BacklogFell() <-chan struct{} { return r.backlog.changed() }
