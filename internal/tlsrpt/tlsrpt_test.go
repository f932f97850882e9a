package tlsrpt

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	day1 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	day2 = time.Date(2026, 12, 8, 0, 0, 1, 0, time.UTC)
	tlsa = Policy{Type: PolicyTLSA, Domain: "dane.example", Strings: []string{"_25._tcp.mx.dane.example. 300 IN TLSA 3 1 1 ab"}}
	sts  = Policy{Type: PolicySTS, Domain: "sts.example", Strings: []string{"version: STSv1", "mode: enforce", "mx: mx.sts.example", "max_age: 86400"}, MXHosts: []string{"mx.sts.example"}}
	none = Policy{Type: PolicyNone, Domain: "plain.example"}
)

func failure(result, mx string) *Failure {
	return &Failure{ResultType: result, SendingMTAIP: "192.0.2.1", ReceivingMXHostname: mx, ReceivingIP: "198.51.100.7"}
}

func TestRecorderCountsAndFlushes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tlsrpt")
	r, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.Record(Session{Time: day1, Policy: tlsa})
	}
	r.Record(Session{Time: day1, Policy: tlsa, Failure: failure(ResultValidationFailure, "mx.dane.example")})
	r.Record(Session{Time: day1, Policy: sts, Failure: failure(ResultCertificateHostMismatch, "mx.sts.example")})
	r.Record(Session{Time: day2, Policy: none, Failure: failure(ResultSTARTTLSNotSupported, "mx.plain.example")})
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	// A second flush adds to the file (a restart in between loses nothing).
	r.Record(Session{Time: day1, Policy: tlsa})
	r.Record(Session{Time: day1, Policy: tlsa, Failure: failure(ResultValidationFailure, "mx.dane.example")})
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "2026-12-07.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("day file: %v, mode %v; want 0600", err, st.Mode())
	}
	d, err := ReadDay(dir, "2026-12-07")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]string{}
	for _, pc := range d.Policies {
		counts[pc.Policy.Domain] = fmt.Sprintf("%d ok %d failed %d details", pc.Successes, pc.Failed, len(pc.Failures))
	}
	want := map[string]string{"dane.example": "4 ok 2 failed 1 details", "sts.example": "0 ok 1 failed 1 details"}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("day 1: %v, want %v", counts, want)
	}
	d2, err := ReadDay(dir, "2026-12-08")
	if err != nil || len(d2.Policies) != 1 || d2.Policies[0].Policy.Type != PolicyNone {
		t.Errorf("day 2: %+v, %v; want the no-policy-found failure", d2, err)
	}
	if d3, err := ReadDay(dir, "2026-12-09"); err != nil || len(d3.Policies) != 0 {
		t.Errorf("a day without sessions: %+v, %v", d3, err)
	}
	if _, err := ReadDay(dir, "07.12.2026"); err == nil {
		t.Error("a malformed day accepted")
	}
}

func TestFlushFailureKeepsCounts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tlsrpt")
	r, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Record(Session{Time: day1, Policy: tlsa})
	// A directory where the day's file should be: the write fails.
	if err := os.Mkdir(filepath.Join(dir, "2026-12-07.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err == nil {
		t.Fatal("Flush over a directory: no error")
	}
	if err := os.Remove(filepath.Join(dir, "2026-12-07.json")); err != nil {
		t.Fatal(err)
	}
	r.Record(Session{Time: day1, Policy: tlsa})
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	d, err := ReadDay(dir, "2026-12-07")
	if err != nil || len(d.Policies) != 1 || d.Policies[0].Successes != 2 {
		t.Fatalf("after a failed flush: %+v, %v; want 2 successes", d, err)
	}
}

