package smtpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/smtptest"
)

// requireTLSServer is a go-smtp server offering REQUIRETLS (under TLS only, as
// go-smtp does), over STARTTLS or implicit TLS, recording MAIL's RequireTLS.
type requireTLSServer struct {
	addr string
	pool *x509.CertPool

	mu         sync.Mutex
	requireTLS []bool
}

func startRequireTLSServer(t *testing.T, implicit bool) *requireTLSServer {
	t.Helper()
	pki := smtptest.NewPKI(t, "mx.test")
	s := &requireTLSServer{pool: pki.Pool}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &requireTLSSession{s: s}, nil }))
	srv.Domain = "mx.test"
	srv.TLSConfig = pki.ServerConfig()
	srv.EnableREQUIRETLS = true
	s.addr = smtptest.ServeSMTP(t, srv, implicit)
	return s
}

type requireTLSSession struct{ s *requireTLSServer }

func (r *requireTLSSession) Reset()        {}
func (r *requireTLSSession) Logout() error { return nil }
func (r *requireTLSSession) Mail(_ string, opts *smtp.MailOptions) error {
	r.s.mu.Lock()
	r.s.requireTLS = append(r.s.requireTLS, opts != nil && opts.RequireTLS)
	r.s.mu.Unlock()
	return nil
}
func (r *requireTLSSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (r *requireTLSSession) Data(rd io.Reader) error {
	_, err := io.Copy(io.Discard, rd)
	return err
}

// Implicit TLS: the handshake comes before the greeting, and TLS() reports it.
func TestDialImplicitTLS(t *testing.T) {
	s := startRequireTLSServer(t, true)
	d := Dialer{HeloName: "client.test", Timeout: 5 * time.Second, ImplicitTLS: &tls.Config{RootCAs: s.pool}}
	c, err := d.Dial(context.Background(), s.addr)
	if err != nil {
		t.Fatal(err)
	}
	info, ok := c.TLS()
	if !ok || !info.Verified || info.ServerName != "127.0.0.1" {
		t.Errorf("TLS() = %+v, %v; want verified for 127.0.0.1", info, ok)
	}
	if _, err := c.Send(&Transaction{From: "a@x.test", Rcpts: rcpts("b@y.test"), RequireTLS: true}, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Equal(s.requireTLS, []bool{true}) {
		t.Errorf("server saw REQUIRETLS %v, want [true]", s.requireTLS)
	}

	// Without the root the handshake fails, unless verification is only reported.
	if _, err := (&Dialer{Timeout: 5 * time.Second, ImplicitTLS: &tls.Config{RootCAs: x509.NewCertPool()}}).Dial(context.Background(), s.addr); err == nil {
		t.Error("implicit TLS with an untrusted certificate succeeded")
	}
	c, err = (&Dialer{Timeout: 5 * time.Second, ImplicitTLS: &tls.Config{RootCAs: x509.NewCertPool(), InsecureSkipVerify: true}}).Dial(context.Background(), s.addr)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := c.TLS(); info.Verified || info.VerifyError == nil {
		t.Errorf("TLS() = %+v; want unverified with the reason", info)
	}
	c.Quit()
}

// A REQUIRETLS transaction is never written without verified TLS and the
// server's REQUIRETLS; it passes REQUIRETLS on when both hold.
func TestRequireTLS(t *testing.T) {
	tx := &Transaction{From: "a@x.test", Rcpts: rcpts("b@y.test"), RequireTLS: true}

	f := startFake(t, "PIPELINING", "REQUIRETLS") // plain text, though offering it
	c := dial(t, f.addr)
	if _, err := c.Send(tx, strings.NewReader(testMessage)); !errors.Is(err, ErrRequireTLS) {
		t.Errorf("Send over plain text = %v, want ErrRequireTLS", err)
	}
	if !c.Reusable() {
		t.Error("the session is unusable after a refusal that wrote nothing")
	}
	c.Quit()
	<-f.ended
	if lines, _ := f.got(); !slices.Equal(lines, []string{"QUIT"}) {
		t.Errorf("server got %q, want only QUIT", lines)
	}

	s := startRequireTLSServer(t, false)
	for _, tc := range []struct {
		name   string
		conf   *tls.Config
		wantOK bool
	}{
		{"verified", &tls.Config{RootCAs: s.pool}, true},
		{"unverified", &tls.Config{RootCAs: x509.NewCertPool(), InsecureSkipVerify: true}, false},
	} {
		c := dial(t, s.addr)
		if err := c.StartTLS(tc.conf); err != nil {
			t.Fatal(err)
		}
		_, err := c.Send(tx, strings.NewReader(testMessage))
		if tc.wantOK != (err == nil) || (!tc.wantOK && !errors.Is(err, ErrRequireTLS)) {
			t.Errorf("%s: Send = %v", tc.name, err)
		}
		c.Quit()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Equal(s.requireTLS, []bool{true}) {
		t.Errorf("server saw REQUIRETLS %v, want one transaction with it", s.requireTLS)
	}
}

// No reply after the whole message was sent: ErrInDoubt, unlike a failure
// before the end of data.
func TestErrInDoubt(t *testing.T) {
	addr, _ := smtptest.ServeGreeting(t, "x", nil, func(c *smtptest.Conn) error {
		for {
			line, err := c.ReadLine()
			if err != nil {
				return err
			}
			switch {
			case strings.HasPrefix(line, "DATA"):
				c.Reply("354 go")
			case line == ".":
				return nil // the message is complete: hang up without a reply
			case strings.HasPrefix(line, "MAIL"), strings.HasPrefix(line, "RCPT"):
				c.Reply("250 ok")
			}
		}
	})
	c := dial(t, addr)
	_, err := c.Send(&Transaction{From: "a@x.test", Rcpts: rcpts("b@y.test")}, strings.NewReader(testMessage))
	if !errors.Is(err, ErrInDoubt) {
		t.Errorf("Send = %v, want ErrInDoubt", err)
	}
}

func TestEnhancedCode(t *testing.T) {
	for _, tc := range []struct {
		code       int
		msg        string
		want, text string
	}{
		{550, "5.1.1 no such user", "5.1.1", "no such user"},
		{250, "2.0.0 queued as X", "2.0.0", "queued as X"},
		{451, "4.7.1 greylisted\n4.7.1 come back later", "4.7.1", "greylisted come back later"},
		{550, "no such user", "", "no such user"},
		{550, "4.1.1 class differs", "", "4.1.1 class differs"},
		{554, "5.7.1234 too long", "", "5.7.1234 too long"},
		{556, "5.1.10 null MX", "5.1.10", "null MX"},
	} {
		e := &ReplyError{Code: tc.code, Message: tc.msg}
		if code, text := e.EnhancedCode(); code != tc.want || text != tc.text {
			t.Errorf("EnhancedCode(%d %q) = %q, %q; want %q, %q", tc.code, tc.msg, code, text, tc.want, tc.text)
		}
	}
}
