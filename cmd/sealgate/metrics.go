package main

import (
	"sealgate/internal/metrics"
	"sealgate/relay"
	"sealgate/submit"
)

// The adapters between package metrics, which imports no top-level package, and what it
// counts: submit's refusals, relay's delivery attempts and its spool.

// newMetrics makes the metrics with a series for each of submit's reason codes.
func newMetrics() *metrics.Metrics {
	all := make([]string, len(submit.AllReasons))
	for i, r := range submit.AllReasons {
		all[i] = string(r)
	}
	return metrics.New(metrics.Reasons{All: all,
		AuthFailed: string(submit.ReasonAuthFailed), AuthThrottled: string(submit.ReasonAuthThrottled)})
}

// submitMetrics is the metrics as a submit.Metrics.
type submitMetrics struct{ *metrics.Metrics }

func (m submitMetrics) Refused(r submit.Reason) { m.Metrics.Refused(string(r)) }

var _ submit.Metrics = submitMetrics{}

// countAttempts returns a relay.Runner.OnAttempt that counts each attempt in m, then calls
// next (when not nil).
func countAttempts(m *metrics.Metrics, next func(relay.AttemptEvent)) func(relay.AttemptEvent) {
	return func(ev relay.AttemptEvent) {
		m.Attempt(metrics.Attempt{Status: ev.Status, Sent: ev.Status == relay.StatusSent,
			Host: ev.Host, TLSVersion: ev.TLSVersion, Delay: ev.Delay})
		if next != nil {
			next(ev)
		}
	}
}

// spoolQueue is the spool as the metrics.Queue read at each scrape.
type spoolQueue struct{ *relay.Spool }

func (q spoolQueue) Entry(id string) (metrics.QueueEntry, error) {
	env, err := q.Envelope(id)
	if err != nil {
		return metrics.QueueEntry{}, err
	}
	return metrics.QueueEntry{Attempts: env.Attempts, ReceivedAt: env.ReceivedAt}, nil
}
