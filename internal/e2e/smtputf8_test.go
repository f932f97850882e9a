package e2e

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/sealgatetest"
	"sealgate/internal/smtptest"
	"sealgate/keys"
)

// The IDN domain of the international-mail test, in both forms.
const (
	idnDomain   = "例子.广告"
	idnALabel   = "xn--fsqu00a.xn--4rr70v"
	idnSelector = "idn2026"
)

// utf8Sink is a next hop that records each transaction, with whether MAIL had SMTPUTF8;
// offer says whether it offers SMTPUTF8.
type utf8Sink struct {
	addr string
	mu   sync.Mutex
	got  []utf8Txn
	ch   chan utf8Txn
}

type utf8Txn struct {
	from string
	to   []string
	utf8 bool
	data []byte
}

type utf8SinkSession struct {
	k   *utf8Sink
	cur utf8Txn
}

func (s *utf8SinkSession) Reset()        { s.cur = utf8Txn{} }
func (s *utf8SinkSession) Logout() error { return nil }
func (s *utf8SinkSession) Mail(from string, o *smtp.MailOptions) error {
	s.cur = utf8Txn{from: from, utf8: o != nil && o.UTF8}
	return nil
}
func (s *utf8SinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *utf8SinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.k.mu.Lock()
	s.k.got = append(s.k.got, s.cur)
	s.k.mu.Unlock()
	s.k.ch <- s.cur
	return nil
}

func startUTF8Sink(t *testing.T, offer bool) *utf8Sink {
	t.Helper()
	k := &utf8Sink{ch: make(chan utf8Txn, 16)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &utf8SinkSession{k: k}, nil }))
	srv.Domain = "sink.e2e.test"
	srv.EnableSMTPUTF8 = offer
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	k.addr = smtptest.ServeSMTP(t, srv, false)
	return k
}

func (k *utf8Sink) next(t *testing.T, r *relayProc) utf8Txn {
	t.Helper()
	select {
	case m := <-k.ch:
		return m
	case <-time.After(30 * time.Second):
		t.Fatalf("nothing reached the next hop within 30 s; log:\n%s", r.logs)
	}
	return utf8Txn{}
}

