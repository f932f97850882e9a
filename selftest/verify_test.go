package selftest

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/arc"
	"sealgate/internal/authres"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
)

// stagedZone is a sending domain set up as the standards' example: relay with FCrDNS, SPF
// for the bounce domain and HELO, DKIM and DMARC p=reject for corp.example.
func stagedZone() string {
	return `
relay.corp.example.         A   192.0.2.25
relay.corp.example.         TXT "v=spf1 a -all"
25.2.0.192.in-addr.arpa.    PTR relay.corp.example.
corp.example.               MX  10 mx.corp.example.
mx.corp.example.            A   127.0.0.1
bounce.corp.example.        MX  10 mx.corp.example.
bounce.corp.example.        TXT "v=spf1 ip4:192.0.2.25 -all"
_dmarc.corp.example.        TXT "v=DMARC1; p=reject; rua=mailto:d@corp.example"
other.example.              A   192.0.2.1
other.example.              TXT "v=spf1 -all"
slowspf.example.            TXT "v=spf1 include:hang.example -all"
nullmx.example.             MX  0 .
25.2.0.192.bl.example.      A   127.0.0.2
25.2.0.192.bl.example.      TXT "listed: see https://bl.example"
` + dkimRecord("corp.example") + dkimRecord("other.example")
}

// TestVerifyStaged: the verdict of a receiver following the staged flow.
func TestVerifyStaged(t *testing.T) {
	o := testOptions(t, stagedZone(), "hang.example")
	good := signed(t, message("Ana <ana@corp.example>"), "corp.example")
	foreign := signed(t, message("ana@corp.example"), "other.example")
	env := Envelope{IP: clientIP, HELO: "relay.corp.example", MailFrom: "b+1@bounce.corp.example"}
	for _, tc := range []struct {
		name    string
		env     Envelope
		msg     string
		zones   []string
		action  string
		stage   Stage
		reply   string
		checkOK map[string]string // "stage name" -> result
	}{
		{"everything passes", env, good, nil, "accept", StageData, "",
			map[string]string{"connect iprev": "pass", "helo helo": "pass", "mail spf": "pass", "mail spf-helo": "pass",
				"data dkim": "pass", "data from-domain": "exists", "data dmarc": "pass", "connect dnsbl": "not checked", "rcpt callback": "not checked"}},
		{"DNSBL listing refuses at RCPT", env, good, []string{"bl.example"}, "reject", StageRcpt, "554 5.7.1", map[string]string{"connect dnsbl": "listed"}},
		{"SPF fail refuses at RCPT", Envelope{IP: clientIP, HELO: "relay.corp.example", MailFrom: "x@other.example"}, good, nil, "reject", StageRcpt, "550 5.7.23",
			map[string]string{"mail spf": "fail"}},
		{"SUBMITTER with a DMARC domain waits for DATA, where DKIM passes", Envelope{IP: clientIP, HELO: "relay.corp.example", MailFrom: "x@other.example", Submitter: "ana@corp.example"}, good, nil, "accept", StageData, "",
			map[string]string{"mail spf": "fail", "rcpt submitter": "wait for data", "data pra": "pass", "data dmarc": "pass"}},
		{"SUBMITTER that is not the header's PRA", Envelope{IP: clientIP, HELO: "relay.corp.example", MailFrom: "b@bounce.corp.example", Submitter: "eve@corp.example"}, good, nil, "accept", StageData, "",
			map[string]string{"rcpt submitter": "spf aligned", "data pra": "fail"}},
		{"SPF temperror defers at RCPT", Envelope{IP: clientIP, HELO: "relay.corp.example", MailFrom: "x@slowspf.example"}, good, nil, "tempfail", StageRcpt, "451 4.4.3",
			map[string]string{"mail spf": "temperror"}},
		{"unaligned DKIM, but SPF passes aligned", env, foreign, nil, "accept", StageData, "",
			map[string]string{"data dkim": "pass", "data dmarc": "pass"}},
		{"unaligned DKIM and no SPF", Envelope{}, foreign, nil, "reject", StageData, "550 5.7.1 Email rejected per DMARC policy for corp.example",
			map[string]string{"data dkim": "pass", "data dmarc": "fail", "mail spf": "not checked", "connect iprev": "not checked"}},
		{"null reverse-path: the HELO identity's SPF fail refuses at RCPT", Envelope{IP: clientIP, HELO: "other.example", MailFrom: "<>"}, good, nil, "reject", StageRcpt, "550 5.7.23 SPF of other.example",
			map[string]string{"helo helo": "fail", "mail spf-helo": "fail"}},
		{"HELO with the receiver's own name", Envelope{IP: clientIP, HELO: "MX.test.example", MailFrom: "b@bounce.corp.example"}, good, nil, "accept", StageData, "",
			map[string]string{"helo helo": "fail"}},
		{"null reverse-path: the HELO identity is aligned", Envelope{IP: clientIP, HELO: "relay.corp.example", MailFrom: "<>"}, message("a@corp.example"), nil, "accept", StageData, "",
			map[string]string{"mail spf": "not checked", "mail spf-helo": "pass", "data dmarc": "pass"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oo := *o
			oo.DNSBLZones = tc.zones
			rep := run(t, tc.env, tc.msg, &oo)
			v := rep.Verdict
			if v.Action != tc.action || v.Stage != tc.stage || !strings.HasPrefix(v.Reply, tc.reply) {
				t.Errorf("verdict %+v, want %s at %s (%s)", v, tc.action, tc.stage, tc.reply)
			}
			for k, want := range tc.checkOK {
				stage, name, _ := strings.Cut(k, " ")
				if c := checkOf(t, rep, Stage(stage), name); c.Result != want {
					t.Errorf("%s: %s (%s), want %s", k, c.Result, c.Detail, want)
				}
			}
		})
	}
}

