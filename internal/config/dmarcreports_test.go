package config

import (
	"testing"
	"time"
)

func TestDMARCReportsKeys(t *testing.T) {
	c, err, _ := loadWith(t, nil, "dns:\n", "dmarc_reports:\n  max_records: 10\n  send_log_flush: 30s\n  rua: mailto:rua@example.com\n  intake_addresses: [mailto:rua@example.com, DMARC@Example.Com]\ndns:\n")
	if err != nil {
		t.Fatal(err)
	}
	d := c.DMARCReports
	if d.MaxRecords != 10 || d.SendLogFlush != 30*time.Second || d.RUA != "mailto:rua@example.com" ||
		d.MaxInputBytes != 10<<20 || d.MaxXMLBytes != 32<<20 || d.MaxReports != 20000 || d.MaxFailShare != 0.01 {
		t.Errorf("dmarc_reports %+v", d)
	}
	if m := d.IntakeMailboxes(); len(m) != 2 || m[0].String() != "rua@example.com" || m[1].Domain != "example.com" {
		t.Errorf("intake mailboxes %v", m)
	}

	_, err, _ = loadWith(t, nil, "dns:\n",
		"dmarc_reports:\n  max_input_bytes: 10\n  max_records: 0\n  send_log_flush: 1ms\n  max_fail_share: 5\n  rua: rua@example.com\n  intake_addresses: [not an address, \"x@[127.0.0.1]\"]\ndns:\n")
	onlyProblems(t, err,
		`dmarc_reports.max_input_bytes: 10: want at least 1024`,
		`dmarc_reports.max_records: 0: want at least 1`,
		`dmarc_reports.send_log_flush: 1ms: want at least 1s`,
		`dmarc_reports.max_fail_share: 5: want a share between 0 and 1`,
		`dmarc_reports.rua: "rua@example.com": want a mailto: URI`,
		`dmarc_reports.intake_addresses[0]: "not an address": `,
		`dmarc_reports.intake_addresses[1]: "x@[127.0.0.1]": want a mailbox in a domain name`)
}
