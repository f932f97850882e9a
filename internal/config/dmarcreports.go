package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"sealgate/internal/addr"
)

// DMARCReportsConfig is dmarc_reports: how DMARC aggregate reports are imported and kept
// (internal/dmarcreport), and the send log they are joined with.
type DMARCReportsConfig struct {
	// MaxInputBytes caps a report file, message or attachment as read (compressed).
	MaxInputBytes int64 `mapstructure:"max_input_bytes"`
	// MaxXMLBytes caps one report after decompression: the bytes actually read.
	MaxXMLBytes int64 `mapstructure:"max_xml_bytes"`
	// MaxRecords caps the records of one report.
	MaxRecords int `mapstructure:"max_records"`
	// MaxReports caps the reports stored in DIR/dmarc/reports.db.
	MaxReports int `mapstructure:"max_reports"`
	// SendLogFlush is how often serve writes its delivery counts to DIR/sendlog/ (and
	// once more at shutdown).
	SendLogFlush time.Duration `mapstructure:"send_log_flush"`
	// MaxFailShare is the share of failing mail (0 to 1) under which `dmarc readiness`
	// advises the next step towards p=reject.
	MaxFailShare float64 `mapstructure:"max_fail_share"`
	// RUA is the rua= URI written into the record `dmarc readiness` advises.
	RUA string `mapstructure:"rua"`
	// IntakeAddresses are report mailboxes serve takes reports for on its smart-host
	// listeners, from any client, instead of relaying (submit.ReportIntake).
	IntakeAddresses []string `mapstructure:"intake_addresses"`
}

// IntakeMailboxes parses dmarc_reports.intake_addresses (validated by Open).
func (c DMARCReportsConfig) IntakeMailboxes() []addr.Address {
	var out []addr.Address
	for _, s := range c.IntakeAddresses {
		if a, err := addr.ParseAddress(strings.TrimPrefix(s, "mailto:")); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// dmarcReportsDefaults are the defaults of dmarc_reports (internal/dmarcreport's).
var dmarcReportsDefaults = map[string]any{
	"dmarc_reports.max_input_bytes": 10 << 20,
	"dmarc_reports.max_xml_bytes":   32 << 20,
	"dmarc_reports.max_records":     50000,
	"dmarc_reports.max_reports":     20000,
	"dmarc_reports.send_log_flush":  "1m",
	"dmarc_reports.max_fail_share":  0.01,
	"dmarc_reports.rua":             "",
}

func init() {
	for k, d := range dmarcReportsDefaults {
		Defaults[k] = d
	}
}

// dmarcReports checks dmarc_reports.
func (v *validation) dmarcReports() {
	c, p := &v.c.DMARCReports, &v.p
	if c.MaxInputBytes < 1024 {
		p.add("dmarc_reports.max_input_bytes", "%d: want at least 1024", c.MaxInputBytes)
	}
	if c.MaxXMLBytes < 1024 {
		p.add("dmarc_reports.max_xml_bytes", "%d: want at least 1024", c.MaxXMLBytes)
	}
	if c.MaxRecords < 1 {
		p.add("dmarc_reports.max_records", "%d: want at least 1", c.MaxRecords)
	}
	if c.MaxReports < 1 {
		p.add("dmarc_reports.max_reports", "%d: want at least 1", c.MaxReports)
	}
	if c.SendLogFlush < time.Second {
		p.add("dmarc_reports.send_log_flush", "%v: want at least 1s", c.SendLogFlush)
	}
	if c.MaxFailShare <= 0 || c.MaxFailShare >= 1 {
		p.add("dmarc_reports.max_fail_share", "%v: want a share between 0 and 1, such as 0.01 for 1%%", c.MaxFailShare)
	}
	for i, s := range c.IntakeAddresses {
		k := fmt.Sprintf("dmarc_reports.intake_addresses[%d]", i)
		a, err := addr.ParseAddress(strings.TrimPrefix(s, "mailto:"))
		switch {
		case err != nil:
			p.add(k, "%q: %v", s, err)
		case a.Domain.String() == "" || addr.IsAddressLiteral(a.Domain.String()):
			p.add(k, "%q: want a mailbox in a domain name, such as dmarc-rua@example.com", s)
		}
	}
	if len(c.IntakeAddresses) > 0 && !slices.ContainsFunc(v.c.Listeners, func(l ListenerConfig) bool { return l.Mode == "smarthost" }) {
		p.add("dmarc_reports.intake_addresses", "reports are received on a smarthost listener, and there is none")
	}
	if c.RUA != "" && !strings.HasPrefix(c.RUA, "mailto:") {
		p.add("dmarc_reports.rua", "%q: want a mailto: URI (RFC 7489 §6.2), such as mailto:dmarc-rua@example.com", c.RUA)
	}
}