// TestFromEdgeCases: messages with no From, several From fields, a From with several domains
// or without a domain are reported as the RFCs say, never crashed on.
func TestFromEdgeCases(t *testing.T) {
	o := testOptions(t, stagedZone()+"_dmarc.other.example. TXT \"v=DMARC1; p=quarantine\"\n")
	body := "To: b@rcpt.example\r\nSubject: t\r\n\r\nHi.\r\n"
	for _, tc := range []struct {
		name, header      string
		problem           string
		r9989, r7489      string
		action, verdictRe string
	}{
		{"no From", "", "no From field", "permerror", "permerror", "reject", "550 5.7.1 no From field"},
		{"two From fields", "From: a@corp.example\r\nFrom: b@corp.example\r\n", "2 From fields", "permerror", "permerror", "reject", "550 5.7.1 2 From fields"},
		{"group without mailbox", "From: undisclosed-recipients:;\r\n", "no valid mailbox", "permerror", "permerror", "reject", "550 5.7.1"},
		{"address literal", "From: a@[192.0.2.1]\r\n", "has no domain", "permerror", "permerror", "reject", "550 5.7.1"},
		{"not an address", "From: nobody\r\n", "no valid mailbox", "permerror", "permerror", "reject", "550 5.7.1"},
		// One field, two domains: RFC 9989 does not apply DMARC, RFC 7489 applies the
		// strictest of the two.
		{"two domains", "From: a@corp.example, b@other.example\r\nSender: a@corp.example\r\n", "", "none", "fail", "reject", "550 5.7.1 Email rejected per DMARC policy for corp.example"},
		{"domain that does not exist", "From: a@nx.example\r\n", "", "none", "none", "reject", "550 5.7.1 the From domain nx.example does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := run(t, Envelope{}, tc.header+body, o)
			if rep.From.Problem == "" && tc.problem != "" || !strings.Contains(rep.From.Problem, tc.problem) {
				t.Errorf("problem %q, want %q", rep.From.Problem, tc.problem)
			}
			if rep.DMARC9989.Result != tc.r9989 || rep.DMARC7489.Result != tc.r7489 {
				t.Errorf("dmarc %s / %s, want %s / %s", rep.DMARC9989.Result, rep.DMARC7489.Result, tc.r9989, tc.r7489)
			}
			if rep.Verdict.Action != tc.action || !strings.HasPrefix(rep.Verdict.Reply, tc.verdictRe) {
				t.Errorf("verdict %+v", rep.Verdict)
			}
			if _, _, err := authres.Parse(strings.TrimPrefix(strings.TrimSuffix(rep.AuthenticationResults, "\r\n"), authres.FieldName+":")); err != nil {
				t.Errorf("Authentication-Results does not parse: %v\n%s", err, rep.AuthenticationResults)
			}
		})
	}
	rep := run(t, Envelope{}, "From: a@nx.example\r\n"+body, o)
	if c := checkOf(t, rep, StageData, "from-domain"); c.Result != "does not exist" || !strings.Contains(c.Detail, "NXDOMAIN") {
		t.Errorf("from-domain: %+v", c)
	}
}

