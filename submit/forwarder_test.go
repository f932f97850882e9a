package submit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/arc"
	"sealgate/internal/config"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/internal/srs"
	"sealgate/keys"
	"sealgate/relay"
	"sealgate/sign"
	"sealgate/verify"
)

func TestForwarderStepOrder(t *testing.T) {
	var names []string
	for _, st := range forwarderSteps {
		names = append(names, st.name)
	}
	want := "verify, strip forged results, from rewrite, srs, trace, sign, seal, spool"
	if got := strings.Join(names, ", "); got != want {
		t.Errorf("forwarder steps: %s; want %s", got, want)
	}
}

// fwdWorld is a relay (ARC as relay.test), a list domain with keys (lists.test), author
// domains with each DMARC policy, and a DNS zone publishing all their keys.
type fwdWorld struct {
	ring    *sign.KeyRing
	arcKey  ed25519.PrivateKey
	authors map[string]ed25519.PrivateKey
	zone    string
	srs     *srs.SRS
}

func newFwdWorld(t *testing.T) *fwdWorld {
	w := &fwdWorld{authors: map[string]ed25519.PrivateKey{}}
	_, listKey, _ := ed25519.GenerateKey(rand.Reader)
	_, w.arcKey, _ = ed25519.GenerateKey(rand.Reader)
	w.ring = mustKeyRing(sign.DomainKeys{Domain: "lists.test", Keys: []sign.Key{{Selector: "lst", Signer: listKey}}},
		sign.DomainKeys{Domain: "fwd.test", Keys: []sign.Key{{Selector: "lst", Signer: listKey}}})
	var z strings.Builder
	z.WriteString("$TTL 300\n")
	z.WriteString(keys.DNSRecord(listKey.Public(), "lst", "lists.test") + "\n")
	z.WriteString(keys.DNSRecord(listKey.Public(), "lst", "fwd.test") + "\n")
	z.WriteString(keys.DNSRecord(w.arcKey.Public(), "arc", "relay.test") + "\n")
	z.WriteString("_dmarc.lists.test. IN TXT \"v=DMARC1; p=reject\"\n")
	z.WriteString("lists.test. IN TXT \"v=spf1 ip4:192.0.2.25 -all\"\n")
	z.WriteString("fwd.test. IN TXT \"v=spf1 ip4:192.0.2.25 -all\"\n")
	z.WriteString("lists.test. IN A 192.0.2.25\nfwd.test. IN A 192.0.2.25\n")
	for _, a := range []struct{ domain, policy string }{
		{"none.test", "none"}, {"quarantine.test", "quarantine"}, {"reject.test", "reject"},
	} {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		w.authors[a.domain] = k
		z.WriteString(keys.DNSRecord(k.Public(), "a", a.domain) + "\n")
		z.WriteString("_dmarc." + a.domain + ". IN TXT \"v=DMARC1; p=" + a.policy + "\"\n")
		z.WriteString(a.domain + ". IN TXT \"v=spf1 -all\"\n" + a.domain + ". IN A 192.0.2.99\n")
	}
	w.zone = z.String()
	w.srs = &srs.SRS{Secrets: [][]byte{[]byte("a secret of sixteen bytes")}}
	return w
}

