package submit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/smtptest"
	"sealgate/relay"
	"sealgate/sign"
)

// intakeServer is a smart-host listener trusting 127.0.0.2 only, with a report mailbox
// dmarc-rua@client.example whose Store keeps what it got (and refuses "bad" reports).
type intakeServer struct {
	smart, submission string
	spool             *relay.Spool
	mu                sync.Mutex
	stored            []string
}

func startIntakeServer(t *testing.T) *intakeServer {
	t.Helper()
	spool, err := relay.OpenSpool(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ca := newTestCA(t)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "relay.example.test", x509.ExtKeyUsageServerAuth)}, MinVersion: tls.VersionTLS12}
	log := slog.New(slog.NewTextHandler(&lockedLog{}, nil))
	is := &intakeServer{spool: spool}
	rua, _ := addr.ParseAddress("dmarc-rua@client.example")
	srv := &Server{
		Hostname: "relay.example.test",
		Listeners: []Listener{
			{Name: "smarthost", Address: "127.0.0.1:0", Mode: ModeSmartHost, Network: true},
			{Name: "submission", Address: "127.0.0.1:0", Mode: ModeSubmission, SASL: true, TLS: tlsCfg},
		},
		Limits: Limits{MaxMessageBytes: 4 << 20, CommandTimeout: 20 * time.Second, DataTimeout: bareDataTimeout},
		Networks: []NetworkIdentity{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
			Identity: NewIdentity("mta", KindClientNetwork, MustParsePatterns("*@client.example"))}},
		Pipeline: &Pipeline{Hostname: "relay.example.test", AuthServID: "relay.example.test", Spool: spool, Log: log,
			KeyRing: mustKeyRing(sign.DomainKeys{Domain: "client.example", Keys: []sign.Key{{Selector: "ed", Signer: edKey}}})},
		Log: log,
		ReportIntake: &ReportIntake{Addresses: []addr.Address{rua}, MaxBytes: 4096,
			Store: func(_ context.Context, msg []byte) error {
				if strings.Contains(string(msg), "bad report") {
					return errors.New("testdata: root element is <html>, want <feedback>")
				}
				is.mu.Lock()
				is.stored = append(is.stored, string(msg))
				is.mu.Unlock()
				return nil
			}},
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	is.smart, is.submission = srv.Addrs()[0].String(), srv.Addrs()[1].String()
	return is
}

func (is *intakeServer) dial(t *testing.T, local, address string) *rawClient {
	t.Helper()
	raw, err := dialFrom(t, local, address)
	if err != nil {
		t.Fatal(err)
	}
	c := smtptest.NewClient(t, raw)
	c.Greet("mx.receiver.example")
	return c
}

// A client we do not know may mail reports to the report mailbox on the smart-host
// listener, and nothing else: other recipients are relay_denied, the message is handed
// to Store and never spooled, a refused report or an oversized one gets its reply, and
// the submission listener still wants a login. A known client's mail to the mailbox is
// relayed like any other.
func TestReportIntake(t *testing.T) {
	is := startIntakeServer(t)
	report := "From: noreply@receiver.example\r\nSubject: Report Domain: client.example\r\n\r\n<feedback/>\r\n."
	tests := []struct {
		name   string
		local  string
		listen func() string
		cmds   []string // each with the reply prefix wanted: "CMD\x00PREFIX"
		stored int
		queued int
	}{
		{"report stored", "127.0.0.1", func() string { return is.smart }, []string{
			"MAIL FROM:<noreply@receiver.example>\x00250 ", "RCPT TO:<ops@partner.example>\x00554 5.7.1 ",
			"RCPT TO:<DMARC-RUA@Client.Example>\x00250 ", "DATA\x00354 ", report + "\x00250 2.0.0 OK report stored"}, 1, 0},
		{"only other recipients", "127.0.0.1", func() string { return is.smart }, []string{
			"MAIL FROM:<noreply@receiver.example>\x00250 ", "RCPT TO:<ops@partner.example>\x00554 5.7.1 ",
			"RCPT TO:<dmarc-rua@client.example.evil>\x00554 5.7.1 ", "DATA\x00502 "}, 0, 0},
		{"refused report", "127.0.0.1", func() string { return is.smart }, []string{
			"MAIL FROM:<noreply@receiver.example>\x00250 ", "RCPT TO:<dmarc-rua@client.example>\x00250 ", "DATA\x00354 ",
			strings.Replace(report, "<feedback/>", "bad report", 1) + "\x00550 5.6.0 Report refused: testdata: root element is <html>"}, 0, 0},
		{"too large", "127.0.0.1", func() string { return is.smart }, []string{
			"MAIL FROM:<noreply@receiver.example>\x00250 ", "RCPT TO:<dmarc-rua@client.example>\x00250 ", "DATA\x00354 ",
			strings.Replace(report, "<feedback/>", strings.Repeat(strings.Repeat("x", 70)+"\r\n", 80), 1) + "\x00552 5.3.4 Report message larger than 4096 bytes"}, 0, 0},
		{"submission wants a login", "127.0.0.1", func() string { return is.submission }, []string{
			"MAIL FROM:<noreply@receiver.example>\x00530 "}, 0, 0},
		{"known client relays", "127.0.0.2", func() string { return is.smart }, []string{
			"MAIL FROM:<mta@client.example>\x00250 ", "RCPT TO:<dmarc-rua@client.example>\x00250 ", "DATA\x00354 ",
			"From: mta@client.example\r\nSubject: hi\r\n\r\nhello\r\n.\x00250 2.0.0 OK queued as "}, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			is.mu.Lock()
			before := len(is.stored)
			is.mu.Unlock()
			queuedBefore, _ := is.spool.List()
			c := is.dial(t, tc.local, tc.listen())
			for _, step := range tc.cmds {
				cmd, want, _ := strings.Cut(step, "\x00")
				if got := c.Cmd(cmd); !strings.HasPrefix(got, want) {
					t.Fatalf("%.40q: %q, want %q", cmd, got, want)
				}
			}
			c.Cmd("QUIT")
			is.mu.Lock()
			stored := len(is.stored) - before
			is.mu.Unlock()
			queued, _ := is.spool.List()
			if stored != tc.stored || len(queued)-len(queuedBefore) != tc.queued {
				t.Errorf("stored %d reports, queued %d messages; want %d, %d", stored, len(queued)-len(queuedBefore), tc.stored, tc.queued)
			}
		})
	}
	if len(is.stored) != 1 || !strings.HasPrefix(is.stored[0], "From: noreply@receiver.example\r\n") || !strings.HasSuffix(is.stored[0], "<feedback/>\r\n") {
		t.Errorf("Store got %q", is.stored)
	}
}

// A bare LF in a report is refused like in any message: the connection closes.
func TestReportIntakeBareLF(t *testing.T) {
	is := startIntakeServer(t)
	c := is.dial(t, "127.0.0.1", is.smart)
	for _, cmd := range []string{"MAIL FROM:<noreply@receiver.example>", "RCPT TO:<dmarc-rua@client.example>", "DATA"} {
		if got := c.Cmd(cmd); !strings.HasPrefix(got, "250 ") && !strings.HasPrefix(got, "354 ") {
			t.Fatalf("%s: %q", cmd, got)
		}
	}
	if got := c.Cmd("Subject: x\r\n\r\n<feedback/>\nMAIL FROM:<x@y.example>\r\n."); !strings.HasPrefix(got, "550 5.6.0 ") {
		t.Errorf("bare LF: %q, want 550 5.6.0", got)
	}
	c.AssertClosed()
	if len(is.stored) != 0 {
		t.Errorf("a report with a bare LF was stored")
	}
}
