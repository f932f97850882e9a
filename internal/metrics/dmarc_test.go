package metrics

import (
	"errors"
	"testing"
)

// The DMARC report counters come from the store at each scrape; a store that cannot be
// read shows as an error gauge, not as zeros that look true.
func TestDMARCReports(t *testing.T) {
	tests := []struct {
		name  string
		t     DMARCTotals
		err   error
		lines []string
	}{
		{"totals", DMARCTotals{Reports: 4, Rows: map[string]int64{"pass": 6, "fail": 3}, Messages: map[string]int64{"pass": 78, "fail": 6}}, nil, []string{
			`sealgate_dmarc_reports_ingested_total 4`,
			`sealgate_dmarc_report_rows_total{result="pass"} 6`,
			`sealgate_dmarc_report_rows_total{result="fail"} 3`,
			`sealgate_dmarc_report_messages_total{result="pass"} 78`,
			`sealgate_dmarc_report_messages_total{result="fail"} 6`,
			`sealgate_dmarc_reports_read_errors 0`,
		}},
		{"unreadable", DMARCTotals{}, errors.New("locked"), []string{`sealgate_dmarc_reports_read_errors 1`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New(testReasons)
			m.WatchDMARCReports(func() (DMARCTotals, error) { return tc.t, tc.err })
			body, _ := scrape(t, m.Handler(), "/metrics")
			for _, l := range tc.lines {
				wantLine(t, body, l)
			}
		})
	}
}
