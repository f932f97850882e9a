package metrics

import "github.com/prometheus/client_golang/prometheus"

// WatchRotations exports sealgate_dkim_rotations{state}: the DKIM key rotations
// (`sealgate keys rotate`) in each state ("pending-publication", "retiring",
// "remove-record"), read from counts at each scrape.
func (m *Metrics) WatchRotations(counts func() map[string]int) {
	m.reg.MustRegister(&rotationCollector{counts: counts})
}

var rotationsDesc = prometheus.NewDesc("sealgate_dkim_rotations",
	"DKIM key rotations by state: pending-publication (the new record is not seen yet), retiring (the old record must stay), remove-record (the old record can go).",
	[]string{"state"}, nil)

// rotationStates are the states always exported, 0 when none is in them.
var rotationStates = []string{"pending-publication", "retiring", "remove-record"}

type rotationCollector struct{ counts func() map[string]int }

func (c *rotationCollector) Describe(ch chan<- *prometheus.Desc) { ch <- rotationsDesc }

func (c *rotationCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.counts()
	for _, s := range rotationStates {
		ch <- prometheus.MustNewConstMetric(rotationsDesc, prometheus.GaugeValue, float64(n[s]), s)
	}
}
