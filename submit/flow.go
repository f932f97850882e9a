package submit

import (
	"context"
	"time"
)

// DeliveryBacklog is how far delivery is behind acceptance: the input of
// FlowControl. relay.Runner is the one for a single node (Backlog and
// BacklogFell); relays sharing a queue would give the sum over their nodes.
type DeliveryBacklog interface {
	// Backlog returns the number of accepted messages due for delivery now
	// that no delivery has taken yet (deferred messages do not count).
	Backlog() int
	// BacklogAtMost returns a channel closed once Backlog is at most n (at
	// once if it already is).
	BacklogAtMost(n int) <-chan struct{}
}

// FlowControl slows intake to what delivery achieves, as Postfix's
// in_flow_delay does: while the delivery backlog is over Threshold, the reply
// to MAIL waits until it is not, for at most Delay. Mail is never refused for
// it, only delayed, so intake above what delivery sustains turns into accept
// latency rather than a queue that grows without bound. Reading the gauge is
// all it costs while delivery keeps up.
type FlowControl struct {
	Backlog DeliveryBacklog
	// Threshold is the backlog above which MAIL waits; 0 means
	// DefaultFlowThreshold.
	Threshold int
	// Delay is the longest wait for one MAIL command; 0 turns flow control off.
	Delay time.Duration
	// After is the clock the wait runs on; nil means time.After.
	After func(time.Duration) <-chan time.Time
}

// DefaultFlowThreshold is FlowControl.Threshold's default: a short queue ahead of
// the delivery workers (about a tenth of a second of a small relay's intake)
// keeps them busy without letting the backlog, or the delay of each message
// in it, grow.
const DefaultFlowThreshold = 100

// Wait returns at once while the backlog is at most the threshold; otherwise it
// waits until it is, until f.Delay has passed or until ctx is done, and
// reports that it waited. A nil f, or one without a gauge or a delay, never
// waits.
func (f *FlowControl) Wait(ctx context.Context) (waited bool) {
	if f == nil || f.Backlog == nil || f.Delay <= 0 {
		return false
	}
	limit := f.Threshold
	if limit <= 0 {
		limit = DefaultFlowThreshold
	}
	if f.Backlog.Backlog() <= limit {
		return false
	}
	after := f.After
	if after == nil {
		after = time.After
	}
	select {
	case <-f.Backlog.BacklogAtMost(limit):
	case <-after(f.Delay):
	case <-ctx.Done():
	}
	return true
}
