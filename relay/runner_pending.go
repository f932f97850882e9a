package relay

import (
	"context"
	"time"
)

// Pending is what a draining node still has to deliver now: messages due (never
// attempted, or whose retry time has come) and deliveries in flight. Deferred
// messages whose retry is still ahead are counted apart: they stay in the spool,
// which is this node's own and is delivered when it starts again.
type Pending struct {
	Due      int `json:"due"`
	InFlight int `json:"in_flight"`
	Deferred int `json:"deferred"`
}

// Pending reports what the Run loop holds. It fails when Run is not running.
func (r *Runner) Pending(ctx context.Context) (Pending, error) {
	var p Pending
	now := time.Now()
	err := r.do(ctx, func(st *runState) error {
		p.InFlight = len(st.inflight)
		for _, it := range st.q.items {
			if it.due.After(now) {
				p.Deferred++
			} else {
				p.Due++
			}
		}
		return nil
	})
	return p, err
}
