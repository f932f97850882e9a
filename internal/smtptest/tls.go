package smtptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// PKI is a test CA and one server certificate it issued, valid for an hour either side of
// now, for 127.0.0.1 and the names given.
type PKI struct {
	Pool  *x509.CertPool // trusts the CA
	CA    *x509.Certificate
	Cert  tls.Certificate // the server's
	CADER []byte
}

// NewPKI makes a CA and a server certificate for 127.0.0.1 and names (the first is the
// subject's common name; "localhost" when there is none).
func NewPKI(t testing.TB, names ...string) *PKI {
	t.Helper()
	if len(names) == 0 {
		names = []string{"localhost"}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sealgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &PKI{Pool: pool, CA: caCert, CADER: caDER, Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// ServerConfig is a server TLS configuration with the certificate.
func (p *PKI) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Cert}}
}

// ServeSMTP serves srv (a go-smtp server the test has configured) on 127.0.0.1:0, with
// implicit TLS from srv.TLSConfig when implicitTLS is set, and returns the address; srv
// closes when the test ends. Read and write timeouts left zero become Timeout.
func ServeSMTP(t testing.TB, srv *smtp.Server, implicitTLS bool) string {
	t.Helper()
	if srv.ReadTimeout == 0 {
		srv.ReadTimeout = Timeout
	}
	if srv.WriteTimeout == 0 {
		srv.WriteTimeout = Timeout
	}
	var l net.Listener
	var err error
	if implicitTLS {
		l, err = tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// StartTLS sends STARTTLS, expects 220 (RFC 3207 §4) and goes on over TLS with conf.
func (c *Client) StartTLS(conf *tls.Config) {
	c.T.Helper()
	if got := c.Cmd("STARTTLS"); !strings.HasPrefix(got, "220 ") {
		c.T.Fatalf("STARTTLS: %q", got)
	}
	c.UpgradeTLS(conf)
}

// UpgradeTLS makes the rest of the session TLS with conf, without a command: for a test
// that has sent STARTTLS its own way.
func (c *Client) UpgradeTLS(conf *tls.Config) {
	c.T.Helper()
	tc := tls.Client(c.Conn, conf)
	c.Conn.SetDeadline(time.Now().Add(Timeout))
	if err := tc.Handshake(); err != nil {
		c.T.Fatal(err)
	}
	c.Conn.SetDeadline(time.Time{})
	c.Use(tc)
}
