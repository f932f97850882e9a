package metrics

import "github.com/prometheus/client_golang/prometheus"

// DMARCTotals are the DMARC report store's counters (internal/dmarcreport Totals):
// reports ingested, and their rows and messages by DMARC result (pass, fail).
type DMARCTotals struct {
	Reports  int64
	Rows     map[string]int64
	Messages map[string]int64
}

// WatchDMARCReports adds sealgate_dmarc_reports_ingested_total,
// sealgate_dmarc_report_rows_total{result} and sealgate_dmarc_report_messages_total{result},
// read with totals at each scrape: reports are imported by `sealgate dmarc import`, another
// process, so the store, not this one's memory, holds the counts.
// sealgate_dmarc_reports_read_errors is 1 when the last scrape could not read them.
func (m *Metrics) WatchDMARCReports(totals func() (DMARCTotals, error)) {
	m.reg.MustRegister(&dmarcCollector{totals: totals})
}

var (
	dmarcReportsDesc  = prometheus.NewDesc("sealgate_dmarc_reports_ingested_total", "DMARC aggregate reports stored (duplicates and refused ones not counted).", nil, nil)
	dmarcRowsDesc     = prometheus.NewDesc("sealgate_dmarc_report_rows_total", "Records of the stored DMARC aggregate reports, by DMARC result (pass, fail).", []string{"result"}, nil)
	dmarcMessagesDesc = prometheus.NewDesc("sealgate_dmarc_report_messages_total", "Messages the stored DMARC aggregate reports count, by DMARC result (pass, fail).", []string{"result"}, nil)
	dmarcErrDesc      = prometheus.NewDesc("sealgate_dmarc_reports_read_errors", "1 when the last scrape could not read the DMARC report store.", nil, nil)
)

type dmarcCollector struct {
	totals func() (DMARCTotals, error)
}

func (c *dmarcCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dmarcReportsDesc
	ch <- dmarcRowsDesc
	ch <- dmarcMessagesDesc
	ch <- dmarcErrDesc
}

func (c *dmarcCollector) Collect(ch chan<- prometheus.Metric) {
	t, err := c.totals()
	readErr := 0.0
	if err != nil {
		readErr = 1
	}
	ch <- prometheus.MustNewConstMetric(dmarcReportsDesc, prometheus.CounterValue, float64(t.Reports))
	for _, res := range []string{"pass", "fail"} {
		ch <- prometheus.MustNewConstMetric(dmarcRowsDesc, prometheus.CounterValue, float64(t.Rows[res]), res)
		ch <- prometheus.MustNewConstMetric(dmarcMessagesDesc, prometheus.CounterValue, float64(t.Messages[res]), res)
	}
	ch <- prometheus.MustNewConstMetric(dmarcErrDesc, prometheus.GaugeValue, readErr)
}
