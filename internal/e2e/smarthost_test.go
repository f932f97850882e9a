package e2e

import (
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"sealgate/internal/sealgatetest"
	"sealgate/internal/smtptest"
)

// espServer is an upstream provider's submission server: STARTTLS with a
// certificate from a test CA, AUTH PLAIN under TLS only, one login.
type espServer struct {
	addr   string
	caFile string

	mu   sync.Mutex
	msgs []espMessage
	got  chan struct{}
}

type espMessage struct {
	user, from string
	tls        bool
	data       string
}

type espSession struct {
	s    *espServer
	c    *smtp.Conn
	user string
	from string
}

func (e *espSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (e *espSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "acme" || pass != "s3cret pass" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		e.user = user
		return nil
	}), nil
}
func (e *espSession) Reset()        {}
func (e *espSession) Logout() error { return nil }
func (e *espSession) Mail(from string, _ *smtp.MailOptions) error {
	if e.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	e.from = from
	return nil
}
func (e *espSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (e *espSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := e.c.TLSConnectionState()
	e.s.mu.Lock()
	e.s.msgs = append(e.s.msgs, espMessage{user: e.user, from: e.from, tls: isTLS, data: string(b)})
	e.s.mu.Unlock()
	e.s.got <- struct{}{}
	return nil
}

func startESP(t *testing.T) *espServer {
	t.Helper()
	pki := smtptest.NewPKI(t, "smtp.esp.test")
	s := &espServer{caFile: filepath.Join(t.TempDir(), "esp-ca.pem"), got: make(chan struct{}, 4)}
	if err := os.WriteFile(s.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.CADER}), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &espSession{s: s, c: c}, nil }))
	srv.Domain = "smtp.esp.test"
	srv.TLSConfig = pki.ServerConfig()
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	s.addr = smtptest.ServeSMTP(t, srv, false)
	return s
}

// TestSmartHostSTARTTLSAndAuth: the real binary relays through an upstream
// provider (the ESP case) with STARTTLS required, the provider's certificate
// checked against a CA from relay.ca_file, and AUTH PLAIN with a password from an
// environment variable, all set by SEALGATE_* overrides; the password appears in
// no log line, and the attempt's line says TLS verified and what the server said.
func TestSmartHostSTARTTLSAndAuth(t *testing.T) {
	esp := startESP(t)
	dir := t.TempDir()
	rl, err := sealgatetest.Start(sealgatetest.Options{Binary: binary, Dir: dir,
		Args: []string{"--next-hop", esp.addr}, StartTimeout: startupWait,
		Env: []string{
			"SEALGATE_RELAY_NEXT_HOP_TLS=required",
			"SEALGATE_RELAY_AUTH_USERNAME=acme",
			"SEALGATE_RELAY_AUTH_PASSWORD_ENV=E2E_ESP_PASSWORD",
			"E2E_ESP_PASSWORD=s3cret pass",
			"SEALGATE_RELAY_CA_FILE=" + esp.caFile,
		}})
	if err != nil {
		t.Fatal(err)
	}
	r := &relayProc{Relay: rl, t: t, dir: dir, password: rl.Password, logs: relayLog{rl}}
	t.Cleanup(r.stop)

	c := dial(t, r.SmartHost, dialOpts{})
	c.ehlo()
	stage, rp := c.send("demo@example.test", []string{"ops@partner.example"}, msg("From: demo@example.test\n"+stdTail, "Hello ESP.\n"))
	if stage != "END" {
		t.Fatalf("%s: %s", stage, rp)
	}
	queueID(t, rp)
	c.quit()

	select {
	case <-esp.got:
	case <-time.After(30 * time.Second):
		t.Fatalf("nothing reached the provider; log:\n%s", r.logs)
	}
	esp.mu.Lock()
	m := esp.msgs[0]
	esp.mu.Unlock()
	if m.user != "acme" || !m.tls || m.from != "demo@example.test" || !strings.Contains(m.data, "Hello ESP.") || !strings.Contains(m.data, "DKIM-Signature:") {
		t.Errorf("provider got user %q, TLS %v, from %q, data %q", m.user, m.tls, m.from, m.data)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.Logs(), `msg="delivery attempt"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no delivery attempt line; log:\n%s", r.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var line string
	for _, l := range strings.Split(r.Logs(), "\n") {
		if strings.Contains(l, `msg="delivery attempt"`) {
			line = l
		}
	}
	for _, want := range []string{"status=sent", "rcpts=ops@partner.example", "host=127.0.0.1", "ip=127.0.0.1", `tls="TLS 1.3"`, "cert_verified=true", "code=250", "attempt=1"} {
		if !strings.Contains(line, want) {
			t.Errorf("attempt line lacks %s: %s", want, line)
		}
	}
	if strings.Contains(r.Logs(), "s3cret") {
		t.Errorf("the smart host password appears in the log:\n%s", r.logs)
	}
}