// original returns a message from alice at domain, signed by the author's domain, with
// the body and header a list would then change.
func (w *fwdWorld) original(t *testing.T, domain, extraHeader string) string {
	t.Helper()
	raw := "From: Alice Example <alice@" + domain + ">\r\nTo: team@lists.test\r\nSubject: plans\r\n" +
		"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@" + domain + ">\r\n" + extraHeader + "\r\nhello list\r\n"
	hdr, body, err := sign.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := sign.Sign(hdr, dkimcore.HashBody(body, dkimcore.Relaxed), &sign.Options{Domain: domain, Keys: []sign.Key{{Selector: "a", Signer: w.authors[domain]}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(append(dkimcore.Header(sigs).Bytes(), raw...))
}

// listEdit is what a list does: a subject tag and a footer (breaking the author's DKIM),
// after its own verification recorded in Authentication-Results.
func listEdit(msg string) string {
	msg = strings.Replace(msg, "Subject: plans", "Subject: [team] plans", 1)
	return "Authentication-Results: mx.lists.test; dkim=pass header.d=author; arc=none\r\n" +
		"Authentication-Results: stranger.test; dkim=pass header.d=forged\r\n" +
		msg + "-- \r\nteam mailing list\r\n"
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// run accepts msg (CRLF) from id with MAIL FROM from, hashing the body as the session does,
// and returns the spooled message and envelope sender, or the refusal.
func (w *fwdWorld) run(t *testing.T, id *Identity, from, msg string, logs io.Writer) (string, string, error) {
	t.Helper()
	spool, err := relay.OpenSpool(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	if logs == nil {
		logs = io.Discard
	}
	p := &Pipeline{Hostname: "relay.test", AuthServID: "relay.test", KeyRing: w.ring, Spool: spool,
		ARC:      &ARCSealer{Domain: "relay.test", Selector: "arc", Signer: w.arcKey},
		Resolver: resolvertest.NewZone(t, w.zone), SRS: w.srs,
		Log: slog.New(slog.NewTextHandler(logs, nil))}
	hdr, body, err := sign.ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	in, err := spool.Create()
	if err != nil {
		t.Fatal(err)
	}
	in.Write(body)
	h := dkimcore.NewBodyHasher(p.BodyCanonicalizationsFor(id, hdr)...)
	h.Write(body)
	qid, err := p.Accept(context.Background(), &Submission{
		Identity: id, From: from, To: []string{"member@example.net"}, ClientIP: net.IPv4(192, 0, 2, 7),
		Header: hdr, Body: in, Bodies: h.Sum(),
	})
	if err != nil {
		return "", "", err
	}
	env, rc, err := spool.Open(qid)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b), env.From, nil
}

// verify runs our inbound verifier over out as a receiver at 192.0.2.25's next hop would.
func (w *fwdWorld) verify(t *testing.T, out, mailFrom string) *verify.Report {
	t.Helper()
	rep, err := verify.Verify(context.Background(), verify.Envelope{IP: netip.MustParseAddr("192.0.2.25"), HELO: "relay.test", MailFrom: mailFrom},
		strings.NewReader(out), &verify.Options{Resolver: resolvertest.NewZone(t, w.zone), AuthServID: "mx.example.net"})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func listIdentity(t *testing.T, rewrite string) *Identity {
	t.Helper()
	id := NewIdentity("team-list", KindClientNetwork, MustParsePatterns("*@lists.test"))
	f, err := NewForwarder(config.ForwarderRules{Role: config.RoleForwarder, SignAs: "lists.test",
		ListAddress: "team@lists.test", ListName: "Team", FromRewrite: rewrite, TrustedAuthservIDs: []string{"mx.lists.test"}})
	if err != nil {
		t.Fatal(err)
	}
	id.Forwarder = f
	return id
}

func headerOf(msg string) string {
	h, _, _ := strings.Cut(msg, "\r\n\r\n")
	return h + "\r\n"
}

// A list's message: the From is someone else's (no From check), the signature is the
// list's, the seal carries the list's trusted results and ours, and the author's DMARC
// fails while ARC passes.
func TestForwarderList(t *testing.T) {
	w := newFwdWorld(t)
	id := listIdentity(t, config.FromRewriteOff)
	var logs logBuffer
	out, from, err := w.run(t, id, "team-bounces@lists.test", listEdit(w.original(t, "reject.test", "")), &logs)
	if err != nil {
		t.Fatal(err)
	}
	h := headerOf(out)
	if from != "team-bounces@lists.test" {
		t.Errorf("envelope sender %q changed without SRS", from)
	}
	if !strings.HasPrefix(h, "ARC-Seal: i=1;") || !strings.Contains(h, "cv=none") {
		t.Errorf("no i=1 seal on top:\n%s", h)
	}
	aar := h[strings.Index(h, "ARC-Authentication-Results:"):]
	aar = aar[:strings.Index(aar, "\r\n")+2+strings.Index(aar[strings.Index(aar, "\r\n")+2:], "\r\nDKIM-Signature")]
	for _, want := range []string{"relay.test", "auth=pass smtp.auth=team-list", "dkim=fail", "header.d=reject.test",
		"arc=none", "dkim=pass (mx.lists.test) header.d=author"} {
		if !strings.Contains(aar, want) {
			t.Errorf("AAR lacks %q:\n%s", want, aar)
		}
	}
	if strings.Contains(aar, "forged") || strings.Count(aar, "arc=") != 1 {
		t.Errorf("AAR carries an untrusted result or a second arc=:\n%s", aar)
	}
	if !strings.Contains(h, "From: Alice Example <alice@reject.test>") || strings.Contains(h, "X-Original-From") {
		t.Errorf("From changed with from_rewrite off:\n%s", h)
	}
	rep := w.verify(t, out, from)
	var listPass, authorFail bool
	for _, d := range rep.DKIM {
		listPass = listPass || d.Domain == "lists.test" && d.Result == "pass"
		authorFail = authorFail || d.Domain == "reject.test" && d.Result == "fail"
	}
	if !listPass || !authorFail {
		t.Errorf("DKIM: %+v", rep.DKIM)
	}
	if rep.ARC.Result != "pass" || rep.ARC.Instances != 1 || rep.ARC.OldestPass != 0 {
		t.Errorf("ARC = %+v, want pass, 1 instance, oldest-pass 0", rep.ARC)
	}
	if rep.DMARC9989.Result != "fail" || rep.DMARC9989.AuthorDomain != "reject.test" || rep.DMARC9989.Policy != "reject" {
		t.Errorf("DMARC = %+v, want fail for reject.test", rep.DMARC9989)
	}
	if !strings.Contains(logs.String(), "forwarded message verified") || !strings.Contains(logs.String(), "sealed forwarded message") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// A forwarder still needs its envelope sender within may_send_as (without SRS), and a
// message claiming our authserv-id loses that field.
func TestForwarderEnvelopeAndForgedResults(t *testing.T) {
	w := newFwdWorld(t)
	id := listIdentity(t, config.FromRewriteOff)
	if e := CheckEnvelopeSender(id, "alice@reject.test"); e == nil || e.Code != 553 {
		t.Errorf("MAIL FROM outside may_send_as: %v", e)
	}
	if e := CheckEnvelopeSender(id, "team-bounces@lists.test"); e != nil {
		t.Errorf("MAIL FROM within may_send_as: %v", e)
	}
	msg := "Authentication-Results: relay.test; dkim=pass header.d=reject.test\r\n" + listEdit(w.original(t, "reject.test", ""))
	out, _, err := w.run(t, id, "team-bounces@lists.test", msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "Authentication-Results: relay.test;") {
		t.Errorf("forged results kept:\n%s", headerOf(out))
	}
}

// A chain that already failed gets no new set, and the log says so; a chain whose newest
// seal says cv=fail neither. The message is still signed and accepted.
func TestForwarderFailedChainNotSealed(t *testing.T) {
	w := newFwdWorld(t)
	id := listIdentity(t, config.FromRewriteOff)
	orig := w.original(t, "none.test", "")
	hdr, body, _ := sign.ReadMessage(strings.NewReader(orig))
	r := resolvertest.NewZone(t, w.zone)
	sealed := func(h dkimcore.Header, b []byte) string {
		fields, _, err := arc.Seal(context.Background(), h, dkimcore.HashBody(b, dkimcore.Relaxed), &arc.SealOptions{
			Domain: "relay.test", Selector: "arc", Signer: w.arcKey, AuthServID: "hop.test", Results: []string{"spf=pass"}, Resolver: r})
		if err != nil {
			t.Fatal(err)
		}
		return string(append(dkimcore.Header(append(fields, h...)).Bytes(), "\r\n"...)) + string(b)
	}
	// One good set, then the body changes: AMS(1) no longer verifies.
	broken := sealed(hdr, body) + "changed after the seal\r\n"
	var logs logBuffer
	out, _, err := w.run(t, id, "team-bounces@lists.test", broken, &logs)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "ARC-Seal:") != 1 || strings.Contains(out, "ARC-Seal: i=2") {
		t.Errorf("a failed chain got a new set:\n%s", headerOf(out))
	}
	if !strings.Contains(logs.String(), "not ARC-sealed: the incoming ARC chain failed validation") {
		t.Errorf("log does not say why:\n%s", logs.String())
	}
	if !strings.Contains(headerOf(out), "d=lists.test") {
		t.Errorf("not signed as the list:\n%s", headerOf(out))
	}

	// A newest seal that says cv=fail.
	hdr2, body2, _ := sign.ReadMessage(strings.NewReader(broken))
	cvFail := sealed(hdr2, body2)
	if !strings.Contains(cvFail, "cv=fail") {
		t.Fatalf("test setup: the second set should say cv=fail:\n%s", headerOf(cvFail))
	}
	logs = logBuffer{}
	out, _, err = w.run(t, id, "team-bounces@lists.test", cvFail, &logs)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "ARC-Seal: i=3") || !strings.Contains(logs.String(), "not ARC-sealed") {
		t.Errorf("cv=fail chain: sealed again or not logged:\n%s\n%s", headerOf(out), logs.String())
	}
}

// from_rewrite for each mode and author policy: off never, auto for quarantine and reject
// only, always for all; a rewritten message passes DMARC for the list's domain.
func TestForwarderFromRewrite(t *testing.T) {
	w := newFwdWorld(t)
	for _, mode := range []string{config.FromRewriteOff, config.FromRewriteAuto, config.FromRewriteAlways} {
		for _, dom := range []string{"none.test", "quarantine.test", "reject.test"} {
			t.Run(mode+"/"+dom, func(t *testing.T) {
				out, from, err := w.run(t, listIdentity(t, mode), "team-bounces@lists.test", listEdit(w.original(t, dom, "")), nil)
				if err != nil {
					t.Fatal(err)
				}
				h := headerOf(out)
				want := mode == config.FromRewriteAlways || mode == config.FromRewriteAuto && dom != "none.test"
				rewritten := strings.Contains(h, "\r\nFrom: \"Alice Example via Team\" <team@lists.test>\r\n")
				if rewritten != want {
					t.Fatalf("rewritten = %v, want %v:\n%s", rewritten, want, h)
				}
				rep := w.verify(t, out, from)
				if !want {
					if rep.DMARC9989.Result != "fail" || rep.DMARC9989.AuthorDomain != dom {
						t.Errorf("DMARC = %+v, want fail for %s", rep.DMARC9989, dom)
					}
					return
				}
				for _, f := range []string{"\r\nReply-To: Alice Example <alice@" + dom + ">\r\n", "\r\nX-Original-From: Alice Example <alice@" + dom + ">\r\n"} {
					if !strings.Contains(h, f) {
						t.Errorf("header lacks %q:\n%s", f, h)
					}
				}
				if rep.DMARC9989.Result != "pass" || rep.DMARC9989.AuthorDomain != "lists.test" ||
					rep.DMARC7489.Result != "pass" {
					t.Errorf("DMARC after rewriting = %+v / %+v, want pass for lists.test", rep.DMARC9989, rep.DMARC7489)
				}
				if rep.ARC.Result != "pass" {
					t.Errorf("ARC = %+v", rep.ARC)
				}
			})
		}
	}

	// An existing Reply-To stays as it was, and is the only one.
	out, _, err := w.run(t, listIdentity(t, config.FromRewriteAlways), "team-bounces@lists.test",
		listEdit(w.original(t, "none.test", "Reply-To: team@lists.test\r\n")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := headerOf(out); strings.Count(h, "Reply-To:") != 1 || !strings.Contains(h, "Reply-To: team@lists.test\r\n") {
		t.Errorf("existing Reply-To not kept:\n%s", h)
	}

	// A name without ASCII is encoded; a From without a name shows the address in words.
	utf := strings.Replace(w.original(t, "none.test", ""), "From: Alice Example <", "From: =?utf-8?q?Ren=C3=A9e?= <", 1)
	out, _, err = w.run(t, listIdentity(t, config.FromRewriteAlways), "team-bounces@lists.test", utf, nil)
	if err != nil || !strings.Contains(out, "From: =?utf-8?q?Ren=C3=A9e_via_Team?= <team@lists.test>") {
		t.Errorf("encoded name: %v\n%s", err, headerOf(out))
	}
	bare := strings.Replace(w.original(t, "none.test", ""), "From: Alice Example <alice@none.test>", "From: alice@none.test", 1)
	out, _, err = w.run(t, listIdentity(t, config.FromRewriteAlways), "team-bounces@lists.test", bare, nil)
	if err != nil || !strings.Contains(out, `From: "alice at none.test via Team" <team@lists.test>`) {
		t.Errorf("bare address: %v\n%s", err, headerOf(out))
	}

	// Without a From there is nothing to rewrite: refused.
	noFrom := "To: team@lists.test\r\nSubject: x\r\n\r\nbody\r\n"
	var se *smtp.SMTPError
	if _, _, err := w.run(t, listIdentity(t, config.FromRewriteAuto), "team-bounces@lists.test", noFrom, nil); !errors.As(err, &se) || se.Code != 550 {
		t.Errorf("no From: %v", err)
	}
}

// A plain forwarder with SRS: any envelope sender is taken, rewritten into its domain, SPF
// passes there at the receiver, and the address reverses to the original.
func TestForwarderSRS(t *testing.T) {
	w := newFwdWorld(t)
	id := NewIdentity("alias-host", KindClientNetwork, MustParsePatterns("*@fwd.test"))
	f, err := NewForwarder(config.ForwarderRules{Role: config.RoleForwarder, SignAs: "fwd.test", SRS: true})
	if err != nil {
		t.Fatal(err)
	}
	id.Forwarder = f
	if e := CheckEnvelopeSender(id, "alice@reject.test"); e != nil {
		t.Errorf("an SRS forwarder's MAIL FROM: %v", e)
	}
	if e := CheckEnvelopeSender(id, "alice@[192.0.2.1]"); e == nil {
		t.Error("an address literal passed for an SRS forwarder")
	}
	out, from, err := w.run(t, id, "alice@reject.test", w.original(t, "reject.test", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(from, "SRS0=") || !strings.HasSuffix(from, "=reject.test=alice@fwd.test") {
		t.Fatalf("envelope sender = %q, want SRS0=...=reject.test=alice@fwd.test", from)
	}
	if back, err := w.srs.Reverse(from); err != nil || back != "alice@reject.test" {
		t.Errorf("Reverse(%q) = %q, %v", from, back, err)
	}
	r := resolvertest.NewZone(t, w.zone)
	ip := netip.MustParseAddr("192.0.2.25")
	if spf := verify.CheckSPF(context.Background(), r, ip, "relay.test", from); spf.Result != "pass" {
		t.Errorf("SPF for %s = %+v, want pass", from, spf)
	}
	if spf := verify.CheckSPF(context.Background(), r, ip, "relay.test", "alice@reject.test"); spf.Result != "fail" {
		t.Errorf("SPF for the original sender = %+v, want fail (why SRS is needed)", spf)
	}
	// The author's DKIM still verifies (nothing changed the message), so DMARC passes too.
	rep := w.verify(t, out, from)
	if rep.DMARC9989.Result != "pass" || rep.ARC.Result != "pass" {
		t.Errorf("DMARC %+v, ARC %+v", rep.DMARC9989, rep.ARC)
	}
	// The null sender stays null.
	id.AllowNullSender = true
	if _, from, err := w.run(t, id, "", w.original(t, "reject.test", ""), nil); err != nil || from != "" {
		t.Errorf("null sender: %q, %v", from, err)
	}
	// Without a secret loaded the message is deferred, not sent unrewritten.
	w.srs = nil
	var se *smtp.SMTPError
	if _, _, err := w.run(t, id, "alice@reject.test", w.original(t, "reject.test", ""), nil); !errors.As(err, &se) || se.Code != 451 {
		t.Errorf("no SRS secret: %v", err)
	}
}
