package relay

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"sealgate/internal/smtpclient"
)

const utf8OrigHeader = "From: Jörg <sender@example.com>\r\nTo: 用户@example.net\r\nSubject: Grüße\r\nMessage-ID: <orig-u@example.com>\r\n"

// globalDSN checks that raw is an RFC 6533 DSN and returns its parts' content
// types and bodies.
func globalDSN(t *testing.T, raw []byte) (types []string, bodies [][]byte) {
	t.Helper()
	_, parts, bodies := reportParts(t, raw, "global-delivery-status") // RFC 6533 §6
	for _, p := range parts {
		types = append(types, p.Header.Get("Content-Type"))
	}
	return types, bodies
}

// A message that needs SMTPUTF8 (a UTF-8 recipient and header) meets a next hop
// without it: nothing is sent (no downgrade), the recipient fails with 5.6.7,
// and the DSN is a global one (RFC 6533) that goes out without SMTPUTF8, since
// its own envelope and header are ASCII.
func TestUTF8NextHopWithoutSMTPUTF8(t *testing.T) {
	h := startNextHop(t) // go-smtp without EnableSMTPUTF8
	s := testSpool(t, t.TempDir())
	keys, txt := dsnKeys(t)
	ds := &DSNSender{Spool: s, Hostname: "relay.example.org", From: "MAILER-DAEMON@example.org", Keys: keys, Logger: quietLogger()}
	r := &Runner{Spool: s, Deliverer: nextHop(h), Logger: quietLogger(), Bouncer: ds, PollInterval: time.Hour}
	id := commit(t, s, &Envelope{From: "sender@example.com", To: []string{"用户@example.net"}, UTF8: true,
		Notify: []string{""}, ORcpt: []string{"utf-8;用户@example.net"}}, utf8OrigHeader, "Hallo.\r\n")
	runRunner(t, r)
	var dsn received
	select {
	case dsn = <-h.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no DSN arrived at the next hop")
	}
	if dsn.from != "" || len(dsn.to) != 1 || dsn.to[0] != "sender@example.com" {
		t.Fatalf("next hop got from <%s> to %v; want only the DSN, from <> to sender@example.com", dsn.from, dsn.to)
	}
	if dsn.utf8 {
		t.Error("the DSN was sent with SMTPUTF8; its envelope and header are ASCII")
	}
	if dsn.body != "8BITMIME" {
		t.Errorf("the DSN, whose parts are 8bit, was sent with BODY=%q, want 8BITMIME", dsn.body)
	}
	types, bodies := globalDSN(t, dsn.data)
	if !strings.HasPrefix(types[0], "text/plain; charset=utf-8") || !bytes.Contains(bodies[0], []byte("<用户@example.net>")) {
		t.Errorf("part 1 %q: %q; want UTF-8 text naming the recipient", types[0], bodies[0])
	}
	if types[1] != "message/global-delivery-status" {
		t.Errorf("part 2 is %q, want message/global-delivery-status", types[1])
	}
	for _, want := range []string{"Final-Recipient: utf-8; 用户@example.net\r\n", "Original-Recipient: utf-8; 用户@example.net\r\n",
		"Action: failed\r\n", "Status: 5.6.7\r\n"} {
		if !bytes.Contains(bodies[1], []byte(want)) {
			t.Errorf("delivery status lacks %q:\n%s", want, bodies[1])
		}
	}
	if types[2] != "message/global-headers" || !bytes.Contains(bodies[2], []byte("Subject: Grüße")) {
		t.Errorf("part 3 %q: %q; want message/global-headers with the original header", types[2], bodies[2])
	}
	verifyDKIMpy(t, dsn.data, txt)
	waitFor(t, "the message in failed/", func() bool { return failedEnvelope(s, id) != nil })
	if f := failedEnvelope(s, id).Failed; len(f) != 1 || f[0].Status != "5.6.7" {
		t.Errorf("failed recipients %+v, want one with status 5.6.7", f)
	}
	for _, tr := range h.transactions() {
		if tr.from != "" {
			t.Errorf("the original message reached the next hop: %+v", tr)
		}
	}
}