// TestAuthenticationResults: the field carries spf, dkim per signature, dmarc, arc and
// iprev with their properties, parses back, and is folded.
func TestAuthenticationResults(t *testing.T) {
	o := testOptions(t, stagedZone())
	msg := signed(t, signed(t, message("ana@corp.example"), "corp.example"), "other.example")
	rep := run(t, Envelope{IP: clientIP, HELO: "relay.corp.example", MailFrom: "b@bounce.corp.example"}, msg, o)
	f := rep.AuthenticationResults
	if !strings.HasPrefix(f, "Authentication-Results: mx.test.example;\r\n ") || !strings.HasSuffix(f, "\r\n") {
		t.Fatalf("field:\n%s", f)
	}
	for line := range strings.SplitSeq(strings.TrimSuffix(f, "\r\n"), "\r\n") {
		if len(line) > 78 && strings.Contains(strings.TrimSpace(line), " ") {
			t.Errorf("line of %d characters could have been folded: %q", len(line), line)
		}
	}
	id, results, err := authres.Parse(strings.TrimPrefix(strings.TrimSuffix(f, "\r\n"), authres.FieldName+":"))
	if err != nil || id != "mx.test.example" {
		t.Fatalf("parse: %q %v\n%s", id, err, f)
	}
	want := []struct{ method, value, ptype, prop, pvalue string }{
		{"spf", "pass", "smtp", "mailfrom", "b@bounce.corp.example"},
		{"spf", "pass", "smtp", "helo", "relay.corp.example"},
		{"dkim", "pass", "header", "d", "other.example"},
		{"dkim", "pass", "header", "d", "corp.example"},
		{"dmarc", "pass", "header", "from", "corp.example"},
		{"arc", "none", "smtp", "remote-ip", "192.0.2.25"},
		{"iprev", "pass", "policy", "iprev", "192.0.2.25"},
	}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d:\n%s", len(results), len(want), f)
	}
	for i, w := range want {
		r := results[i]
		if v, _ := r.Get(w.ptype, w.prop); r.Method != w.method || r.Value != w.value || v != w.pvalue {
			t.Errorf("result %d: %s, want %s=%s %s.%s=%s", i, r, w.method, w.value, w.ptype, w.prop, w.pvalue)
		}
	}
	if v, _ := results[4].Get("policy", "dmarc"); v != "none" {
		t.Errorf("policy.dmarc=%q, want none (the disposition)", v)
	}
	if s, _ := results[2].Get("header", "s"); s != "s1" {
		t.Errorf("header.s=%q", s)
	}

	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"connect  iprev        pass", "data     dmarc        pass            RFC 9989", "RFC 7489", "\nverdict: accept at data\n"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("text lacks %q:\n%s", s, text.String())
		}
	}

	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back["verdict"].(map[string]any)["action"] != "accept" || back["dmarc_rfc9989"].(map[string]any)["result"] != "pass" ||
		len(back["dkim"].([]any)) != 2 || back["spf"].(map[string]any)["lookups"] != 0.0 {
		t.Errorf("JSON: %s", b)
	}
}

// smtpProbeServer is a receiving SMTP server for callback tests: it answers RCPT with
// rcptReply (probeReply for the random address of the accept-all probe) and records every
// command.
type smtpProbeServer struct {
	mu       sync.Mutex
	commands []string
}

func (s *smtpProbeServer) start(t *testing.T, rcptReply, probeReply string, greet bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c, rcptReply, probeReply, greet)
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func (s *smtpProbeServer) serve(c net.Conn, rcptReply, probeReply string, greet bool) {
	defer c.Close()
	if !greet {
		// Never greets: the client must give up on its own.
		_, _ = bufio.NewReader(c).ReadString('\n')
		return
	}
	w := bufio.NewWriter(c)
	r := bufio.NewReader(c)
	reply := func(s string) { w.WriteString(s + "\r\n"); w.Flush() }
	reply("220 mx.corp.example ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.commands = append(s.commands, line)
		s.mu.Unlock()
		switch verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0]); {
		case verb == "EHLO" || verb == "HELO":
			reply("250 mx.corp.example")
		case strings.HasPrefix(verb, "MAIL"), verb == "RSET", verb == "NOOP":
			reply("250 2.0.0 OK")
		case strings.HasPrefix(verb, "RCPT") && strings.Contains(line, "sealgate-probe-"):
			reply(probeReply)
		case strings.HasPrefix(verb, "RCPT"):
			reply(rcptReply)
		case verb == "DATA":
			reply("354 go ahead")
		case verb == "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 5.5.2 what")
		}
	}
}

