package submit

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"sealgate/internal/smtptest"
)

// passwords is an Authenticator of fixed logins.
type passwords map[string]string

func (p passwords) Authenticate(login, password string) (*Identity, error) {
	if pw, ok := p[login]; ok && pw == password {
		return NewIdentity(login, KindLogin, MustParsePatterns("*@client.example")), nil
	}
	return nil, errors.New("wrong login or password")
}

// Reload swaps logins and a listener's certificate for what starts afterwards; a session
// opened before goes on, and a listener not named in the new TLS keeps its certificate.
func TestReloadSwapsUsersAndCertificates(t *testing.T) {
	s := startHardServer(t, Limits{}, passwords{"alice": "pw-a"}, nil)
	old := s.dialImplicitTLS(t)
	if got := old.Cmd(plainAuth("alice", "pw-a")); !strings.HasPrefix(got, "235 ") {
		t.Fatalf("alice before the reload: %q", got)
	}

	ca := newTestCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	next := *s.srv.settings()
	next.Users = passwords{"bob": "pw-b"}
	next.TLS = map[string]*tls.Config{"submissions": {Certificates: []tls.Certificate{ca.issue(t, "relay-b.example.test", x509.ExtKeyUsageServerAuth)}, MinVersion: tls.VersionTLS12}}
	s.srv.Reload(next)

	// The old certificate no longer verifies on the reloaded listener; the new one does.
	if c, err := tls.Dial("tcp", s.implicit, &tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1"}); err == nil {
		c.Close()
		t.Fatal("the implicit-TLS listener still serves the old certificate")
	}
	c, err := tls.Dial("tcp", s.implicit, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("the new certificate: %v", err)
	}
	if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "relay-b.example.test" {
		t.Errorf("certificate %s after the reload", cn)
	}
	rc := smtptest.NewClient(t, c)
	rc.Greet("mta.client.example")
	if got := rc.Cmd(plainAuth("bob", "pw-b")); !strings.HasPrefix(got, "235 ") {
		t.Errorf("bob after the reload: %q", got)
	}
	// The STARTTLS listener, not in next.TLS, keeps its certificate; alice is gone.
	st := s.dialSTARTTLS(t)
	if got := st.Cmd(plainAuth("alice", "pw-a")); !strings.HasPrefix(got, "535 ") {
		t.Errorf("alice after the reload: %q", got)
	}
	// The session opened before the reload goes on with its login.
	if got := old.Cmd("MAIL FROM:<alice@client.example>"); !strings.HasPrefix(got, "250 ") {
		t.Errorf("MAIL in the session opened before the reload: %q", got)
	}
}