// A next hop that offers SMTPUTF8 gets the message with SMTPUTF8 on MAIL FROM
// and the UTF-8 address as it is; an ASCII message goes without the parameter.
func TestUTF8NextHopWithSMTPUTF8(t *testing.T) {
	h := &nextHopServer{arrived: make(chan received, 10), utf8: true}
	h.listen(t, "127.0.0.1:0")
	s := testSpool(t, t.TempDir())
	r := &Runner{Spool: s, Deliverer: nextHop(h), Logger: quietLogger(), PollInterval: time.Hour}
	commit(t, s, &Envelope{From: "jörg@example.com", To: []string{"用户@example.net"}, UTF8: true,
		Notify: []string{""}, ORcpt: []string{"utf-8;用户+x=y@example.net"}}, utf8OrigHeader, "Hallo.\r\n")
	commit(t, s, &Envelope{From: "sender@example.com", To: []string{"b@example.net"}}, dsnOrigHeader, "Hi.\r\n")
	runRunner(t, r)
	got := map[string]received{}
	for len(got) < 2 {
		select {
		case m := <-h.arrived:
			got[m.from] = m
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 2 messages arrived", len(got))
		}
	}
	if m := got["jörg@example.com"]; !m.utf8 || len(m.to) != 1 || m.to[0] != "用户@example.net" || !bytes.Contains(m.data, []byte("Subject: Grüße")) {
		t.Errorf("UTF-8 message arrived as %+v; want SMTPUTF8, to 用户@example.net, header intact", m)
	}
	// The utf-8 ORCPT goes as utf-8-addr-xtext (RFC 6533 §3), which go-smtp decodes.
	if m := got["jörg@example.com"]; len(m.orcpts) != 1 || m.orcpts[0] != "UTF-8;用户+x=y@example.net" {
		t.Errorf("ORCPT arrived as %q, want UTF-8;用户+x=y@example.net", m.orcpts)
	}
	if m := got["sender@example.com"]; m.utf8 {
		t.Error("an ASCII message was sent with SMTPUTF8")
	}
}

// A DSN to a UTF-8 reverse-path needs SMTPUTF8 itself (RFC 6533 §4).
func TestDSNToUTF8Sender(t *testing.T) {
	sink := &dsnSink{reply: map[string]*smtpclient.ReplyError{
		"a@example.net": {Command: "RCPT TO:<a@example.net>", Code: 550, Message: "5.1.1 no such user here"},
	}}
	env := &Envelope{From: "jörg@example.com", To: []string{"a@example.net"}, UTF8: true}
	runDSN(t, sink, env, nil)
	waitFor(t, "the DSN delivered", func() bool { return len(sink.dsns()) == 1 })
	sink.mu.Lock()
	denv := sink.gotEnvs[0]
	sink.mu.Unlock()
	if !denv.UTF8 || denv.EightBit || denv.To[0] != "jörg@example.com" {
		t.Errorf("DSN envelope %+v: want UTF8 set, EightBit not (its parts are ASCII), to jörg@example.com", denv)
	}
	types, bodies := globalDSN(t, sink.dsns()[0])
	if types[2] != "message/global-headers" || !bytes.Contains(bodies[1], []byte("Final-Recipient: rfc822; a@example.net\r\n")) {
		t.Errorf("parts %q; delivery status:\n%s", types, bodies[1])
	}
}