func (s *smtpProbeServer) sent() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.commands, "|")
}

// TestCallback: MAIL FROM:<>, RCPT TO:<return path>, QUIT, never DATA; 250 is pass, 550 is
// fail, a server that never greets is unknown within the timeout, a null MX is fail.
func TestCallback(t *testing.T) {
	for _, tc := range []struct {
		name, rcptReply string
		greet           bool
		mailFrom        string
		result, reason  string
		acceptsAll      bool
	}{
		{"accepted", "250 2.1.5 OK", true, "b@bounce.corp.example", "pass", "accepts RCPT TO:<b@bounce.corp.example> from MAIL FROM:<>", false},
		{"accepts anything", "250 2.1.5 OK", true, "b@bounce.corp.example", "pass", "it accepts any recipient", true},
		{"refused", "550 5.1.1 no such user", true, "b@bounce.corp.example", "fail", "550 5.1.1 no such user", false},
		{"deferred", "450 4.2.1 try later", true, "b@bounce.corp.example", "unknown", "450", false},
		{"never greets", "", false, "b@bounce.corp.example", "unknown", "no mail server answered", false},
		{"null MX", "", true, "b@nullmx.example", "fail", "null MX", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &smtpProbeServer{}
			o := testOptions(t, stagedZone())
			probeReply := "550 5.1.1 no such user"
			if tc.acceptsAll {
				probeReply = "250 OK"
			}
			o.Callback, o.CallbackPort, o.CallbackTimeout = true, srv.start(t, tc.rcptReply, probeReply, tc.greet), 2*time.Second
			rep := run(t, Envelope{MailFrom: tc.mailFrom}, message("a@corp.example"), o)
			c := rep.Callback
			if c == nil || c.Result != tc.result || !strings.Contains(c.Reason, tc.reason) || c.AcceptsAll != tc.acceptsAll {
				t.Fatalf("callback %+v, want %s (%s)", c, tc.result, tc.reason)
			}
			sent := srv.sent()
			if strings.Contains(strings.ToUpper(sent), "DATA") {
				t.Errorf("DATA was sent: %s", sent)
			}
			if tc.greet && tc.result != "fail" || tc.name == "refused" {
				if want := "MAIL FROM:<>|RCPT TO:<" + tc.mailFrom + ">"; !strings.Contains(sent, want) {
					t.Errorf("commands %s, want %s", sent, want)
				}
			}
			if tc.result == "fail" && tc.name == "refused" && (rep.Verdict.Action != "reject" || rep.Verdict.Stage != StageRcpt || !strings.HasPrefix(rep.Verdict.Reply, "550 5.1.7")) {
				t.Errorf("verdict %+v", rep.Verdict)
			}
		})
	}
}

