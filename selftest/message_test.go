package selftest

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/internal/smtpclient"
	"sealgate/verify"
)

// sendVia returns a MessageOptions.Send that delivers msg with the outbound client, from
// mailFrom with SUBMITTER submitter.
func sendVia(msg, mailFrom, submitter string) func(context.Context, string) error {
	return func(ctx context.Context, server string) error {
		c, err := (&smtpclient.Dialer{HeloName: "out.relay.example"}).Dial(ctx, server)
		if err != nil {
			return err
		}
		defer c.Close()
		res, err := c.Send(&smtpclient.Transaction{From: mailFrom, Submitter: submitter,
			Rcpts: []smtpclient.Recipient{{Addr: "b@rcpt.example"}}}, strings.NewReader(msg))
		if err != nil {
			return err
		}
		if res.Accepted() != 1 {
			return res.Rcpts[0]
		}
		c.Quit()
		return nil
	}
}

const clientZone = `client.example. IN TXT "v=spf1 ip4:192.0.2.25 -all"
client.example. IN MX 10 mx.client.example.
mx.client.example. IN A 192.0.2.80
_dmarc.client.example. IN TXT "v=DMARC1; p=reject; rua=mailto:d@client.example"
out.relay.example. IN A 192.0.2.25
25.2.0.192.in-addr.arpa. IN PTR out.relay.example.
`

func findingOf(t *testing.T, fs []Finding, check, status string) Finding {
	t.Helper()
	for _, f := range fs {
		if f.Check == check && f.Status == status {
			return f
		}
	}
	t.Fatalf("no %s finding %q in %+v", status, check, fs)
	return Finding{}
}

func TestMessageReady(t *testing.T) {
	o := testOptions(t, clientZone+dkimRecord("client.example"))
	msg := signed(t, message("a@client.example"), "client.example")
	rep, err := Message(context.Background(), &MessageOptions{Options: *o,
		Egress: []Egress{{IP: clientIP, HELO: "out.relay.example"}},
		Send:   sendVia(msg, "a@client.example", "a@client.example")})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Ready || rep.Submitter != "a@client.example" || rep.MailFrom != "a@client.example" {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("not ready, or envelope lost:\n%s", b.String())
	}
	ev := rep.Egress[0]
	if !ev.DMARCPass || ev.LostAtReject || !strings.Contains(ev.Verdict, "through dkim client.example (strict)") {
		t.Errorf("verdict %q", ev.Verdict)
	}
	for _, f := range ev.Findings {
		if f.Status == StatusFail {
			t.Errorf("failed finding %+v", f)
		}
	}
}