// Over SMTP, the DSN to a UTF-8 reverse-path goes with SMTPUTF8 to a next hop that
// offers it.
func TestDSNToUTF8SenderOverSMTP(t *testing.T) {
	h := &nextHopServer{arrived: make(chan received, 10), utf8: true}
	h.listen(t, "127.0.0.1:0")
	s := testSpool(t, t.TempDir())
	keys, txt := dsnKeys(t)
	ds := &DSNSender{Spool: s, Hostname: "relay.example.org", From: "MAILER-DAEMON@example.org", Keys: keys, Logger: quietLogger()}
	r := &Runner{Spool: s, Deliverer: nextHop(h), Logger: quietLogger(), Bouncer: ds, PollInterval: time.Hour}
	commit(t, s, &Envelope{From: "jörg@example.com", To: []string{"perm@example.net"}, UTF8: true}, utf8OrigHeader, "Hallo.\r\n")
	runRunner(t, r)
	select {
	case dsn := <-h.arrived:
		if dsn.from != "" || len(dsn.to) != 1 || dsn.to[0] != "jörg@example.com" || !dsn.utf8 {
			t.Fatalf("next hop got from <%s> to %q, SMTPUTF8 %v; want the DSN from <> to jörg@example.com with SMTPUTF8", dsn.from, dsn.to, dsn.utf8)
		}
		types, bodies := globalDSN(t, dsn.data)
		if types[1] != "message/global-delivery-status" || !bytes.Contains(bodies[1], []byte("Status: 5.1.1\r\n")) {
			t.Errorf("part 2 %q:\n%s", types[1], bodies[1])
		}
		if !bytes.Contains(dsn.data, []byte("To: <jörg@example.com>\r\n")) {
			t.Errorf("DSN header lacks the UTF-8 To:\n%s", dsn.data)
		}
		verifyDKIMpy(t, dsn.data, txt)
	case <-time.After(10 * time.Second):
		t.Fatal("no DSN arrived at the next hop")
	}
}

// An MX host without SMTPUTF8 is passed over for one with it; with none that offers
// it the recipient fails permanently with ErrNoSMTPUTF8, nothing sent to any.
func TestUTF8MXFallback(t *testing.T) {
	plain := &smtpSink{Name: "mx1.dest.test"}
	intl := &smtpSink{Name: "mx2.dest.test", Extensions: []string{"SMTPUTF8"}}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.5": plain, "127.0.0.6": intl})
	zone := "dest.test. 300 IN MX 10 mx1.dest.test.\ndest.test. 300 IN MX 20 mx2.dest.test.\n" +
		"only.test. 300 IN MX 10 mx1.dest.test.\nmx1.dest.test. 300 IN A 127.0.0.5\nmx2.dest.test. 300 IN A 127.0.0.6\n"
	tr := testTransport(t, zone, port, nil)
	err, hops := deliverWithHops(tr, &Envelope{ID: "u1", From: "s@sender.test", To: []string{"用户@dest.test"}, UTF8: true})
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if len(hops) != 1 || hops[0].Host != "mx2.dest.test" {
		t.Errorf("hops %+v, want mx2.dest.test (the one with SMTPUTF8)", hops)
	}
	if txs := intl.transactions(); len(txs) != 1 || !strings.HasSuffix(txs[0].Mail, " SMTPUTF8") {
		t.Errorf("mx2 got %+v, want one transaction with SMTPUTF8", txs)
	}
	err, _ = deliverWithHops(tr, &Envelope{ID: "u2", From: "s@sender.test", To: []string{"用户@only.test"}, UTF8: true})
	var rerr *RecipientsError
	if !IsPermanent(err) || !errors.As(err, &rerr) || len(rerr.Failed) != 1 ||
		!IsPermanent(rerr.Failed[0].Err) || !errors.Is(rerr.Failed[0].Err, smtpclient.ErrNoSMTPUTF8) {
		t.Errorf("Deliver to an MX without SMTPUTF8: %v, want the recipient failed permanently with ErrNoSMTPUTF8", err)
	}
	if txs := plain.transactions(); len(txs) != 0 {
		t.Errorf("mx1 (no SMTPUTF8) got %+v", txs)
	}
}
