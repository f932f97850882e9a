package tlsrpt_test

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"sealgate/internal/tlsrpt"
)

// Delivery records each session; the report command turns a day into RFC 8460 reports.
func Example() {
	dir, err := os.MkdirTemp("", "tlsrpt")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	r, err := tlsrpt.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	when := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	policy := tlsrpt.Policy{Type: tlsrpt.PolicyNone, Domain: "example.com"}
	r.Record(tlsrpt.Session{Time: when, Policy: policy})
	r.Record(tlsrpt.Session{Time: when, Policy: policy, Failure: &tlsrpt.Failure{
		ResultType: tlsrpt.ResultSTARTTLSNotSupported, ReceivingMXHostname: "mx.example.com"}})
	if err := r.Flush(); err != nil { // serve: periodically and at shutdown
		log.Fatal(err)
	}

	day, err := tlsrpt.ReadDay(dir, "2026-12-07")
	if err != nil {
		log.Fatal(err)
	}
	reports, err := day.Reports(tlsrpt.ReportOptions{OrganizationName: "relay.example.net"})
	if err != nil {
		log.Fatal(err)
	}
	out, _ := json.Marshal(reports[0].Policies[0].Summary)
	fmt.Println(reports[0].ReportID, string(out))
	// Output: 2026-12-07_example.com@relay.example.net {"total-successful-session-count":1,"total-failure-session-count":1}
}
