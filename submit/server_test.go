package submit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/relay"
	"sealgate/sign"
)

// testCA makes a CA and a certificate it signs (server or client).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestClientCertificateIdentity runs a server whose implicit-TLS listener accepts client
// certificates, and checks that a certificate maps to its identity (by fingerprint and by
// subject), that its may_send_as is enforced, that the message is signed and spooled, and
// that a connection without a certificate may not relay.
func TestClientCertificateIdentity(t *testing.T) {
	ca := newTestCA(t)
	serverCert := ca.issue(t, "relay.example.test", x509.ExtKeyUsageServerAuth)
	byFingerprint := ca.issue(t, "mta1.client.example", x509.ExtKeyUsageClientAuth)
	bySubject := ca.issue(t, "mta2.client.example", x509.ExtKeyUsageClientAuth)
	unknown := ca.issue(t, "stranger.example", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)

	spool, err := relay.OpenSpool(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	sum := sha256.Sum256(byFingerprint.Certificate[0])
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &Server{
		Hostname: "relay.example.test",
		Listeners: []Listener{{Name: "submissions", Address: "127.0.0.1:0", Mode: ModeSubmissions, ClientCert: true,
			TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12,
				ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}}},
		Limits: Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 10, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second},
		Certs: []CertIdentity{
			{Fingerprint: hex.EncodeToString(sum[:]), Identity: NewIdentity("mta1", KindClientCert, MustParsePatterns("*@client.example"))},
			{Subject: "mta2.client.example", Identity: NewIdentity("mta2", KindClientCert, MustParsePatterns("news@client.example"))},
		},
		Pipeline: &Pipeline{Hostname: "relay.example.test", AuthServID: "relay.example.test", Spool: spool, Log: log,
			KeyRing: mustKeyRing(sign.DomainKeys{Domain: "client.example", Keys: []sign.Key{{Selector: "ed", Signer: edKey}}})},
		Log: log,
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	address := srv.Addrs()[0].String()

	dial := func(cert *tls.Certificate) *smtp.Client {
		cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := smtp.DialTLS(address, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("client.example"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	code := func(err error) string {
		if err == nil {
			return "250"
		}
		if se, ok := err.(*smtp.SMTPError); ok {
			e := se.EnhancedCode
			return fmt.Sprintf("%d %d.%d.%d", se.Code, e[0], e[1], e[2])
		}
		return err.Error()
	}
	send := func(c *smtp.Client, from, header string) (string, string) {
		if err := c.Mail(from, nil); err != nil {
			return "MAIL", code(err)
		}
		if err := c.Rcpt("ops@partner.example", nil); err != nil {
			return "RCPT", code(err)
		}
		w, err := c.Data()
		if err != nil {
			return "DATA", code(err)
		}
		io.WriteString(w, header+"To: ops@partner.example\r\nSubject: t\r\n\r\nbody\r\n")
		return "END", code(w.Close())
	}

	c := dial(&byFingerprint)
	if stage, got := send(c, "billing@client.example", "From: billing@client.example\r\n"); got != "250" {
		t.Errorf("fingerprint identity: %s %s", stage, got)
	}
	if stage, got := send(c, "ceo@bank.example", "From: ceo@bank.example\r\n"); stage != "MAIL" || got != "553 5.7.1" {
		t.Errorf("foreign MAIL FROM: %s %s", stage, got)
	}
	c.Close()

	c = dial(&bySubject)
	if stage, got := send(c, "news@client.example", "From: news@client.example\r\n"); got != "250" {
		t.Errorf("subject identity: %s %s", stage, got)
	}
	if stage, got := send(c, "news@client.example", "From: billing@client.example\r\n"); stage != "END" || got != "550 5.7.1" {
		t.Errorf("From outside the subject identity's may_send_as: %s %s", stage, got)
	}
	c.Close()

	for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "unknown certificate": &unknown} {
		c = dial(cert)
		if stage, got := send(c, "billing@client.example", "From: billing@client.example\r\n"); stage != "MAIL" || !strings.HasPrefix(got, "5") {
			t.Errorf("%s: %s %s, want refused at MAIL", name, stage, got)
		}
		c.Close()
	}

	ids, err := spool.List()
	if err != nil || len(ids) != 2 {
		t.Fatalf("spooled %d messages (%v), want 2", len(ids), err)
	}
	_, rc, err := spool.Open(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Contains(msg, []byte("d=client.example")) || !bytes.Contains(msg, []byte("(client certificate mta1)")) {
		t.Errorf("spooled message not signed or not traced to its certificate identity:\n%s", msg)
	}
}
