// Package configtest writes a complete, valid sealgate configuration (real DKIM, ARC and
// TLS keys, a certificate, a users file, a DNS zone) into a test's directory, with chosen
// changes, and checks the problems a load reports. The tests of internal/config and of
// cmd/sealgate's checks of the same files (signing.go there) share it.
//
// It is for tests only; it neither loads configurations nor imports package config.
package configtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// WriteFiles creates files (name -> content) under dir, mode 0600.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// PEMKey returns key as a PKCS#8 PEM file's content.
func PEMKey(t testing.TB, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// EdKey returns a new Ed25519 key as PEM: quick to make, and a real DKIM key.
func EdKey(t testing.TB) string {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return PEMKey(t, k)
}

// RSAKey returns a new RSA key of bits bits as PEM.
func RSAKey(t testing.TB, bits int) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return PEMKey(t, k)
}

// CertPair returns a self-signed certificate for relay.corp.example and its key, as PEM.
func CertPair(t testing.TB) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "relay.corp.example"},
		DNSNames:     []string{"relay.corp.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), PEMKey(t, k)
}

// Hash returns an argon2id PHC string for pw with cheap parameters.
func Hash(pw string) string {
	salt := []byte("saltsaltsaltsalt")
	key := argon2.IDKey([]byte(pw), salt, 1, 64, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s",
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

const Good = `
hostname: relay.corp.example
dir: state
listeners:
  - name: submission
    address: "127.0.0.1:0"
    mode: submission
    auth: [sasl]
    tls_cert: tls/cert.pem
    tls_key: tls/key.pem
  - name: smarthost
    address: "127.0.0.1:2525"
    mode: smarthost
    auth: [network]
users_file: users
client_networks:
  - name: acme
    cidrs: [192.0.2.0/28, 198.51.100.7, "2001:db8::/32"]
    may_send_as: ["*@acme.example", "*@bücher.example"]
    seal: false
    rate_per_minute: 10
domains:
  - domain: corp.example
    keys:
      - {selector: s1, key_file: keys/s1.pem}
      - {selector: "2026e", key_file: keys/e.pem}
  - domain: acme.example
    keys: [{selector: s1, key_file: keys/acme.pem}]
  - domain: bücher.example
    keys: [{selector: s1, key_file: keys/buecher.pem}]
arc:
  domain: corp.example
  selector: arc
  key_file: keys/arc.pem
relay:
  outbox: outbox
dns:
  zone_file: corp.example.zone   # the tests never use the system resolver
`

// GoodDir writes Good and every file it names (real keys and certificates)
// into a new directory.
func GoodDir(t testing.TB) string {
	dir := t.TempDir()
	cert, key := CertPair(t)
	WriteFiles(t, dir, map[string]string{
		"sealgate.yaml": Good,
		"tls/cert.pem":  cert, "tls/key.pem": key,
		"users":       "alice " + Hash("pw") + " *@corp.example\n",
		"keys/s1.pem": EdKey(t), "keys/e.pem": EdKey(t), "keys/acme.pem": EdKey(t), "keys/buecher.pem": EdKey(t),
		"keys/arc.pem":      EdKey(t),
		"corp.example.zone": "$ORIGIN corp.example.\n@ 300 IN TXT \"v=spf1 -all\"\n",
	})
	return dir
}

// Dir writes Good with the replacements (old, new pairs) applied, and the extra files, into
// a GoodDir, and returns the directory; the configuration is its sealgate.yaml.
func Dir(t testing.TB, files map[string]string, replace ...string) string {
	t.Helper()
	dir := GoodDir(t)
	cfg := Good
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(cfg, replace[i]) {
			t.Fatalf("configtest.Good has no %q", replace[i])
		}
		cfg = strings.Replace(cfg, replace[i], replace[i+1], 1)
	}
	files2 := map[string]string{"sealgate.yaml": cfg}
	for k, v := range files {
		files2[k] = v
	}
	WriteFiles(t, dir, files2)
	return dir
}

// WantProblems checks that err lists every wanted problem, each a whole line or the start
// of one ("key: message").
func WantProblems(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %q", want)
	}
	lines := strings.Split(err.Error(), "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, w)
		}
		if !found {
			t.Errorf("missing problem %q", w)
		}
	}
	if t.Failed() {
		t.Logf("all problems:\n%v", err)
	}
}

// OnlyProblems is WantProblems, and no other problem.
func OnlyProblems(t testing.TB, err error, want ...string) {
	t.Helper()
	WantProblems(t, err, want...)
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) && len(leaves(err)) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(leaves(err)), len(want), err)
	}
}

// leaves returns the errors of a tree of errors.Join results.
func leaves(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, leaves(e)...)
	}
	return out
}