// startIDNRelay runs the real binary with the dev configuration plus a signing domain
// 例子.广告 (its own key) that the smart-host client network may send as, relaying
// to nextHop. It returns the relay and a zone file with the dev keys and the IDN key.
func startIDNRelay(t *testing.T, nextHop string) (*relayProc, string) {
	t.Helper()
	base := t.TempDir()
	gen := startRelay(t, filepath.Join(base, "gen"), "--next-hop", nextHop)
	gen.stop()
	dir := filepath.Join(base, "idn")
	if err := sealgatetest.CopyDevDir(gen.dir, dir); err != nil {
		t.Fatal(err)
	}
	key, err := keys.Generate(keys.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.WritePrivateKey(filepath.Join(dir, "keys", idnSelector+".idn.key"), key); err != nil {
		t.Fatal(err)
	}
	cfg := string(gen.readFile(t, "sealgate.yaml"))
	for _, e := range []struct{ old, new string }{
		{`may_send_as: ["*@example.test"]`, `may_send_as: ["*@example.test", "*@` + idnDomain + `"]`},
		{"domains:\n", "domains:\n  - domain: " + idnDomain + "\n    keys:\n      - selector: " + idnSelector +
			"\n        key_file: keys/" + idnSelector + ".idn.key\n"},
	} {
		if strings.Count(cfg, e.old) != 1 {
			t.Fatalf("the dev configuration's layout changed: %q not found once in\n%s", e.old, cfg)
		}
		cfg = strings.Replace(cfg, e.old, e.new, 1)
	}
	cfgFile := filepath.Join(dir, "sealgate.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	zone := string(gen.readFile(t, "example.test.zone")) + keys.DNSRecord(key.Public(), idnSelector, idnALabel) + "\n"
	zoneFile := filepath.Join(dir, "idn.zone")
	if err := os.WriteFile(zoneFile, []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	rl, err := sealgatetest.Start(sealgatetest.Options{Binary: binary, Dir: dir, Config: cfgFile, StartTimeout: startupWait})
	if err != nil {
		t.Fatal(err)
	}
	r := &relayProc{Relay: rl, t: t, dir: dir, password: rl.Password, logs: relayLog{rl}}
	t.Cleanup(r.stop)
	return r, zoneFile
}

// smtplibSend submits msg with Python's smtplib to addr, with SMTPUTF8 on MAIL FROM,
// and returns what smtplib reported.
func smtplibSend(t *testing.T, addr, from, to string, msg []byte) string {
	t.Helper()
	py := requireTool(t, "/usr/bin/python3", "python3")
	msgFile := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(msgFile, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(addr, ":")
	script := `import smtplib, sys
host, port, sender, rcpt, path = sys.argv[1:6]
with smtplib.SMTP(host, int(port), local_hostname="client.e2e.test", timeout=20) as s:
    s.ehlo()
    if not s.has_extn("smtputf8"):
        sys.exit("server does not offer SMTPUTF8")
    refused = s.sendmail(sender, [rcpt], open(path, "rb").read(), mail_options=["SMTPUTF8"])
    code, text = s.noop()
    print("sent", refused, code)
`
	out, err := exec.Command(py, "-c", script, host, port, from, to, msgFile).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	return string(out)
}

// TestInternationalMail: a client submits with SMTPUTF8 (Python's smtplib) from an
// address at an IDN domain its may_send_as allows; the message is signed with d= in
// A-label form and sealed, dkimpy verifies both, and the next hop receives it with
// SMTPUTF8. Look-alikes of the allowed domain are refused with 5.7.1.
func TestInternationalMail(t *testing.T) {
	sink := startUTF8Sink(t, true)
	r, zone := startIDNRelay(t, sink.addr)

	from := "用户@" + idnDomain
	msg := crlf("From: 用户 <" + from + ">\nTo: josé@exemple.fr\nSubject: 你好, Grüße\nMessage-ID: <idn-1@e2e.test>\n" +
		"Date: Mon, 07 Dec 2026 12:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" +
		"Grüße aus 例子.广告.\n")
	smtplibSend(t, r.SmartHost, from, "josé@exemple.fr", msg)
	got := sink.next(t, r)
	if !got.utf8 {
		t.Error("the next hop offers SMTPUTF8 but MAIL FROM did not carry it")
	}
	if got.from != "用户@"+idnALabel || len(got.to) != 1 || got.to[0] != "josé@exemple.fr" {
		t.Errorf("envelope from %q to %q, want 用户@%s to josé@exemple.fr", got.from, got.to, idnALabel)
	}
	if !strings.Contains(string(got.data), "Subject: 你好, Grüße\r\n") {
		t.Errorf("UTF-8 Subject not delivered as sent:\n%s", got.data)
	}
	eml := filepath.Join(t.TempDir(), "delivered.eml")
	if err := os.WriteFile(eml, got.data, 0o600); err != nil {
		t.Fatal(err)
	}
	res := verifyDkimpy(t, zone, eml)
	if len(res.DKIM) != 1 || res.DKIM[0].D != idnALabel || res.DKIM[0].S != idnSelector {
		t.Fatalf("dkimpy saw signatures %+v, want one with d=%s s=%s", res.DKIM, idnALabel, idnSelector)
	}
	if !res.DKIM[0].Pass {
		t.Errorf("dkimpy: the DKIM signature over the UTF-8 header fails; log %q", res.DKIM[0].Log)
	}
	if res.ARC.CV != "pass" {
		t.Errorf("dkimpy arc_verify: cv=%s (%s), want pass", res.ARC.CV, res.ARC.Reason)
	}

	// Look-alikes of 例子.广告 and example.test, at MAIL FROM and in From.
	c := dial(t, r.SmartHost, dialOpts{})
	c.ehlo()
	for _, d := range []string{"例子．广告", "例\u200d子.广告", "ｅxample.test", "ex\u0430mple.test", "example.test.", "xn--fsqu00a.xn--4rr70v."} {
		if rp := c.cmd("MAIL FROM:<ceo@" + d + "> SMTPUTF8"); !rp.is(553, "5.7.1") {
			t.Errorf("MAIL FROM:<ceo@%s>: %s, want 553 5.7.1", d, rp)
		}
		c.cmd("RSET")
		c.expect("MAIL FROM:<"+from+"> SMTPUTF8", 250)
		c.expect("RCPT TO:<ops@partner.example>", 250)
		if rp := c.data(crlf("From: CEO <ceo@" + d + ">\nSubject: t\n\nbody\n")); !rp.is(550, "5.7.1") {
			t.Errorf("From: <ceo@%s>: %s, want 550 5.7.1", d, rp)
		}
	}
	// Without SMTPUTF8 a UTF-8 address is refused with 5.6.7.
	if rp := c.cmd("MAIL FROM:<" + from + ">"); !rp.is(553, "5.6.7") {
		t.Errorf("MAIL FROM:<%s> without SMTPUTF8: %s, want 553 5.6.7", from, rp)
	}
	c.quit()
}

// TestInternationalMailNoSMTPUTF8NextHop: a message that needs SMTPUTF8 (a UTF-8
// header) meets a next hop without it: it is not downgraded, its recipient fails, and
// the sender gets an RFC 6533 DSN with status 5.6.7.
func TestInternationalMailNoSMTPUTF8NextHop(t *testing.T) {
	sink := startUTF8Sink(t, false)
	r, _ := startIDNRelay(t, sink.addr)
	from := "info@" + idnDomain
	msg := crlf("From: Info <" + from + ">\nTo: jörg@exemple.fr\nSubject: Grüße\nMessage-ID: <idn-2@e2e.test>\n\nHallo.\n")
	smtplibSend(t, r.SmartHost, from, "ops@partner.example", msg)
	got := sink.next(t, r)
	if got.from != "" || len(got.to) != 1 || got.to[0] != "info@"+idnALabel {
		t.Fatalf("next hop got from %q to %q; want only the DSN, from <> to info@%s", got.from, got.to, idnALabel)
	}
	for _, want := range []string{"report-type=global-delivery-status", "Content-Type: message/global-delivery-status",
		"Status: 5.6.7", "Final-Recipient: rfc822; ops@partner.example", "Content-Type: message/global-headers", "Subject: Grüße"} {
		if !strings.Contains(string(got.data), want) {
			t.Errorf("DSN lacks %q:\n%s", want, got.data)
		}
	}
	sink.mu.Lock()
	n := len(sink.got)
	sink.mu.Unlock()
	if n != 1 {
		t.Errorf("next hop got %d transactions, want only the DSN", n)
	}
}
