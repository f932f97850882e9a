package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver/resolvertest"
)

// selfSigned is a self-signed certificate for a name that is not the MX host's: only DANE-EE
// can authenticate it.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not-the-mx.example"},
		DNSNames: []string{"not-the-mx.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// With dns.dnssec, serve's delivery uses DANE: the configuration reaches the resolver (DO,
// AD believed), the metrics wrapper passes the status on, and the attempt's log line says
// dane=verified. The validating resolver is resolvertest's stand-in here; relay's
// TestTransportDANEUnbound runs real DNSSEC (nsd, unbound).
func TestServeDANE(t *testing.T) {
	cert := selfSigned(t)
	m := newMXTest(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	spki, err := dns.CertificateToDANE(1, 1, cert.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	zone := string(m.zone) + "_25._tcp.mx.dest.test. 300 IN TLSA 3 1 1 " + spki + "\n"
	dnsAddr := resolvertest.StartValidating(t, resolvertest.Validating{Zone: zone})
	_, addr, logs := m.serve(t, `dns:
  server: `+dnsAddr+`
  dnssec: true
`)
	if line := m.delivered(t, addr, logs); !strings.Contains(line, "cert_verified=false") || !strings.Contains(line, " dane=verified") {
		t.Errorf("attempt line %q; want dane=verified for a certificate PKIX does not verify", line)
	}
}