func TestFailureDetailsBounded(t *testing.T) {
	r, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range MaxFailuresPerPolicy + 10 {
		f := failure(ResultValidationFailure, fmt.Sprintf("mx%d.dane.example", i))
		f.AdditionalInfo = strings.Repeat("x", 1000)
		r.Record(Session{Time: day1, Policy: tlsa, Failure: f})
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	d, err := ReadDay(r.dir, "2026-12-07")
	if err != nil {
		t.Fatal(err)
	}
	pc := d.Policies[0]
	if pc.Failed != MaxFailuresPerPolicy+10 || len(pc.Failures) != MaxFailuresPerPolicy || len(pc.Failures[0].AdditionalInfo) != MaxAdditionalInfo {
		t.Errorf("failed %d, %d details, info %d bytes; want %d, %d, %d", pc.Failed, len(pc.Failures), len(pc.Failures[0].AdditionalInfo),
			MaxFailuresPerPolicy+10, MaxFailuresPerPolicy, MaxAdditionalInfo)
	}
}

// The report is RFC 8460 §4's JSON: its field names and structure.
func TestReportJSON(t *testing.T) {
	r, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Record(Session{Time: day1, Policy: sts})
	r.Record(Session{Time: day1, Policy: sts, Failure: failure(ResultCertificateExpired, "mx.sts.example")})
	r.Record(Session{Time: day1, Policy: tlsa})
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	d, err := ReadDay(r.dir, "2026-12-07")
	if err != nil {
		t.Fatal(err)
	}
	reports, err := d.Reports(ReportOptions{OrganizationName: "relay.example", ContactInfo: "mailto:tls@relay.example"})
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 2 || reports[0].Policies[0].Policy.Domain != "dane.example" {
		t.Fatalf("%d reports (%+v); want one per policy domain, sorted", len(reports), reports)
	}
	only, _ := d.Reports(ReportOptions{OrganizationName: "relay.example", Domain: "STS.example."})
	if len(only) != 1 {
		t.Fatalf("--domain sts.example: %d reports", len(only))
	}
	data, err := json.Marshal(only[0])
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	dr := got["date-range"].(map[string]any)
	if got["organization-name"] != "relay.example" || dr["start-datetime"] != "2026-12-07T00:00:00Z" || dr["end-datetime"] != "2026-12-07T23:59:59Z" || got["report-id"] == "" {
		t.Errorf("report header: %s", data)
	}
	p := got["policies"].([]any)[0].(map[string]any)
	pol := p["policy"].(map[string]any)
	sum := p["summary"].(map[string]any)
	fd := p["failure-details"].([]any)[0].(map[string]any)
	checks := map[string]any{
		"policy-type": pol["policy-type"], "policy-domain": pol["policy-domain"], "mx-host": fmt.Sprint(pol["mx-host"]),
		"policy-string":                  len(pol["policy-string"].([]any)),
		"total-successful-session-count": sum["total-successful-session-count"], "total-failure-session-count": sum["total-failure-session-count"],
		"result-type": fd["result-type"], "failed-session-count": fd["failed-session-count"], "receiving-mx-hostname": fd["receiving-mx-hostname"],
		"sending-mta-ip": fd["sending-mta-ip"], "receiving-ip": fd["receiving-ip"],
	}
	want := map[string]any{
		"policy-type": "sts", "policy-domain": "sts.example", "mx-host": "[mx.sts.example]", "policy-string": 4,
		"total-successful-session-count": 1.0, "total-failure-session-count": 1.0,
		"result-type": "certificate-expired", "failed-session-count": 1.0, "receiving-mx-hostname": "mx.sts.example",
		"sending-mta-ip": "192.0.2.1", "receiving-ip": "198.51.100.7",
	}
	for k, w := range want {
		if checks[k] != w {
			t.Errorf("%s = %v, want %v (report %s)", k, checks[k], w, data)
		}
	}
}

func TestCertificateResult(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{x509.HostnameError{Certificate: &x509.Certificate{}, Host: "mx.example"}, ResultCertificateHostMismatch},
		{fmt.Errorf("verify: %w", x509.CertificateInvalidError{Reason: x509.Expired}), ResultCertificateExpired},
		{x509.UnknownAuthorityError{}, ResultCertificateNotTrusted},
		{errors.New("something else"), ResultValidationFailure},
	}
	for _, tt := range tests {
		if got := CertificateResult(tt.err); got != tt.want {
			t.Errorf("CertificateResult(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}
