package metrics

import "github.com/prometheus/client_golang/prometheus"

// WatchCluster exports the node's standing among several behind a load balancer:
// sealgate_shared_counters_up (1 while the shared Redis answers, 0 while the node counts
// on its own; absent without limits.shared) and sealgate_draining (1 while the node
// takes no new sessions). Either function may be nil.
func (m *Metrics) WatchCluster(sharedUp, draining func() bool) {
	gauge := func(name, help string, f func() bool) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if f() {
				return 1
			}
			return 0
		}))
	}
	if sharedUp != nil {
		gauge("sealgate_shared_counters_up", "1 while the shared counters' Redis answers; 0 while this node counts alone.", sharedUp)
	}
	if draining != nil {
		gauge("sealgate_draining", "1 while the node is draining (no new sessions; delivery goes on).", draining)
	}
}
