package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
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
	dir := t.TempDir()
	st, err := prepareDev(filepath.Join(dir, "dev"), devOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t)
	sink := &mxSink{done: make(chan struct{}, 1)}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		host, _, _ := net.SplitHostPort(c.Conn().RemoteAddr().String())
		return &mxSession{s: sink, remote: host}, nil
	}))
	srv.Domain = "mx.dest.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port

	zone, err := os.ReadFile(st.zoneFile)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := dns.CertificateToDANE(1, 1, cert.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	zone = append(zone, "\ndest.test. 300 IN MX 10 mx.dest.test.\nmx.dest.test. 300 IN A 127.0.0.2\n_25._tcp.mx.dest.test. 300 IN TLSA 3 1 1 "+spki+"\n"...)
	dnsAddr := resolvertest.StartValidating(t, resolvertest.Validating{Zone: string(zone)})
	keyDir := filepath.Join(st.dir, "keys")
	cfg := fmt.Sprintf(`hostname: relay.example.test
dir: %[1]s/state
listeners:
  - name: smarthost
    address: "127.0.0.1:0"
    mode: smarthost
    auth: [network]
client_networks:
  - name: partner-mta
    cidrs: ["127.0.0.1/32"]
    may_send_as: ["*@example.test"]
domains:
  - domain: example.test
    keys:
      - selector: ed2026
        key_file: %[2]s/ed2026.example.test.key
arc:
  domain: example.test
  selector: arc2026
  key_file: %[2]s/arc2026.example.test.key
relay:
  mx_port: %[3]d
  mta_sts: false
dns:
  server: %[4]s
  dnssec: true
`, dir, keyDir, port, dnsAddr)
	file := filepath.Join(dir, "sealgate.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, res, err := loadAndOpen(file)
	if err != nil {
		t.Fatalf("config.LoadAndOpen: %v", err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	s, runner, _, cleanup, err := buildMetered(c, res, log, nil)
	if err != nil {
		t.Fatalf("buildMetered: %v", err)
	}
	defer cleanup()
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- runner.Run(ctx) }()
	defer func() { cancel(); <-ran }()

	msg := "From: a@example.test\r\nTo: b@dest.test\r\nSubject: dane\r\n\r\nhello\r\n"
	if err := submitPlain(s.Addrs()[0].String(), "a@example.test", "b@dest.test", msg); err != nil {
		t.Fatalf("submit: %v", err)
	}
	select {
	case <-sink.done:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery to the MX host")
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		logMu.Lock()
		text := logs.String()
		logMu.Unlock()
		line := ""
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, `status=sent rcpts=b@dest.test domain=dest.test host=mx.dest.test ip=127.0.0.2`) {
				line = l
			}
		}
		if line != "" {
			if !strings.Contains(line, "cert_verified=false") || !strings.Contains(line, " dane=verified") {
				t.Errorf("attempt line %q; want dane=verified for a certificate PKIX does not verify", line)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivery attempt line in the log:\n%s", text)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
