package dmarcreport_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/dmarcreport"
)

// Import a report, count what we sent, and ask whether the domain may tighten its policy.
func Example() {
	dir, _ := os.MkdirTemp("", "dmarcreport-example-")
	defer os.RemoveAll(dir)
	im := &dmarcreport.Importer{
		Store:   &dmarcreport.Store{Path: filepath.Join(dir, "dmarc", "reports.db")},
		Domains: []addr.Domain{"example.test"},
	}
	for _, r := range im.ImportPath("testdata/yahoo.zip") {
		if r.Err != nil {
			fmt.Println("refused:", r.Err)
			continue
		}
		fmt.Println("imported", r.Report.Org, r.Report.ID, len(r.Report.Records), "records")
	}

	// What serve records for each delivered message (cmd/sealgate wires it to the relay).
	log := dmarcreport.NewSendLog(filepath.Join(dir, "sendlog"))
	log.Record(dmarcreport.Send{Time: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), SourceIP: "192.0.2.10",
		HeaderFrom: "example.test", DKIM: []string{"d=example.test s=ed2026"}, RcptDomain: "yahoo.example"})
	if err := log.Flush(); err != nil {
		fmt.Println(err)
	}

	reports, _ := im.Store.Reports("example.test", time.Time{})
	s, _ := dmarcreport.Summarize(context.Background(), reports, dmarcreport.SummaryOptions{
		Domain: "example.test", SendLogDir: filepath.Join(dir, "sendlog")})
	for _, src := range s.Sources {
		fmt.Println(src.IP, src.Kind, src.Messages, "messages,", src.Fail, "failing")
	}
	v := dmarcreport.Readiness(s, dmarcreport.ReadinessOptions{})
	fmt.Println("ready:", v.Ready, "reject share:", v.RejectShare)
	// Output:
	// imported Yahoo 1733011200.428713 2 records
	// 192.0.2.10 ours 8 messages, 0 failing
	// 198.51.100.7 unknown-sender 1 messages, 1 failing
	// ready: false reject share: 0.1111
}
