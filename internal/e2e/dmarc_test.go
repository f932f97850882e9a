package e2e

import (
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/resolver/resolvertest"
	"sealgate/internal/sealgatetest"
)

// dmarcSink is a receiving MTA on 127.0.0.1 that takes every message.
type dmarcSink struct {
	mu   sync.Mutex
	msgs []string
}

type dmarcSinkSession struct{ s *dmarcSink }

func (s dmarcSinkSession) Reset()                               {}
func (s dmarcSinkSession) Logout() error                        { return nil }
func (s dmarcSinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s dmarcSinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s dmarcSinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.s.mu.Lock()
	s.s.msgs = append(s.s.msgs, string(b))
	s.s.mu.Unlock()
	return nil
}

func (s *dmarcSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// dmarcCLI runs `sealgate dmarc ARGS --config FILE` and returns stdout, stderr and the exit
// status.
func dmarcCLI(t *testing.T, config string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, append(append([]string{"dmarc"}, args...), "--config", config)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// aggregateReport is an RFC 7489 Appendix C report for example.test covering today (UTC),
// with one row per source: ip, count, whether DKIM and SPF passed aligned.
func aggregateReport(id string, rows ...string) string {
	day := time.Now().UTC().Truncate(24 * time.Hour)
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<feedback><report_metadata><org_name>receiver.example</org_name><email>dmarc@receiver.example</email>
<report_id>%s</report_id><date_range><begin>%d</begin><end>%d</end></date_range></report_metadata>
<policy_published><domain>example.test</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct></policy_published>
`, id, day.Unix(), day.Add(24*time.Hour-time.Second).Unix())
	for _, r := range rows {
		var ip, result string
		var n int
		fmt.Sscanf(r, "%s %d %s", &ip, &n, &result)
		fmt.Fprintf(&b, `<record><row><source_ip>%s</source_ip><count>%d</count><policy_evaluated><disposition>none</disposition><dkim>%s</dkim><spf>%s</spf></policy_evaluated></row>
<identifiers><header_from>example.test</header_from></identifiers>
<auth_results><dkim><domain>example.test</domain><selector>rsa2026</selector><result>%s</result></dkim><spf><domain>example.test</domain><result>%s</result></spf></auth_results></record>
`, ip, n, result, result, result, result)
	}
	b.WriteString("</feedback>\n")
	return b.String()
}

// startDMARCSink serves the next hop (mx.partner.example) the DMARC tests relay to.
func startDMARCSink(t *testing.T) (*dmarcSink, string) {
	t.Helper()
	sink := &dmarcSink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return dmarcSinkSession{sink}, nil }))
	srv.Domain = "mx.partner.example"
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sink, ln.Addr().String()
}

// TestDMARCReportsJoinSendLog: messages relayed through the real binary to a local sink
// land in the send log (source 127.0.0.1, From example.test, our selectors); a report
// covering them plus rows from a foreign IP is imported while serve runs;
// `dmarc summary --json` marks 127.0.0.1 ours and the foreign IP not ours (with its PTR
// from the in-process DNS server), `dmarc readiness` gives the share p=reject would
// reject and refuses (status 1) until failures are under the threshold; a report for a
// domain we do not serve is refused; the admin listener exports the store's totals.
func TestDMARCReportsJoinSendLog(t *testing.T) {
	sink, sinkAddr := startDMARCSink(t)

	dir := t.TempDir()
	rl, err := sealgatetest.Start(sealgatetest.Options{Binary: binary, Dir: dir, StartTimeout: startupWait,
		Args: []string{"--next-hop", sinkAddr},
		Env:  []string{"SEALGATE_DMARC_REPORTS_SEND_LOG_FLUSH=1s"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &relayProc{Relay: rl, t: t, dir: dir, password: rl.Password, logs: relayLog{rl}}
	t.Cleanup(r.stop)

	const sent = 3
	c := dial(t, r.SmartHost, dialOpts{})
	c.ehlo()
	for i := range sent {
		stage, rp := c.send("demo@example.test", []string{fmt.Sprintf("user%d@partner.example", i)},
			msg("From: demo@example.test\n"+stdTail, fmt.Sprintf("Message %d.\n", i)))
		if stage != "END" {
			t.Fatalf("message %d: %s: %s", i, stage, rp)
		}
	}
	c.quit()

	// The send log of today, once serve's flush has written all three.
	logFile := filepath.Join(dir, "sendlog", time.Now().UTC().Format(time.DateOnly)+".json")
	var day struct {
		Entries []struct {
			SourceIP   string   `json:"source_ip"`
			HeaderFrom string   `json:"header_from"`
			DKIM       []string `json:"dkim"`
			RcptDomain string   `json:"rcpt_domain"`
			Count      int      `json:"count"`
		} `json:"entries"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(logFile); err == nil && json.Unmarshal(b, &day) == nil && len(day.Entries) == 1 && day.Entries[0].Count == sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("send log %s does not count %d messages (sink has %d); log:\n%s", logFile, sent, sink.count(), r.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if e := day.Entries[0]; e.SourceIP != "127.0.0.1" || e.HeaderFrom != "example.test" || e.RcptDomain != "partner.example" ||
		strings.Join(e.DKIM, ",") != "d=example.test s=ed2026,d=example.test s=rsa2026" {
		t.Errorf("send log entry %+v", e)
	}

	// The commands' configuration: the dev one, with DNS from an in-process server that
	// has the dev zone and the foreign source's PTR.
	zone, err := os.ReadFile(filepath.Join(dir, "example.test.zone"))
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := resolvertest.Start(t, string(zone)+"\n7.100.51.198.in-addr.arpa. 300 IN PTR mail.spoofer.example.\n")
	cfgText, err := os.ReadFile(filepath.Join(dir, "sealgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgCLI := filepath.Join(dir, "dmarc-cli.yaml")
	text := strings.Replace(string(cfgText), "zone_file: example.test.zone", fmt.Sprintf("server: %q", dnsAddr), 1)
	if text == string(cfgText) {
		t.Fatal("the dev configuration has no zone_file line to replace")
	}
	if err := os.WriteFile(cfgCLI, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	reports := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(reports, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ours := write("ours.xml", aggregateReport("e2e-1", "127.0.0.1 3 pass", "198.51.100.7 1 fail"))
	other := write("other.xml", strings.ReplaceAll(aggregateReport("e2e-x", "127.0.0.1 3 pass"), "example.test", "other.example"))
	out, errOut, code := dmarcCLI(t, cfgCLI, "import", ours, other)
	if code != 1 || !strings.Contains(out, "1 imported, 0 duplicates, 1 refused") || !strings.Contains(errOut, "does not serve") {
		t.Fatalf("import: status %d, out %q, err %q; want status 1, one imported, other.example refused", code, out, errOut)
	}

	out, errOut, code = dmarcCLI(t, cfgCLI, "summary", "--domain", "example.test", "--json")
	if code != 0 {
		t.Fatalf("summary: status %d: %s", code, errOut)
	}
	var sum struct {
		Messages int64 `json:"messages"`
		Sources  []struct {
			IP       string `json:"ip"`
			Ours     bool   `json:"ours"`
			Kind     string `json:"kind"`
			PTR      string `json:"ptr"`
			Messages int64  `json:"messages"`
			Fail     int64  `json:"fail"`
		} `json:"sources"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary --json: %v\n%s", err, out)
	}
	if sum.Messages != 4 || len(sum.Sources) != 2 {
		t.Fatalf("summary %+v; want 4 messages from 2 sources", sum)
	}
	if s := sum.Sources[0]; s.IP != "127.0.0.1" || !s.Ours || s.Kind != "ours" || s.Messages != 3 || s.Fail != 0 {
		t.Errorf("first source %+v; want 127.0.0.1 ours, 3 messages", s)
	}
	if s := sum.Sources[1]; s.IP != "198.51.100.7" || s.Ours || s.Kind != "unknown-sender" || s.PTR != "mail.spoofer.example" || s.Fail != 1 {
		t.Errorf("second source %+v; want 198.51.100.7 not ours, unknown-sender, PTR mail.spoofer.example", s)
	}

	out, errOut, code = dmarcCLI(t, cfgCLI, "readiness", "--domain", "example.test")
	if code != 1 || !strings.Contains(out, "p=reject would reject 25.0% of the mail") || !strings.Contains(out, "198.51.100.7 unknown-sender mail.spoofer.example: 1 failing") ||
		!strings.Contains(errOut, "not ready") {
		t.Errorf("readiness: status %d, out:\n%s\nerr: %s\nwant status 1, 25.0%% rejected, 198.51.100.7 responsible", code, out, errOut)
	}

	// More passing mail from us: 1 failing in 400 is under the 1% threshold.
	more := write("more.xml", aggregateReport("e2e-2", "127.0.0.1 396 pass"))
	if _, errOut, code := dmarcCLI(t, cfgCLI, "import", more); code != 0 {
		t.Fatalf("import more: status %d: %s", code, errOut)
	}
	out, errOut, code = dmarcCLI(t, cfgCLI, "readiness", "--domain", "example.test", "--json")
	var v struct {
		RejectShare float64 `json:"reject_share"`
		Ready       bool    `json:"ready"`
		Next        string  `json:"next"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("readiness --json: %v\n%s", err, out)
	}
	if code != 0 || !v.Ready || v.RejectShare != 0.0025 || v.Next != "v=DMARC1; p=quarantine; pct=25" {
		t.Errorf("readiness: status %d, %+v (%s); want status 0, share 0.0025, next p=quarantine; pct=25", code, v, errOut)
	}

	// The running relay exports what the CLI stored.
	resp, err := http.Get("http://" + r.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{"sealgate_dmarc_reports_ingested_total 2", `sealgate_dmarc_report_rows_total{result="pass"} 2`,
		`sealgate_dmarc_report_rows_total{result="fail"} 1`, `sealgate_dmarc_report_messages_total{result="pass"} 399`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, grepMetrics(body, "sealgate_dmarc"))
		}
	}
}

// TestDMARCReportByMail: with dmarc_reports.intake_addresses set, a receiver we do not
// know (127.0.0.2, outside the smart-host client network) mails its report, gzip'ed and
// attached, to the report mailbox on the smart-host listener: it is stored, not relayed,
// and `dmarc summary` counts it; the same client cannot send anywhere else.
func TestDMARCReportByMail(t *testing.T) {
	sink, sinkAddr := startDMARCSink(t)

	// A dev directory, served from a copy of its configuration with the mailbox added.
	dir := t.TempDir()
	first := startRelay(t, dir, "--next-hop", sinkAddr)
	first.stop()
	cfgText, err := os.ReadFile(filepath.Join(dir, "sealgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "intake.yaml")
	if err := os.WriteFile(cfg, append(cfgText, "\ndmarc_reports:\n  intake_addresses: [mailto:dmarc-reports@example.test]\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	rl, err := sealgatetest.Start(sealgatetest.Options{Binary: binary, Dir: dir, Config: cfg, StartTimeout: startupWait})
	if err != nil {
		t.Fatal(err)
	}
	r := &relayProc{Relay: rl, t: t, dir: dir, password: rl.Password, logs: relayLog{rl}}
	t.Cleanup(r.stop)

	var gz strings.Builder
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(aggregateReport("by-mail-1", "127.0.0.1 5 pass", "198.51.100.7 2 fail")))
	zw.Close()
	b64 := base64.StdEncoding.EncodeToString([]byte(gz.String()))
	var wrapped strings.Builder
	for len(b64) > 76 {
		wrapped.WriteString(b64[:76] + "\n")
		b64 = b64[76:]
	}
	wrapped.WriteString(b64 + "\n")
	report := msg("From: noreply-dmarc@receiver.example\nTo: dmarc-reports@example.test\nSubject: Report Domain: example.test Submitter: receiver.example Report-ID: by-mail-1\n"+
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n",
		"--b1\nContent-Type: text/plain\n\nThis is a DMARC aggregate report.\n\n--b1\nContent-Type: application/gzip; name=\"receiver.example!example.test!1!2.xml.gz\"\n"+
			"Content-Transfer-Encoding: base64\n\n"+wrapped.String()+"--b1--\n")

	c := dial(t, r.SmartHost, dialOpts{localAddr: "127.0.0.2"})
	c.ehlo()
	if stage, rp := c.send("noreply-dmarc@receiver.example", []string{"ops@partner.example"}, report); stage != "RCPT" || rp.Code != 554 {
		t.Errorf("unknown client to ops@partner.example: %s %s; want RCPT 554 (no relay)", stage, rp)
	}
	c.cmd("RSET")
	stage, rp := c.send("noreply-dmarc@receiver.example", []string{"dmarc-reports@example.test"}, report)
	if stage != "END" || rp.Code != 250 || !strings.Contains(rp.Text(), "report stored") {
		t.Fatalf("report to the mailbox: %s %s; log:\n%s", stage, rp, r.logs)
	}
	c.quit()

	out, errOut, code := dmarcCLI(t, cfg, "summary", "--domain", "example.test", "--json")
	var sum struct {
		Reports  int   `json:"reports"`
		Messages int64 `json:"messages"`
		Fail     int64 `json:"fail"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &sum) != nil || sum.Reports != 1 || sum.Messages != 7 || sum.Fail != 2 {
		t.Errorf("summary after the mailed report: status %d, %s %s; want 1 report, 7 messages, 2 failing", code, out, errOut)
	}
	if n := sink.count(); n != 0 {
		t.Errorf("the report mail was relayed: the sink got %d messages", n)
	}
	if s := r.snapshot(); len(s) != 0 {
		t.Errorf("the report mail left files in the spool: %v", s)
	}
	// Nothing went through the pipeline (which logs each message it spools, journal or not).
	if strings.Contains(r.Logs(), `msg="message accepted"`) || !strings.Contains(r.Logs(), `msg="DMARC report stored"`) {
		t.Errorf("want a stored report and no message accepted for relay; log:\n%s", r.logs)
	}
}
