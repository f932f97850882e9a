package interop

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/netip"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/config"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/keys"
	"sealgate/relay"
	"sealgate/sign"
	"sealgate/submit"
	"sealgate/verify"
)

// signOriginal is the author's outbound server: dkimpy signs as author-example.com.
const signOriginal = `import sys, dkim
msg = open(sys.argv[1], 'rb').read()
key = open(sys.argv[2], 'rb').read()
sig = dkim.sign(msg, b'ext', b'author-example.com', key, include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])
sys.stdout.buffer.write(sig + msg)
`

// TestForwarderList plays a mailing list: an original signed by dkimpy as
// author-example.com (p=reject); the list verifies it (its Authentication-Results as
// mx.lists-example.com), tags the subject and adds a footer, which breaks that signature,
// and submits it over SMTP to sealgate as a forwarder. dkimpy and Mail::DKIM must find our
// ARC set on top and passing, the list's results in our AAR, and dkim=pass for
// d=lists-example.com; our verifier must report DMARC failing for author-example.com
// together with ARC passing and the oldest-pass instance, and so must Mail::DMARC; with
// from_rewrite auto, Mail::DMARC passes the message for lists-example.com. The names are
// under .com because Mail::DMARC takes no other From domains; the DNS is the test's own.
func TestForwarderList(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	authorKey, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	ourKey, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)

	// DNS: the author's key and p=reject, the list's key and policy, our ARC key.
	txt := map[string]string{}
	var zone strings.Builder
	zone.WriteString("$TTL 300\n")
	for _, r := range []record{{"ext", "author-example.com", authorKey.Public()}, {"lst", "lists-example.com", ourKey.Public()}, {ourARCSel, ourDomain, ourKey.Public()}} {
		zone.WriteString(keys.DNSRecord(r.pub, r.selector, r.domain) + "\n")
		text, err := dkimcore.KeyRecordText(r.pub)
		must(t, err)
		txt[keys.RecordName(r.selector, r.domain)] = text
	}
	zone.WriteString("_dmarc.author-example.com. IN TXT \"v=DMARC1; p=reject\"\n_dmarc.lists-example.com. IN TXT \"v=DMARC1; p=reject\"\n")
	zone.WriteString("author-example.com. IN TXT \"v=spf1 -all\"\nlists-example.com. IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n")
	zone.WriteString("author-example.com. IN A 192.0.2.1\nlists-example.com. IN A 127.0.0.1\n")
	dnsAddr := resolvertest.Start(t, zone.String())
	res := resolvertest.NewZone(t, zone.String())
	dnsJSON := writeJSON(t, filepath.Join(dir, "dns.json"), txt)

	// The original, signed by dkimpy.
	orig := "From: Alice Example <alice@author-example.com>\r\nTo: team@lists-example.com\r\nSubject: plans\r\n" +
		"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@author-example.com>\r\n\r\nSee you on Monday.\r\n"
	must(t, os.WriteFile(filepath.Join(dir, "orig.eml"), []byte(orig), 0o600))
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(authorKey)})
	must(t, os.WriteFile(filepath.Join(dir, "author.pem"), keyPEM, 0o600))
	signed, err := exec.Command(python, "-c", signOriginal, filepath.Join(dir, "orig.eml"), filepath.Join(dir, "author.pem")).Output()
	if err != nil {
		t.Fatalf("dkimpy signing the original: %v", err)
	}
	if !strings.HasPrefix(string(signed), "DKIM-Signature:") {
		t.Fatalf("dkimpy did not sign:\n%s", signed)
	}

	// The list: its verification, a subject tag, a footer.
	listed := "Authentication-Results: mx.lists-example.com;\r\n\tdkim=pass header.d=author-example.com header.s=ext;\r\n\tspf=pass smtp.mailfrom=author-example.com\r\n" +
		strings.Replace(string(signed), "Subject: plans", "Subject: [team] plans", 1) + "-- \r\nteam mailing list\r\n"

	// sealgate, with the list as a forwarder known by its address.
	spool, err := relay.OpenSpool(filepath.Join(dir, "spool"))
	must(t, err)
	defer spool.Close()
	ring, err := sign.NewKeyRing(sign.DomainKeys{Domain: "lists-example.com", Keys: []sign.Key{{Selector: "lst", Signer: ourKey}}})
	must(t, err)
	id := submit.NewIdentity("team-list", submit.KindClientNetwork, []addr.Pattern{mustPattern(t, "*@lists-example.com")})
	id.Forwarder, err = submit.NewForwarder(config.ForwarderRules{Role: config.RoleForwarder, SignAs: "lists-example.com",
		TrustedAuthservIDs: []string{"mx.lists-example.com"}})
	must(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &submit.Server{
		Hostname:  "relay.sealgate.test",
		Listeners: []submit.Listener{{Name: "smarthost", Address: "127.0.0.1:0", Mode: submit.ModeSmartHost, Network: true}},
		Limits:    submit.Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 10, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second},
		Networks:  []submit.NetworkIdentity{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Identity: id}},
		Pipeline: &submit.Pipeline{Hostname: "relay.sealgate.test", AuthServID: authServID, KeyRing: ring, Spool: spool, Log: log,
			ARC: &submit.ARCSealer{Domain: ourDomain, Selector: ourARCSel, Signer: ourKey}, Resolver: res},
		Log: log,
	}
	must(t, srv.Listen())
	go srv.Serve()
	defer srv.Close()
	must(t, smtp.SendMail(srv.Addrs()[0].String(), nil, "team-bounces@lists-example.com", []string{"member@example.net"}, []byte(listed)))

	ids, err := spool.List()
	must(t, err)
	if len(ids) != 1 {
		t.Fatalf("spool holds %d messages, want 1", len(ids))
	}
	env, rc, err := spool.Open(ids[0])
	must(t, err)
	out, err := io.ReadAll(rc)
	rc.Close()
	must(t, err)
	outPath := filepath.Join(dir, "out.eml")
	must(t, os.WriteFile(outPath, out, 0o600))
	head, _, _ := strings.Cut(string(out), "\r\n\r\n")
	if !strings.HasPrefix(head, "ARC-Seal: i=1;") {
		t.Errorf("our set is not on top:\n%s", head)
	}
	aar := head[strings.Index(head, "ARC-Authentication-Results:"):]
	aar = aar[:strings.Index(aar, "\r\nDKIM-Signature:")]
	for _, want := range []string{"i=1; " + authServID, "auth=pass", "dkim=pass (mx.lists-example.com) header.d=author-example.com", "spf=pass (mx.lists-example.com) smtp.mailfrom=author-example.com", "arc=none", "dkim=fail"} {
		if !strings.Contains(aar, want) {
			t.Errorf("our AAR lacks %q:\n%s", want, aar)
		}
	}

	// dkimpy.
	var py map[string]pyVerdict
	run(t, &py, python, filepath.Join("testdata", "verify.py"), writeJSON(t, filepath.Join(dir, "job.json"), map[string]any{"dns": dnsJSON, "messages": []string{outPath}}))
	pv := py[outPath]
	if pv.ARC.CV != "pass" || len(pv.ARC.Sets) != 1 || pv.ARC.Sets[0].I != 1 {
		t.Errorf("dkimpy ARC: %+v", pv.ARC)
	}
	if d, i := findPy(pv.DKIM, "lists-example.com", "lst"); i < 0 || d.Result != "pass" {
		t.Errorf("dkimpy: d=lists-example.com %+v", pv.DKIM)
	}
	if d, i := findPy(pv.DKIM, "author-example.com", "ext"); i < 0 || d.Result != "fail" {
		t.Errorf("dkimpy: the list's changes should break d=author-example.com: %+v", pv.DKIM)
	}

	// Mail::DKIM.
	var pl plOutput
	run(t, &pl, perl, filepath.Join("testdata", "verify.pl"), dnsPort(t, dnsAddr), writeJSON(t, filepath.Join(dir, "pljob.json"), []string{outPath}))
	plv := pl.Messages[outPath]
	if plv.ARC.Result != "pass" {
		t.Errorf("Mail::DKIM ARC: %+v", plv.ARC)
	}
	if d, i := findPl(plv.DKIM, "lists-example.com", "lst"); i < 0 || d.Result != "pass" {
		t.Errorf("Mail::DKIM: d=lists-example.com %+v", plv.DKIM)
	}

	// Ours, as the member's receiver.
	rep, err := verify.Verify(context.Background(), verify.Envelope{IP: netip.MustParseAddr("127.0.0.1"), HELO: "relay.sealgate.test", MailFrom: env.From},
		strings.NewReader(string(out)), &verify.Options{Resolver: res, AuthServID: "mx.example.net"})
	must(t, err)
	if rep.DMARC9989.Result != "fail" || rep.DMARC9989.AuthorDomain != "author-example.com" || rep.DMARC9989.Policy != "reject" {
		t.Errorf("our DMARC = %+v, want fail for author-example.com (p=reject)", rep.DMARC9989)
	}
	if rep.ARC.Result != "pass" || rep.ARC.Instances != 1 || rep.ARC.OldestPass != 0 {
		t.Errorf("our ARC = %+v, want pass with i=1 and oldest-pass 0", rep.ARC)
	}
	if !strings.Contains(rep.AuthenticationResults, "arc=pass") || !strings.Contains(rep.AuthenticationResults, "header.oldest-pass=0") {
		t.Errorf("our Authentication-Results:\n%s", rep.AuthenticationResults)
	}

	// Unchanged, the original's signature (dkimpy's default c=relaxed/simple) verifies in
	// our verify step: the session hashed the body the simple way too while DATA streamed.
	must(t, spool.Remove(ids[0]))
	must(t, smtp.SendMail(srv.Addrs()[0].String(), nil, "team-bounces@lists-example.com", []string{"member@example.net"}, signed))
	ids, err = spool.List()
	must(t, err)
	if len(ids) != 1 {
		t.Fatalf("spool holds %d messages, want 1", len(ids))
	}
	_, rc, err = spool.Open(ids[0])
	must(t, err)
	out, _ = io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(out), "c=relaxed/simple") {
		t.Fatalf("test setup: dkimpy did not sign c=relaxed/simple")
	}
	head, _, _ = strings.Cut(string(out), "\r\n\r\n")
	aar = head[strings.Index(head, "ARC-Authentication-Results:"):]
	aar = aar[:strings.Index(aar, "\r\nDKIM-Signature:")]
	if !strings.Contains(aar, "dkim=pass header.d=author-example.com") {
		t.Errorf("the unchanged original's signature did not verify in our AAR:\n%s", aar)
	}

	// Mail::DMARC (RFC 7489) on Mail::DKIM's verdicts: the list's message without From
	// rewriting fails DMARC for author-example.com (p=reject); with from_rewrite auto it passes for
	// lists-example.com.
	if out, err := exec.Command(perl, "-MMail::DMARC::PurePerl", "-e1").CombinedOutput(); err != nil {
		missingTool(t, "interop: Mail::DMARC is missing: install the Debian package libmail-dmarc-perl ("+firstLine(string(out))+")")
	}
	dmarcOf := func(path, from string) string {
		var pl plOutput
		run(t, &pl, perl, filepath.Join("testdata", "verify.pl"), dnsPort(t, dnsAddr), writeJSON(t, path+".json", []string{path}))
		var dkim []map[string]string
		for _, d := range pl.Messages[path].DKIM {
			dkim = append(dkim, map[string]string{"domain": d.D, "selector": d.S, "result": d.Result})
		}
		b, err := json.Marshal(map[string]any{"from": from, "dkim": dkim})
		must(t, err)
		cmd := exec.Command(perl, filepath.Join("..", "..", "verify", "testdata", "oracle", "dmarc_check.pl"), "127.0.0.1", dnsPort(t, dnsAddr))
		cmd.Stdin = strings.NewReader(string(b) + "\n")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		verdict, err := cmd.Output()
		if err != nil {
			t.Fatalf("dmarc_check.pl: %v\n%s", err, stderr.String())
		}
		return strings.TrimSpace(string(verdict))
	}
	if got := dmarcOf(outPath, "author-example.com"); got != "fail reject" {
		t.Errorf("Mail::DMARC on the list's message as it is: %q, want \"fail reject\"", got)
	}
	must(t, spool.Remove(ids[0]))
	id.Forwarder.ListAddress, id.Forwarder.ListName, id.Forwarder.FromRewrite = addr.Address{Local: "team", Domain: "lists-example.com"}, "Team", config.FromRewriteAuto
	must(t, smtp.SendMail(srv.Addrs()[0].String(), nil, "team-bounces@lists-example.com", []string{"member@example.net"}, []byte(listed)))
	ids, err = spool.List()
	must(t, err)
	if len(ids) != 1 {
		t.Fatalf("spool holds %d messages, want 1", len(ids))
	}
	_, rc, err = spool.Open(ids[0])
	must(t, err)
	out, _ = io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(out), "\r\nFrom: \"Alice Example via Team\" <team@lists-example.com>\r\n") {
		t.Fatalf("From not rewritten:\n%s", out)
	}
	rewrittenPath := filepath.Join(dir, "rewritten.eml")
	must(t, os.WriteFile(rewrittenPath, out, 0o600))
	if got := dmarcOf(rewrittenPath, "lists-example.com"); got != "pass none" {
		t.Errorf("Mail::DMARC on the rewritten message: %q, want \"pass none\"", got)
	}
}

func mustPattern(t *testing.T, s string) addr.Pattern {
	t.Helper()
	p, err := addr.ParsePattern(s)
	must(t, err)
	return p
}

func dnsPort(t *testing.T, hostport string) string {
	t.Helper()
	_, port, ok := strings.Cut(hostport, ":")
	if !ok {
		t.Fatalf("DNS address %q", hostport)
	}
	return port
}
