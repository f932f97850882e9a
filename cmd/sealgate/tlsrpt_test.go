package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sealgate/internal/tlsrpt"
)

func TestTLSRPTReportCommand(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "sealgate.yaml")
	if err := os.WriteFile(cfgFile, []byte("hostname: relay.example.net\ndir: "+dir+"\ntlsrpt:\n  enabled: true\n  contact_info: mailto:tls@example.net\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := tlsrpt.Open(filepath.Join(dir, "tlsrpt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	rec.Record(tlsrpt.Session{Time: when, Policy: tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, Domain: "dane.example", Strings: []string{"_25._tcp.mx.dane.example. 300 IN TLSA 3 1 1 ab"}}})
	rec.Record(tlsrpt.Session{Time: when, Policy: tlsrpt.Policy{Type: tlsrpt.PolicyNone, Domain: "plain.example"},
		Failure: &tlsrpt.Failure{ResultType: tlsrpt.ResultSTARTTLSNotSupported, ReceivingMXHostname: "mx.plain.example"}})
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := runCLI(t, "tlsrpt", "report", "--config", cfgFile, "--day", "2026-12-07", "--domain", "dane.example")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r tlsrpt.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not one JSON report: %v\n%s", err, out)
	}
	if r.OrganizationName != "relay.example.net" || r.ContactInfo != "mailto:tls@example.net" || len(r.Policies) != 1 ||
		r.Policies[0].Policy.Type != "tlsa" || r.Policies[0].Summary.Successful != 1 || r.DateRange.Start != "2026-12-07T00:00:00Z" {
		t.Errorf("report %s", out)
	}

	outDir := t.TempDir()
	out, errOut, code = runCLI(t, "tlsrpt", "report", "--config", cfgFile, "--day", "2026-12-07", "--out", outDir)
	if code != 0 {
		t.Fatalf("--out: exit %d: %s", code, errOut)
	}
	files, _ := filepath.Glob(filepath.Join(outDir, "*.json"))
	want := filepath.Join(outDir, "relay.example.net!plain.example!1796601600!1796687999.json")
	if len(files) != 2 || !strings.Contains(out, want) {
		t.Errorf("--out wrote %v (printed %q); want two files, one %s", files, out, want)
	}

	_, errOut, code = runCLI(t, "tlsrpt", "report", "--config", cfgFile, "--day", "2026-12-08")
	if code != 0 || !strings.Contains(errOut, "no TLS sessions counted") {
		t.Errorf("a day without sessions: exit %d, %q", code, errOut)
	}
	if _, errOut, code = runCLI(t, "tlsrpt", "report", "--config", cfgFile, "--day", "yesterday"); code == 0 || !strings.Contains(errOut, "YYYY-MM-DD") {
		t.Errorf("--day yesterday: exit %d, %q", code, errOut)
	}
}
