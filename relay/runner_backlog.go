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

// backlogGauge holds the count and wakes those waiting for it to fall to a
// level, only then: waiters woken at every fall would, many sessions at a time,
// wake for nothing at each message a worker takes.
type backlogGauge struct {
	n       atomic.Int64
	waiting atomic.Bool // len(waits) > 0

	mu    sync.Mutex
	waits map[int]chan struct{} // closed once n <= the key
}

// set stores n, waking those waiting for a level n has fallen to.
func (g *backlogGauge) set(n int) {
	if old := g.n.Swap(int64(n)); int64(n) >= old || !g.waiting.Load() {
		return
	}
	g.mu.Lock()
	for level, ch := range g.waits {
		if n <= level {
			close(ch)
			delete(g.waits, level)
		}
	}
	g.waiting.Store(len(g.waits) > 0)
	g.mu.Unlock()
}

// atMost returns a channel closed once the count is at most level (at once
// if it is already).
func (g *backlogGauge) atMost(level int) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch := g.waits[level]
	if ch == nil {
		ch = make(chan struct{})
		if g.waits == nil {
			g.waits = map[int]chan struct{}{}
		}
		g.waits[level] = ch
		g.waiting.Store(true)
	}
	// Checked after registering, so a set in between is not missed: it either
	// saw the waiter or stored its count before this load.
	if int(g.n.Load()) <= level {
		close(ch)
		delete(g.waits, level)
		g.waiting.Store(len(g.waits) > 0)
	}
	return ch
}

// Backlog returns the number of messages due for delivery that no worker has
// taken yet: accepted (or recovered, or requeued) and never attempted. It is 0
// while the workers keep up, and before Run starts and after it returns.
// Deferred messages do not count. Safe for concurrent use; see BacklogAtMost.
func (r *Runner) Backlog() int { return int(r.backlog.n.Load()) }

// BacklogAtMost returns a channel that is closed once Backlog is at most n:
// at once if it is, else when workers have taken enough messages (or Run has
// returned).
func (r *Runner) BacklogAtMost(n int) <-chan struct{} { return r.backlog.atMost(n) }