// A message signed for the relay's domain, not the author's: DKIM passes, does not align,
// and the fix names both domains.
func TestMessageWrongSigningDomain(t *testing.T) {
	o := testOptions(t, clientZone+dkimRecord("relay.example"))
	msg := signed(t, message("a@client.example"), "relay.example")
	rep, err := Message(context.Background(), &MessageOptions{Options: *o,
		Egress: []Egress{{IP: netip.MustParseAddr("198.51.100.7"), HELO: "out.relay.example"}},
		Send:   sendVia(msg, "a@bounce.relay.example", "")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ready {
		t.Fatal("ready with a signature of the wrong domain")
	}
	ev := rep.Egress[0]
	f := findingOf(t, ev.Findings, "dkim", StatusFail)
	if f.Result != "pass" || f.Fix != "sign with d=client.example, not d=relay.example: add a domains entry for client.example with its own keys" {
		t.Errorf("dkim finding %+v", f)
	}
	if !ev.LostAtReject || !strings.Contains(ev.Verdict, "p=reject would lose this mail") {
		t.Errorf("verdict %q", ev.Verdict)
	}
	var b strings.Builder
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "NOT READY") || !strings.Contains(b.String(), "fix: sign with d=client.example, not d=relay.example") {
		t.Errorf("text:\n%s", b.String())
	}
}

// An egress address the SPF record does not name: SPF fails and the fix adds it to the
// record as published. DKIM still carries DMARC, so the verdict is a refusal at RCPT.
func TestMessageEgressNotInSPF(t *testing.T) {
	o := testOptions(t, clientZone+dkimRecord("client.example")+`bounce.client.example. IN TXT "v=spf1 ip4:192.0.2.25 ~all"
bounce.client.example. IN MX 10 mx.client.example.
`)
	msg := signed(t, message("a@client.example"), "client.example")
	rep, err := Message(context.Background(), &MessageOptions{Options: *o,
		Egress: []Egress{{IP: clientIP, HELO: "out.relay.example"}, {IP: netip.MustParseAddr("198.51.100.7"), HELO: "out.relay.example"}},
		Send:   sendVia(msg, "b@bounce.client.example", "")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ready || len(rep.Egress) != 2 {
		t.Fatalf("ready %v with %d egress", rep.Ready, len(rep.Egress))
	}
	if f := findingOf(t, rep.Egress[0].Findings, "spf", StatusPass); f.Result != "pass" {
		t.Errorf("first egress: %+v", f)
	}
	f := findingOf(t, rep.Egress[1].Findings, "spf", StatusFail)
	if f.Result != "softfail" || f.Fix != "add ip4:198.51.100.7 to the SPF record of bounce.client.example" ||
		f.Record != `bounce.client.example. IN TXT "v=spf1 ip4:192.0.2.25 ip4:198.51.100.7 ~all"` {
		t.Errorf("spf finding %+v", f)
	}
}

// A relay that refuses the message is a report, not an error.
func TestMessageRefused(t *testing.T) {
	o := testOptions(t, clientZone)
	rep, err := Message(context.Background(), &MessageOptions{Options: *o,
		Egress: []Egress{{IP: clientIP, HELO: "out.relay.example"}},
		Send:   func(context.Context, string) error { return errTest("550 5.7.1 not yours") }})
	if err != nil || rep.Ready || rep.Refused != "550 5.7.1 not yours" {
		t.Fatalf("%+v, %v", rep, err)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

// A SUBMITTER that is not the header's PRA fails; a sender that keeps its session open
// (as a pooling client does) does not keep Message waiting.
func TestMessageSubmitterMismatchKeptSession(t *testing.T) {
	o := testOptions(t, clientZone+dkimRecord("client.example"))
	msg := signed(t, message("a@client.example"), "client.example")
	send := func(ctx context.Context, server string) error {
		c, err := (&smtpclient.Dialer{HeloName: "out.relay.example"}).Dial(ctx, server)
		if err != nil {
			return err
		}
		_, err = c.Send(&smtpclient.Transaction{From: "a@client.example", Submitter: "x@client.example",
			Rcpts: []smtpclient.Recipient{{Addr: "b@rcpt.example"}}}, strings.NewReader(msg))
		return err // the session stays open
	}
	done := make(chan *MessageReport, 1)
	go func() {
		rep, err := Message(context.Background(), &MessageOptions{Options: *o, Egress: []Egress{{IP: clientIP, HELO: "out.relay.example"}}, Send: send})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	var rep *MessageReport
	select {
	case rep = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Message waits for the session the sender kept open")
	}
	if rep == nil || rep.Ready {
		t.Fatalf("report %+v", rep)
	}
	if f := findingOf(t, rep.Egress[0].Findings, "pra", StatusFail); !strings.Contains(f.Reason, `SUBMITTER=x@client.example, but the header's purported responsible address is "a@client.example"`) {
		t.Errorf("pra %+v", f)
	}
}

// hangingResolver asks a DNS server for zone on which questions for name (of type qtype, or
// any type for 0) never get an answer.
func hangingResolver(t *testing.T, zone, name string, qtype uint16) resolver.Resolver {
	t.Helper()
	zoneAddr := resolvertest.Start(t, "$TTL 300\n"+zone)
	addr := resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		if len(req.Question) == 1 && strings.EqualFold(req.Question[0].Name, name) && (qtype == 0 || req.Question[0].Qtype == qtype) {
			return // never answer
		}
		if resp, err := dns.Exchange(req, zoneAddr); err == nil {
			resolvertest.Reply(w, req, resp)
		}
	}))
	r, err := resolver.New(resolver.Config{Server: addr, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The return path's SPF never answers: the spf finding is unknown, not failed, the verdict
// says "could not check SPF (DNS timed out)" and the report neither passes nor fails.
func TestMessageSPFTimedOut(t *testing.T) {
	r := hangingResolver(t, clientZone+dkimRecord("client.example"), "slow.client.example.", 0)
	msg := signed(t, message("a@client.example"), "client.example")
	rep, err := Message(context.Background(), &MessageOptions{
		Options: verify.Options{Resolver: r, AuthServID: "mx.test.example", Timeout: 3 * time.Second},
		Egress:  []Egress{{IP: clientIP, HELO: "out.relay.example"}},
		Send:    sendVia(msg, "b@slow.client.example", "")})
	if err != nil {
		t.Fatal(err)
	}
	ev := rep.Egress[0]
	f := findingOf(t, ev.Findings, "spf", StatusUnknown)
	if f.Result != "temperror" || !strings.Contains(f.Reason, "DNS timed out") {
		t.Errorf("spf finding %+v", f)
	}
	if rep.Ready || !rep.SPFTimedOut || !ev.SPFTimedOut || !strings.HasPrefix(ev.Verdict, "could not check SPF (DNS timed out) for slow.client.example") {
		t.Errorf("ready %v, timed out %v, verdict %q", rep.Ready, rep.SPFTimedOut, ev.Verdict)
	}
	var b strings.Builder
	rep.WriteText(&b)
	if !strings.HasSuffix(b.String(), "\nNOT CHECKED: could not check SPF (DNS timed out)\n") ||
		!strings.Contains(b.String(), "\n  unknown  spf        temperror  slow.client.example for b@slow.client.example") {
		t.Errorf("text:\n%s", b.String())
	}
}
