package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/relay"
)

// hangingDNS serves zone on 127.0.0.1, except that questions for the names in hang (of
// type qtype, or any type for 0) never get an answer, as from a dead server.
func hangingDNS(t *testing.T, zone string, qtype uint16, hang ...string) string {
	t.Helper()
	upstream := resolvertest.Start(t, zone)
	return resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		if len(req.Question) == 1 && (qtype == 0 || req.Question[0].Qtype == qtype) {
			for _, h := range hang {
				if strings.EqualFold(req.Question[0].Name, dns.Fqdn(h)) {
					return
				}
			}
		}
		if resp, err := dns.Exchange(req, upstream); err == nil {
			resolvertest.Reply(w, req, resp)
		}
	}))
}

// TestVerifyCLISPF: sealgate verify reports a DNS timeout in SPF as temperror (timed out)
// and defers; it evaluates reverse-paths SPF's initial processing covers (RFC 7208 §4.3)
// instead of refusing them.
func TestVerifyCLISPF(t *testing.T) {
	addr := hangingDNS(t, `$TTL 300
corp.example.          TXT "v=spf1 -all"
corp.example.          MX  10 relay.corp.example.
relay.corp.example.    A   192.0.2.25
relay.corp.example.    TXT "v=spf1 a -all"
slow.corp.example.     MX  10 relay.corp.example.
`, 0, "slow.corp.example")
	msgFile := filepath.Join(t.TempDir(), "m.eml")
	os.WriteFile(msgFile, []byte("From: ana@corp.example\nTo: b@example.net\nSubject: hi\n\nhello\n"), 0o644)
	base := []string{"verify", "--dns", addr, "--dns-timeout", "300ms", "--ip", "192.0.2.25", "--authserv-id", "mx.test.example"}

	out, errOut, code := runCLI(t, append(base, "--helo", "relay.corp.example", "--mail-from", "b@slow.corp.example", "--json", msgFile)...)
	var rep struct {
		SPF struct {
			Result   string
			TimedOut bool `json:"timed_out"`
		}
		Verdict struct{ Action, Reply string }
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.SPF.Result != "temperror" || !rep.SPF.TimedOut ||
		rep.Verdict.Action != "tempfail" || !strings.Contains(rep.Verdict.Reply, "(DNS timed out)") {
		t.Errorf("timeout --json: exit %d, %v, %+v\n%s%s", code, err, rep, out, errOut)
	}
	out, _, code = runCLI(t, append(base, "--helo", "relay.corp.example", "--mail-from", "b@slow.corp.example", msgFile)...)
	for _, want := range []string{"spf=temperror smtp.mailfrom=b@slow.corp.example", "mail     spf          temperror       slow.corp.example for b@slow.corp.example from 192.0.2.25: DNS timed out",
		"verdict: tempfail at rcpt: 451 4.4.3 SPF of slow.corp.example could not be evaluated (DNS timed out): try again later"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("timeout: exit %d, no %q in\n%s", code, want, out)
		}
	}

	for _, tc := range []struct{ name, helo, mailFrom, want string }{
		{"no local part", "relay.corp.example", "@corp.example", "spf=fail smtp.mailfrom=postmaster@corp.example"},
		{"label over 63", "relay.corp.example", "b@" + strings.Repeat("a", 64) + ".corp.example", "mail     spf          none"},
		{"empty label", "relay.corp.example", "b@a..corp.example", "mail     spf          none"},
		{"HELO address literal", "[192.0.2.25]", "<>", "mail     spf-helo     none            [192.0.2.25] for postmaster@[192.0.2.25] from 192.0.2.25: [192.0.2.25] is an address literal"},
	} {
		out, errOut, code := runCLI(t, append(base, "--helo", tc.helo, "--mail-from", tc.mailFrom, msgFile)...)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, no %q in\n%s%s", tc.name, code, tc.want, out, errOut)
		}
		if tc.mailFrom != "<>" && !strings.Contains(out, "verdict: reject at mail: 501 5.1.7") {
			t.Errorf("%s: a receiver refuses the path at MAIL:\n%s", tc.name, out)
		}
	}
}

// The return path's SPF times out: selftest message says "could not check SPF (DNS timed
// out)", neither ready nor not (exit 3), and the dev outbox log shows the same temperror.
func TestSelftestSPFTimedOut(t *testing.T) {
	st, err := prepareDev(filepath.Join(t.TempDir(), "dev"), devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	zone, err := os.ReadFile(st.zoneFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := hangingDNS(t, string(zone), dns.TypeTXT, devDomain)
	out, errOut, code := runCLI(t, "selftest", "message", "--config", st.configFile, "--as", devLogin, "--sample",
		"--dns", addr, "--dns-timeout", "300ms")
	for _, want := range []string{"unknown  spf", "temperror", "verdict: could not check SPF (DNS timed out) for example.test",
		"\nNOT CHECKED: could not check SPF (DNS timed out)\n"} {
		if code != 3 || !strings.Contains(out, want) {
			t.Errorf("selftest message: exit %d, no %q in\n%s%s", code, want, out, errOut)
		}
	}

	cfg, res, err := loadAndOpen(st.configFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	if res.Resolver, err = resolver.New(resolver.Config{Server: addr, Timeout: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	verify := outboxVerifier(cfg, res, slog.New(slog.NewTextHandler(&logs, nil)))
	mt, err := newMessageTest(cfg, res, devLogin)
	if err != nil {
		t.Fatal(err)
	}
	env := &relay.Envelope{ID: "q1", From: mt.fromAddress()}
	verify(context.Background(), env, mt.sample())
	for _, want := range []string{"spf=temperror spf_domain=example.test spf_timed_out=true", "verdict=tempfail"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %q in the outbox log\n%s", want, logs.String())
		}
	}
}

// selftest domain with the domain's SPF record timing out: not checked, exit 3.
func TestSelftestDomainSPFTimedOut(t *testing.T) {
	st, err := prepareDev(filepath.Join(t.TempDir(), "dev"), devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	zone, err := os.ReadFile(st.zoneFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := hangingDNS(t, string(zone), dns.TypeTXT, devDomain)
	out, errOut, code := runCLI(t, "selftest", "domain", devDomain, "--config", st.configFile, "--dns", addr, "--dns-timeout", "300ms")
	if code != 3 || !strings.Contains(out, "unknown  spf") || !strings.HasSuffix(out, "\nNOT CHECKED: could not check SPF (DNS timed out)\n") {
		t.Errorf("selftest domain: exit %d\n%s%s", code, out, errOut)
	}
}
