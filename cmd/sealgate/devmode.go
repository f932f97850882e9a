package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sealgate/keys"
	"sealgate/submit"
)

// The embedded default of `sealgate serve --dev`.
const (
	devDomain      = "example.test"
	devLogin       = "demo@example.test"
	devHostname    = "relay.example.test"
	devRSASelector = "rsa2026"
	devEdSelector  = "ed2026"
	devARCSelector = "arc2026"
)

// devState is what dev mode creates in its directory, or finds there from an earlier run.
type devState struct {
	dir                   string
	certFile, keyFile     string
	rsaKey, edKey, arcKey crypto.Signer
	password              string
	zoneFile              string
	usersFile             string
}

// prepareDev creates (or reuses) DIR with a self-signed certificate, DKIM keys for
// example.test, an ARC key, the zone a real deployment would publish, and the demo login.
func prepareDev(dir string) (*devState, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev: create %s: %w", dir, err)
	}
	st := &devState{
		dir:       dir,
		certFile:  filepath.Join(dir, "tls.crt"),
		keyFile:   filepath.Join(dir, "tls.key"),
		zoneFile:  filepath.Join(dir, devDomain+".zone"),
		usersFile: filepath.Join(dir, "users"),
	}
	if err := ensureCert(st.certFile, st.keyFile); err != nil {
		return nil, err
	}
	var err error
	if st.rsaKey, err = ensureKey(filepath.Join(dir, "keys", devRSASelector+"."+devDomain+".key"), keys.RSA2048); err != nil {
		return nil, err
	}
	if st.edKey, err = ensureKey(filepath.Join(dir, "keys", devEdSelector+"."+devDomain+".key"), keys.Ed25519); err != nil {
		return nil, err
	}
	// RSA for the seal: dkimpy's ARC verifier and many receivers know no Ed25519 ARC.
	if st.arcKey, err = ensureKey(filepath.Join(dir, "keys", devARCSelector+"."+devDomain+".key"), keys.RSA2048); err != nil {
		return nil, err
	}
	zone := fmt.Sprintf(`; DNS records a real deployment of this dev relay would publish for %[1]s.
$ORIGIN %[1]s.
$TTL 300
@                 IN MX  10 %[2]s.
%[3]s             IN A   127.0.0.1
@                 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc            IN TXT "v=DMARC1; p=reject; adkim=r; aspf=r"
%[4]s
%[5]s
%[6]s
`, devDomain, devHostname, strings.TrimSuffix(devHostname, "."+devDomain),
		keys.DNSRecord(st.rsaKey.Public(), devRSASelector, devDomain),
		keys.DNSRecord(st.edKey.Public(), devEdSelector, devDomain),
		keys.DNSRecord(st.arcKey.Public(), devARCSelector, devDomain))
	if err := os.WriteFile(st.zoneFile, []byte(zone), 0o644); err != nil {
		return nil, fmt.Errorf("dev: write %s: %w", st.zoneFile, err)
	}
	if err := st.ensureLogin(); err != nil {
		return nil, err
	}
	return st, nil
}

// ensureLogin reads the demo password from DIR/credentials or creates it.
func (st *devState) ensureLogin() error {
	credFile := filepath.Join(st.dir, "credentials")
	b, err := os.ReadFile(credFile)
	if err == nil {
		if login, pw, ok := strings.Cut(strings.TrimSpace(string(b)), " "); ok && login == devLogin && pw != "" {
			st.password = pw
			return nil
		}
		return fmt.Errorf("dev: %s is not a line %q; remove it to make a new one", credFile, devLogin+" PASSWORD")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dev: %w", err)
	}
	var raw [18]byte
	rand.Read(raw[:])
	st.password = base64.RawURLEncoding.EncodeToString(raw[:])
	if err := os.WriteFile(credFile, []byte(devLogin+" "+st.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("dev: write %s: %w", credFile, err)
	}
	os.Remove(st.usersFile) // a new password needs a new hash
	return nil
}

func ensureKey(path, alg string) (crypto.Signer, error) {
	if _, err := os.Stat(path); err == nil {
		return keys.Load(path)
	}
	k, err := keys.Generate(alg)
	if err != nil {
		return nil, err
	}
	if err := keys.WritePrivateKey(path, k); err != nil {
		return nil, err
	}
	return k, nil
}

// ensureCert makes a self-signed certificate for localhost, 127.0.0.1 and the dev host name.
func ensureCert(certFile, keyFile string) error {
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: devHostname, Organization: []string{"sealgate dev mode"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{devHostname, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		return fmt.Errorf("dev: write %s: %w", keyFile, err)
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// devUsers loads DIR/users, writing it first with the demo login's hash when missing.
func devUsers(st *devState) (*submit.Users, error) {
	if _, err := os.Stat(st.usersFile); err != nil {
		hash, err := submit.HashPassword(st.password)
		if err != nil {
			return nil, err
		}
		line, err := submit.FormatUserLine(devLogin, hash, []string{"*@" + devDomain})
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(st.usersFile, []byte("# sealgate dev mode users file; see `sealgate users add --help`\n"+line+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("dev: write %s: %w", st.usersFile, err)
		}
	}
	return submit.LoadUsers(st.usersFile, submit.UsersOptions{})
}
