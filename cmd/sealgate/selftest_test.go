package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sealgate/relay"
	"sealgate/selftest"
)

// The dev-mode configuration is ready: its message passes at a strict receiver and its
// domain's DNS (the dev zone) has everything.
func TestSelftestDevConfiguration(t *testing.T) {
	st, err := prepareDev(filepath.Join(t.TempDir(), "dev"), devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "selftest", "message", "--config", st.configFile, "--as", devLogin, "--sample")
	if code != 0 || !strings.HasSuffix(out, "\nREADY\n") {
		t.Fatalf("selftest message: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"spf=pass", "dkim=pass header.d=example.test header.i=@example.test header.s=rsa2026", "dkim=pass header.d=example.test header.i=@example.test header.s=ed2026",
		"arc=pass", "dmarc=pass", "verdict: ready: DMARC passes under RFC 9989 and RFC 7489 through dkim example.test (strict)",
		"SUBMITTER=selftest@example.test"} {
		if !strings.Contains(out, want) {
			t.Errorf("selftest message: no %q in\n%s", want, out)
		}
	}
	// As the client network, in JSON.
	out, errOut, code = runCLI(t, "selftest", "message", "--config", st.configFile, "--as", "smarthost-localhost", "--sample", "--json")
	var rep selftest.MessageReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.Ready || len(rep.Egress) != 1 || rep.Egress[0].Egress.HELO != devHostname {
		t.Fatalf("selftest message --json: exit %d\n%s\n%s", code, out, errOut)
	}

	out, errOut, code = runCLI(t, "selftest", "domain", devDomain, "--config", st.configFile)
	if code != 0 || !strings.HasSuffix(out, "\nREADY\n") || strings.Contains(out, "publish (zone-file lines)") {
		t.Fatalf("selftest domain: exit %d\n%s\n%s", code, out, errOut)
	}
}

// A message From a domain the identity may not use is refused by the relay's policy: not
// ready, with the refusal. A planned zone without the DKIM records fails the domain test
// with the records to publish.
func TestSelftestNotReady(t *testing.T) {
	st, err := prepareDev(filepath.Join(t.TempDir(), "dev"), devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	msg := filepath.Join(t.TempDir(), "m.eml")
	os.WriteFile(msg, []byte("From: <a@other.example>\r\nTo: <b@rcpt.example>\r\nSubject: x\r\n\r\nhi\r\n"), 0o600)
	out, _, code := runCLI(t, "selftest", "message", "--config", st.configFile, "--as", devLogin, msg)
	if code != 1 || !strings.Contains(out, "NOT READY: the relay did not deliver the message: the relay refused the message:") {
		t.Errorf("exit %d\n%s", code, out)
	}

	zone, err := os.ReadFile(st.zoneFile)
	if err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, l := range strings.Split(string(zone), "\n") {
		if !strings.Contains(l, "rsa2026._domainkey") {
			planned = append(planned, l)
		}
	}
	plannedFile := filepath.Join(t.TempDir(), "planned.zone")
	os.WriteFile(plannedFile, []byte(strings.Join(planned, "\n")), 0o600)
	out, _, code = runCLI(t, "selftest", "domain", devDomain, "--config", st.configFile, "--zone", plannedFile, "--egress", "198.51.100.7="+devHostname)
	for _, want := range []string{"fail  dkim       missing", "fix: publish this record", "; publish (zone-file lines):\nrsa2026._domainkey.example.test. IN TXT",
		"fix: add ip4:198.51.100.7 to the SPF record of example.test", "NOT READY"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d", code)
	}
}

// The dev outbox verifies each message it writes and logs the Authentication-Results a
// strict receiver would add: all pass for the dev configuration.
func TestOutboxVerifier(t *testing.T) {
	st, err := prepareDev(filepath.Join(t.TempDir(), "dev"), devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, res, err := loadAndOpen(st.configFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	d, closeD := delivererFromConfig(cfg, res, log)
	defer closeD()
	sink, ok := d.(relay.OutboxSink)
	if !ok || sink.Verify == nil {
		t.Fatalf("dev deliverer %T without a Verify hook", d)
	}
	mt, err := newMessageTest(cfg, res, devLogin)
	if err != nil {
		t.Fatal(err)
	}
	spool, err := relay.OpenSpool(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	qid, err := mt.accept(context.Background(), spool, mt.sample(), "", []string{"b@rcpt.example"})
	if err != nil {
		t.Fatal(err)
	}
	env, rc, err := spool.Open(qid)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := sink.Deliver(context.Background(), env, rc); err != nil {
		t.Fatal(err)
	}
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "outbox selftest") {
			line = l
		}
	}
	for _, want := range []string{"spf=pass smtp.mailfrom=selftest@example.test", "dkim=pass header.d=example.test", "arc=pass", "dmarc=pass header.from=example.test",
		"iprev=pass", "spf=pass spf_domain=example.test", "verdict=accept", "queue_id=" + qid} {
		if !strings.Contains(line, want) {
			t.Errorf("no %q in the outbox selftest line %q\n%s", want, line, logs.String())
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Relay.Outbox, qid+".eml")); err != nil {
		t.Errorf("outbox file: %v", err)
	}
}

// The dev forwarder login list@lists.example.test (from_rewrite=auto) passes on messages whose
// author publishes p=reject: From is rewritten to the list's address, DMARC passes for
// lists.example.test, and the forwarder section says what the author's domain would have got
// and the ARC result. alice@example.test shares its organisational domain with the list
// (and publishes adkim=r), so her domain passes through the list's relaxed-aligned
// identifiers even so; bob@author.test (p=reject, added to the zone) would fail. With
// from_rewrite=off the author's From stays, DMARC fails for author.test, arc=pass.
func TestSelftestForwarder(t *testing.T) {
	st, err := prepareDev(filepath.Join(t.TempDir(), "dev"), devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	zone, err := os.ReadFile(st.zoneFile)
	if err != nil {
		t.Fatal(err)
	}
	zone = append(zone, "author.test. IN MX 10 relay.example.test.\nauthor.test. IN TXT \"v=spf1 -all\"\n_dmarc.author.test. IN TXT \"v=DMARC1; p=reject\"\n"...)
	if err := os.WriteFile(st.zoneFile, zone, 0o644); err != nil {
		t.Fatal(err)
	}
	message := func(from string) string {
		f := filepath.Join(t.TempDir(), "m.eml")
		os.WriteFile(f, []byte("From: Author <"+from+">\r\nTo: <list@lists.example.test>\r\nSubject: [List] hello\r\n\r\nhi\r\n-- \r\nthe list footer\r\n"), 0o600)
		return f
	}
	check := func(out string, wants ...string) {
		t.Helper()
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in\n%s", want, out)
			}
		}
	}

	out, errOut, code := runCLI(t, "selftest", "message", "--config", st.configFile, "--as", devListLogin, message("alice@example.test"))
	if code != 0 {
		t.Errorf("alice: exit %d\n%s", code, errOut)
	}
	check(out, "author:       alice@example.test (example.test, from X-Original-From)",
		"from rewrite: auto: rewritten: example.test publishes p=reject at _dmarc.example.test",
		"dmarc=pass header.from=lists.example.test",
		"seen dmarc:   receivers evaluate the list's domain lists.example.test instead: dmarc=pass",
		"author dmarc: dmarc=pass for example.test without rewriting (RFC 9989",
		"dkim lists.example.test pass, aligned relaxed only",
		"arc:          arc=pass (i=1) header.oldest-pass=0",
		"forwarded: receivers see From lists.example.test: DMARC passes for it", "\nREADY\n")

	out, errOut, code = runCLI(t, "selftest", "message", "--config", st.configFile, "--as", devListLogin, "--json", message("bob@author.test"))
	var rep selftest.MessageReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Egress) != 1 || rep.Egress[0].Forwarder == nil {
		t.Fatalf("bob --json: exit %d\n%s\n%s", code, out, errOut)
	}
	fv := rep.Egress[0].Forwarder
	if fv.Author != "bob@author.test" || fv.AuthorDomain != "author.test" || !fv.Rewritten || fv.FromRewrite != "auto" ||
		!strings.Contains(fv.RewriteWhy, "author.test publishes p=reject at _dmarc.author.test") ||
		fv.AuthorDMARC9989.Result != "fail" || fv.AuthorDMARC7489.Result != "fail" || fv.AuthorDMARC9989.Disposition != "reject" ||
		fv.SeenDomain != devListDomain || !fv.SeenDMARCPass || !fv.ARCPass || fv.ARC != "arc=pass (i=1) header.oldest-pass=0" ||
		!strings.Contains(fv.Verdict, "without the rewrite DMARC fails for the author's domain author.test") {
		t.Errorf("bob: forwarder section %+v", fv)
	}

	// from_rewrite=off: the author's From reaches the receiver.
	users, err := os.ReadFile(st.usersFile)
	if err != nil || !strings.Contains(string(users), " from_rewrite=auto ") {
		t.Fatalf("users file: %v\n%s", err, users)
	}
	if err := os.WriteFile(st.usersFile, []byte(strings.Replace(string(users), " from_rewrite=auto ", " from_rewrite=off ", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, "selftest", "message", "--config", st.configFile, "--as", devListLogin, message("bob@author.test"))
	if code != 1 {
		t.Errorf("off: exit %d, want 1 (DMARC fails for author.test)\n%s", code, errOut)
	}
	check(out, "author:       bob@author.test (author.test, from From)",
		"from rewrite: off: kept: from_rewrite=off (author.test publishes p=reject at _dmarc.author.test)",
		"author dmarc: dmarc=fail for author.test without rewriting (RFC 9989",
		"author dmarc: dmarc=fail for author.test without rewriting (RFC 7489",
		"dmarc=fail header.from=author.test",
		"arc:          arc=pass (i=1) header.oldest-pass=0",
		"receivers see the author's From author.test: DMARC fails for it",
		"receivers that honour ARC would accept on the chain's word (arc=pass (i=1) header.oldest-pass=0)", "\nNOT READY\n")
	if strings.Contains(out, "seen dmarc:") {
		t.Errorf("off: a seen-dmarc line without a rewrite\n%s", out)
	}
}
