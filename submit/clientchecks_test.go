package submit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/keys"
	"sealgate/relay"
	"sealgate/sign"
)

// clientRun submits msg (CRLF) from the client network identity id at 192.0.2.25 through a
// pipeline that seals, with DNS from zone, and returns the spooled message and the logs.
func clientRun(t testing.TB, id *Identity, zone, msg string) (spooled, logs string) {
	t.Helper()
	_, relayKey, _ := ed25519.GenerateKey(rand.Reader)
	_, arcKey, _ := ed25519.GenerateKey(rand.Reader)
	r := resolvertest.NewZone(t, zone)
	spool, err := relay.OpenSpool(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	var lb bytes.Buffer
	p := &Pipeline{Hostname: "relay.example.test", AuthServID: "relay.example.test", Spool: spool, Resolver: r,
		KeyRing: mustKeyRing(sign.DomainKeys{Domain: "client.example", Keys: []sign.Key{{Selector: "relay", Signer: relayKey}}}),
		ARC:     &ARCSealer{Domain: "relay.example.test", Selector: "arc", Signer: arcKey},
		Log:     slog.New(slog.NewTextHandler(&lb, nil))}
	hdr, body, err := sign.ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	in, err := spool.Create()
	if err != nil {
		t.Fatal(err)
	}
	in.Write(body)
	qid, err := p.Accept(context.Background(), &Submission{Identity: id, From: "bounce@client.example", To: []string{"rcpt@example.net"},
		ClientIP: net.IPv4(192, 0, 2, 25), HELO: "mx.client.example", Header: hdr, Body: in,
		Bodies: dkimcore.HashBody(body, p.BodyCanonicalizationsFor(id, hdr)...)})
	if err != nil {
		t.Fatal(err)
	}
	_, rc, err := spool.Open(qid)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b), lb.String()
}

var clientKey = func() ed25519.PrivateKey {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	return k
}()

func clientZone() string {
	return "$TTL 300\n" + `client.example. IN TXT "v=spf1 ip4:192.0.2.0/27 -all"
mx.client.example. IN A 192.0.2.25
25.2.0.192.in-addr.arpa. IN PTR mx.client.example.
` + keys.DNSRecord(clientKey.Public(), "c1", "client.example") + "\n"
}