// TestVerifyErrors: input that cannot be used is an error, not a report.
func TestVerifyErrors(t *testing.T) {
	o := testOptions(t, "")
	for name, tc := range map[string]struct {
		env Envelope
		msg string
		o   *Options
	}{
		"no resolver":       {Envelope{}, message("a@x.example"), &Options{}},
		"bad MAIL FROM":     {Envelope{MailFrom: "no at sign"}, message("a@x.example"), o},
		"bad SUBMITTER":     {Envelope{Submitter: "nobody"}, message("a@x.example"), o},
		"malformed message": {Envelope{}, "not a header\r\n\r\n", o},
	} {
		if _, err := Verify(context.Background(), tc.env, strings.NewReader(tc.msg), tc.o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestVerifyDKIMAndDomainErrors: a key server that never answers gives dkim=temperror and,
// with nothing aligned passing, DMARC temperror and a deferral; a malformed key record gives
// permerror; a From domain whose lookups never answer is temperror, not "does not exist".
func TestVerifyDKIMAndDomainErrors(t *testing.T) {
	zone := stagedZone() + `
s1._domainkey.bad.example.  TXT "v=DKIM1; k=ed25519; p=not base64!"
bad.example.                A   192.0.2.1
_dmarc.bad.example.         TXT "v=DMARC1; p=reject"
slowkey.example.            A   192.0.2.1
_dmarc.slowkey.example.     TXT "v=DMARC1; p=reject"
_dmarc.slowdomain.example.  TXT "v=DMARC1; p=reject"
`
	o := testOptions(t, zone, "s1._domainkey.slowkey.example", "slowdomain.example")
	rep := run(t, Envelope{}, signed(t, message("a@slowkey.example"), "slowkey.example"), o)
	if c := checkOf(t, rep, StageData, "dkim"); c.Result != "temperror" {
		t.Errorf("dkim: %+v", c)
	}
	if rep.DMARC9989.Result != "temperror" || rep.Verdict.Action != "tempfail" || !strings.HasPrefix(rep.Verdict.Reply, "451 4.7.5") {
		t.Errorf("dmarc %s, verdict %+v", rep.DMARC9989.Result, rep.Verdict)
	}

	rep = run(t, Envelope{}, signed(t, message("a@bad.example"), "bad.example"), o)
	if c := checkOf(t, rep, StageData, "dkim"); c.Result != "permerror" {
		t.Errorf("dkim: %+v", c)
	}
	if rep.DMARC9989.Result != "fail" || rep.Verdict.Action != "reject" {
		t.Errorf("dmarc %s, verdict %+v", rep.DMARC9989.Result, rep.Verdict)
	}

	rep = run(t, Envelope{}, message("a@slowdomain.example"), o)
	if c := checkOf(t, rep, StageData, "from-domain"); c.Result != "temperror" || rep.From.Exists != nil {
		t.Errorf("from-domain: %+v, exists %v", c, rep.From.Exists)
	}
}

// TestQuoteAuthServID: an authserv-id that is not a token is written as a quoted-string and
// reads back the same.
func TestQuoteAuthServID(t *testing.T) {
	for _, id := range []string{"mx.example.net", "verifier@example.net", `odd "id"; x`} {
		f := authres.FormatField(authres.FieldName, quoteAuthServID(id), []string{"dkim=none"})
		got, _, err := authres.Parse(strings.TrimPrefix(strings.TrimSuffix(string(f), "\r\n"), authres.FieldName+":"))
		if err != nil || got != id {
			t.Errorf("%q: read back %q, %v (%s)", id, got, err, f)
		}
	}
	if q := quoteAuthServID("mx.example.net"); q != "mx.example.net" {
		t.Errorf("token quoted: %s", q)
	}
}

// sealed returns msg with an ARC set by the test key for d=domain (RFC 8617), and the
// sealer's zone record.
func sealed(t *testing.T, msg, domain string, r resolver.Resolver) string {
	t.Helper()
	hdr, body, err := readForTest(msg)
	if err != nil {
		t.Fatal(err)
	}
	bodies := dkimcore.HashBody(body, arc.RequiredCanonicalizations(hdr)...)
	fields, _, err := arc.Seal(context.Background(), hdr, bodies, &arc.SealOptions{
		Domain: domain, Selector: "s1", Signer: testKey(), AuthServID: "fwd." + domain,
		Results: []string{"dkim=pass header.d=corp.example"}, Resolver: r,
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range fields {
		b.Write(f)
	}
	b.Write(hdr.Bytes())
	b.WriteString("\r\n")
	b.Write(body)
	return b.String()
}

// TestVerifyARC: a forwarded message whose body a list changed: DKIM fails, ARC passes
// with the forwarder's seal, and DMARC fails (ARC is reported, not used to override it);
// a change after the seal makes ARC fail.
func TestVerifyARC(t *testing.T) {
	o := testOptions(t, stagedZone()+dkimRecord("list.example"))
	orig := signed(t, message("ana@corp.example"), "corp.example")
	changed := strings.Replace(orig, "Hello.", "Hello. [list footer]", 1)
	fwd := sealed(t, changed, "list.example", o.Resolver)
	rep := run(t, Envelope{}, fwd, o)
	if rep.ARC.Result != "pass" || rep.ARC.Instances != 1 || rep.DKIM[0].Result != "fail" || rep.DMARC9989.Result != "fail" {
		t.Errorf("arc %+v, dkim %s, dmarc %s", rep.ARC, rep.DKIM[0].Result, rep.DMARC9989.Result)
	}
	if !strings.Contains(rep.AuthenticationResults, "arc=pass header.oldest-pass=0 (i=1)") {
		t.Errorf("field:\n%s", rep.AuthenticationResults)
	}
	rep = run(t, Envelope{}, strings.Replace(fwd, "[list footer]", "[changed again]", 1), o)
	if rep.ARC.Result != "fail" || checkOf(t, rep, StageData, "arc").Result != "fail" {
		t.Errorf("after the seal: arc %+v", rep.ARC)
	}
}