// clientSigned is a message without Date and Message-ID that the client signed with
// oversigning of both: it signed their absence.
func clientSigned(t testing.TB) string {
	msg := "From: a@client.example\r\nTo: rcpt@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
	var b bytes.Buffer
	o := &sign.Options{Domain: "client.example", Keys: []sign.Key{{Selector: "c1", Signer: clientKey}},
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}, Oversign: []string{"From", "Date", "Message-ID"}}
	if err := sign.SignMessage(&b, strings.NewReader(msg), o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// The AAR records SPF and iprev of the client's address and the result of its signature;
// Date and Message-ID, whose absence the client signed, are not added, and its signature
// still verifies on the message as relayed.
func TestRecordedClientChecks(t *testing.T) {
	id := NewIdentity("client-mx", KindClientNetwork, MustParsePatterns("*@client.example"))
	spooled, logs := clientRun(t, id, clientZone(), clientSigned(t))
	head, _, _ := strings.Cut(spooled, "\r\n\r\n")
	aar := ""
	for _, f := range strings.Split(strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(head), "\r\n") {
		if strings.HasPrefix(f, "ARC-Authentication-Results:") {
			aar = strings.Join(strings.Fields(f), " ")
		}
	}
	for _, want := range []string{"auth=pass smtp.auth=client-mx", "spf=pass smtp.mailfrom=bounce@client.example",
		"iprev=pass policy.iprev=192.0.2.25", "dkim=pass header.d=client.example header.i=@client.example header.s=c1"} {
		if !strings.Contains(aar, want) {
			t.Errorf("no %q in the AAR %q", want, aar)
		}
	}
	if strings.Contains(head, "\r\nDate:") || strings.Contains(head, "\r\nMessage-ID:") {
		t.Errorf("Date or Message-ID added under a signature of their absence:\n%s", head)
	}
	if !strings.Contains(logs, `msg="missing header fields not added: a client signature that verifies covers their absence" `) ||
		!strings.Contains(logs, "fields=Date,Message-ID") {
		t.Errorf("logs:\n%s", logs)
	}
	res, err := sign.Verify(context.Background(), strings.NewReader(spooled), &sign.VerifyOptions{Resolver: resolvertest.NewZone(t, clientZone())})
	if err != nil {
		t.Fatal(err)
	}
	var clientPass bool
	for _, r := range res {
		clientPass = clientPass || r.Selector == "c1" && r.Status == sign.StatusPass
	}
	if !clientPass {
		t.Errorf("the client's signature no longer verifies: %+v", res)
	}
}

// A client signature that does not verify protects nothing: Date and Message-ID are added
// and logged, and the AAR says dkim=fail. With record_checks off, nothing is recorded.
func TestRecordedClientChecksOff(t *testing.T) {
	id := NewIdentity("client-mx", KindClientNetwork, MustParsePatterns("*@client.example"))
	broken := strings.Replace(clientSigned(t), "hello", "changed", 1)
	spooled, logs := clientRun(t, id, clientZone(), broken)
	head, _, _ := strings.Cut(spooled, "\r\n\r\n")
	if !strings.Contains(head, "\r\nDate: ") || !strings.Contains(head, "\r\nMessage-ID: <") ||
		!strings.Contains(logs, `msg="added missing header fields" `) || !strings.Contains(strings.Join(strings.Fields(head), " "), "dkim=fail") {
		t.Errorf("broken client signature:\n%s\n%s", head, logs)
	}

	id.RecordChecks = false
	spooled, _ = clientRun(t, id, clientZone(), clientSigned(t))
	head, _, _ = strings.Cut(spooled, "\r\n\r\n")
	for _, no := range []string{"spf=", "iprev=", "dkim=pass"} {
		if strings.Contains(head, no) {
			t.Errorf("record_checks off, but %q in\n%s", no, head)
		}
	}
}

// BenchmarkAcceptRecordChecks is the accept cost of the recorded checks for a client
// network that signs its own mail: the pipeline with record_checks off and on, DNS from an
// in-process server through the cache serve puts in front of it (so after the first message
// the checks cost CPU: SPF and iprev evaluation and one more signature verification).
func BenchmarkAcceptRecordChecks(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			id := NewIdentity("client-mx", KindClientNetwork, MustParsePatterns("*@client.example"))
			id.RecordChecks = on
			_, relayKey, _ := ed25519.GenerateKey(rand.Reader)
			_, arcKey, _ := ed25519.GenerateKey(rand.Reader)
			r, err := resolver.New(resolver.Config{Server: resolvertest.Start(b, clientZone()), Timeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			spool, err := relay.OpenSpool(filepath.Join(b.TempDir(), "spool"))
			if err != nil {
				b.Fatal(err)
			}
			defer spool.Close()
			p := &Pipeline{Hostname: "relay.example.test", AuthServID: "relay.example.test", Spool: spool, Resolver: r,
				CheckResolver: resolver.NewCache(r, 0, 0),
				KeyRing:       mustKeyRing(sign.DomainKeys{Domain: "client.example", Keys: []sign.Key{{Selector: "relay", Signer: relayKey}}}),
				ARC:           &ARCSealer{Domain: "relay.example.test", Selector: "arc", Signer: arcKey},
				Log:           slog.New(slog.NewTextHandler(io.Discard, nil))}
			hdr, body, err := sign.ReadMessage(strings.NewReader(clientSigned(b)))
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				in, err := spool.Create()
				if err != nil {
					b.Fatal(err)
				}
				in.Write(body)
				qid, err := p.Accept(context.Background(), &Submission{Identity: id, From: "bounce@client.example", To: []string{"rcpt@example.net"},
					ClientIP: net.IPv4(192, 0, 2, 25), HELO: "mx.client.example", Header: hdr, Body: in,
					Bodies: dkimcore.HashBody(body, p.BodyCanonicalizationsFor(id, hdr)...)})
				if err != nil {
					b.Fatal(err)
				}
				spool.Remove(qid)
			}
		})
	}
}

// BenchmarkVerifyClientStep is the "verify client signatures" step alone, without the
// spool's fsync that dominates Accept: SPF, iprev (answers from the cache after the first
// message) and one Ed25519 signature verified.
func BenchmarkVerifyClientStep(b *testing.B) {
	r, err := resolver.New(resolver.Config{Server: resolvertest.Start(b, clientZone()), Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	p := &Pipeline{Resolver: r, CheckResolver: resolver.NewCache(r, 0, 0), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	id := NewIdentity("client-mx", KindClientNetwork, MustParsePatterns("*@client.example"))
	hdr, body, err := sign.ReadMessage(strings.NewReader(clientSigned(b)))
	if err != nil {
		b.Fatal(err)
	}
	bodies := dkimcore.HashBody(body, p.BodyCanonicalizationsFor(id, hdr)...)
	for b.Loop() {
		m := &message{Submission: &Submission{Identity: id, From: "bounce@client.example", ClientIP: net.IPv4(192, 0, 2, 25),
			HELO: "mx.client.example", Header: hdr, Bodies: bodies}, hdr: hdr, log: p.Log}
		p.verifyClient(context.Background(), m)
		if m.client == nil || len(m.client.results) != 3 {
			b.Fatalf("recorded %+v", m.client)
		}
	}
}
