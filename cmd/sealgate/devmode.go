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

	"sealgate/internal/atomicfile"
	"sealgate/internal/config"
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
	// The forwarder login: a mailing list at lists.example.test, signed with its own key.
	devListDomain   = "lists.example.test"
	devListLogin    = "list@" + devListDomain
	devListSelector = "lst2026"
)

// devState is what dev mode creates in its directory, or finds there from an earlier run.
type devState struct {
	dir                   string
	certFile, keyFile     string
	rsaKey, edKey, arcKey crypto.Signer
	listKey               crypto.Signer
	password              string
	listPassword          string
	zoneFile              string
	usersFile             string
	// configFile is DIR/sealgate.yaml, the configuration dev mode serves.
	configFile string
}

// devOptions are the flags of `serve --dev` that end up in DIR/sealgate.yaml.
type devOptions struct {
	nextHop                            string
	submission, submissions, smarthost string
	admin                              string // admin.listen; "" for none
}

// devZoneKeep ends the generated part of the dev zone; the records after it are kept
// across starts.
const devZoneKeep = "; Records added below this line are kept when serve --dev writes this file again."

// prepareDev creates (or reuses) DIR with a self-signed certificate, DKIM keys for
// example.test, an ARC key, the zone a real deployment would publish, the demo login and its
// users file, and writes DIR/sealgate.yaml: the configuration of the relay for opts, served
// like any other.
func prepareDev(dir string, opts devOptions) (*devState, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev: create %s: %w", dir, err)
	}
	st := &devState{
		dir:        dir,
		certFile:   filepath.Join(dir, "tls.crt"),
		keyFile:    filepath.Join(dir, "tls.key"),
		zoneFile:   filepath.Join(dir, devDomain+".zone"),
		usersFile:  filepath.Join(dir, "users"),
		configFile: filepath.Join(dir, "sealgate.yaml"),
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
	if st.listKey, err = ensureKey(filepath.Join(dir, "keys", devListSelector+"."+devListDomain+".key"), keys.RSA2048); err != nil {
		return nil, err
	}
	if err := ensureSRSSecret(filepath.Join(dir, "srs.secret")); err != nil {
		return nil, err
	}
	zone := fmt.Sprintf(`; DNS records a real deployment of this dev relay would publish for %[1]s.
$ORIGIN %[1]s.
$TTL 300
@                 IN MX  10 %[2]s.
%[3]s             IN A   127.0.0.1
@                 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc            IN TXT "v=DMARC1; p=reject; adkim=r; aspf=r; rua=mailto:dmarc-reports@%[1]s"
; The reverse DNS of the relay's address, which its provider publishes in a real deployment.
1.0.0.127.in-addr.arpa. IN PTR %[2]s.
%[4]s
%[5]s
%[6]s
; The forwarder login's mailing list: its own DKIM key, SPF (the SRS senders are here) and DMARC.
%[7]s
%[8]s.     IN MX  10 %[2]s.
%[8]s.     IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.%[8]s. IN TXT "v=DMARC1; p=reject"
`+devZoneKeep+`
`, devDomain, devHostname, strings.TrimSuffix(devHostname, "."+devDomain),
		keys.DNSRecord(st.rsaKey.Public(), devRSASelector, devDomain),
		keys.DNSRecord(st.edKey.Public(), devEdSelector, devDomain),
		keys.DNSRecord(st.arcKey.Public(), devARCSelector, devDomain),
		keys.DNSRecord(st.listKey.Public(), devListSelector, devListDomain), devListDomain)
	// The zone is written anew at each start (the keys may have changed), but what was
	// added below devZoneKeep stays: a rotated key's record (README "Rotating keys"),
	// or any other record being tried out.
	if old, err := os.ReadFile(st.zoneFile); err == nil {
		if _, kept, ok := strings.Cut(string(old), devZoneKeep+"\n"); ok {
			zone += kept
		}
	}
	if err := atomicfile.Write(st.zoneFile, []byte(zone), 0o644); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if err := st.ensureLogin(); err != nil {
		return nil, err
	}
	if err := st.ensureUsersFile(); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(st.configFile, []byte(devConfig(opts)), 0o600); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	return st, nil
}

// devConfig is DIR/sealgate.yaml for opts. Its file names are relative, so the directory
// can be moved or copied and served from there with `serve --config`.
func devConfig(opts devOptions) string {
	relayRoute := "  outbox: outbox                  # one .eml file per relayed message\n"
	if opts.nextHop != "" {
		relayRoute = fmt.Sprintf("  next_hop: %q   # plain SMTP, no AUTH\n", opts.nextHop)
	}
	return fmt.Sprintf(`# sealgate configuration of "sealgate serve --dev", written at every start from its
# flags (edits here are overwritten: copy the file to start a real deployment).
# Serve this directory without dev mode:  sealgate serve --config %[1]s
# Check it:                              sealgate config check --config %[1]s
# Every key is explained in examples/sealgate.yaml; keys not set here (limits, dns
# timeout, ...) have their defaults. File names are relative to this file.

hostname: %[2]s
authserv_id: %[2]s
dir: .                    # the spool lives in ./spool

listeners:
  - name: submission      # STARTTLS + AUTH (RFC 6409); real port: 587
    address: %[3]q
    mode: submission
    auth: [sasl]
    tls_cert: tls.crt     # self-signed for %[2]s, localhost, 127.0.0.1
    tls_key: tls.key
  - name: submissions     # implicit TLS + AUTH (RFC 8314); real port: 465
    address: %[4]q
    mode: submissions
    auth: [sasl]
    tls_cert: tls.crt
    tls_key: tls.key
  - name: smarthost       # client organisations' servers, known by address; real port: 25 or 2525
    address: %[5]q
    mode: smarthost
    auth: [network]
    tls_cert: tls.crt
    tls_key: tls.key

# Logins: %[6]s, and the mailing list %[13]s (role=forwarder: its mail is verified,
# signed as %[14]s, sealed, From rewritten for p=quarantine/reject authors, SRS);
# their passwords are in ./credentials, one line each. Add more with
#   sealgate users add LOGIN --file users --may-send-as '*@%[7]s'
users_file: users

# SRS secrets for forwarders with srs=yes (the first signs, all verify).
srs:
  secret_files: [srs.secret]

client_networks:
  - name: smarthost-localhost
    cidrs: [127.0.0.1/32]
    may_send_as: ["*@%[7]s"]
    allow_null_sender: true

# DKIM keys (RSA-2048 and Ed25519 side by side); their DNS records are in %[7]s.zone.
domains:
  - domain: %[7]s
    keys:
      - selector: %[8]s
        key_file: keys/%[8]s.%[7]s.key
      - selector: %[9]s
        key_file: keys/%[9]s.%[7]s.key
  - domain: %[14]s      # the forwarder login's own signing domain (sign_as)
    keys:
      - selector: %[15]s
        key_file: keys/%[15]s.%[14]s.key

arc:
  domain: %[7]s
  selector: %[10]s
  key_file: keys/%[10]s.%[7]s.key

relay:
%[11]s
# /metrics, /healthz and /readyz over HTTP, on loopback only: no authentication.
admin:
  listen: %[12]q

# Logs: text (logfmt) or json, and the level (debug, info, warn, error).
log:
  format: text
  level: info

# DNS answers (keys of ARC chains messages already carry) come from the zone file
# alone; a real deployment removes this section to use the system resolver.
dns:
  zone_file: %[7]s.zone
`, "sealgate.yaml", devHostname, opts.submission, opts.submissions, opts.smarthost, devLogin, devDomain,
		devRSASelector, devEdSelector, devARCSelector, relayRoute, opts.admin, devListLogin, devListDomain, devListSelector)
}

// ensureLogin reads the passwords of the demo login and the forwarder login from
// DIR/credentials, one "LOGIN PASSWORD" line each with the demo login first, or creates
// what is missing (a directory from before the forwarder login gets its line added).
func (st *devState) ensureLogin() error {
	credFile := filepath.Join(st.dir, "credentials")
	b, err := os.ReadFile(credFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dev: %w", err)
	}
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			login, pw, _ := strings.Cut(strings.TrimSpace(line), " ")
			switch {
			case login == devLogin && pw != "":
				st.password = pw
			case login == devListLogin && pw != "":
				st.listPassword = pw
			}
		}
		if st.password == "" {
			return fmt.Errorf("dev: %s has no line %q; remove it to make a new one", credFile, devLogin+" PASSWORD")
		}
		if st.listPassword != "" {
			return nil
		}
	}
	if st.password == "" {
		st.password = newPassword()
	}
	st.listPassword = newPassword()
	data := devLogin + " " + st.password + "\n" + devListLogin + " " + st.listPassword + "\n"
	if err := atomicfile.Write(credFile, []byte(data), 0o600); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	os.Remove(st.usersFile) // a new password needs a new hash
	return nil
}

// passwordAlphabet is what dev-mode passwords are made of: letters and digits only, so a
// password never starts with '-' (which swaks and other clients read as an option) and needs
// no quoting in a shell.
const passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// passwordLength keeps at least the 144 bits of the 18 random bytes dev mode used before:
// 25 symbols from 62 carry 25*log2(62) ≈ 148.8 bits.
const passwordLength = 25

// newPassword returns a fresh dev-mode password: passwordLength symbols drawn uniformly from
// passwordAlphabet with crypto/rand (rand.Int rejects out-of-range draws, so no symbol is
// more likely than another).
func newPassword() string {
	max := big.NewInt(int64(len(passwordAlphabet)))
	b := make([]byte, passwordLength)
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic("dev: crypto/rand: " + err.Error()) // crypto/rand does not fail on supported systems
		}
		b[i] = passwordAlphabet[n.Int64()]
	}
	return string(b)
}

// ensureSRSSecret creates the SRS secret file when it is missing.
func ensureSRSSecret(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var raw [32]byte
	rand.Read(raw[:])
	if err := atomicfile.Write(path, []byte(base64.StdEncoding.EncodeToString(raw[:])+"\n"), 0o600); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
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
	if err := atomicfile.Write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if err := atomicfile.Write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	return nil
}

// ensureUsersFile writes DIR/users with the demo login's hash when it is missing.
func (st *devState) ensureUsersFile() error {
	if _, err := os.Stat(st.usersFile); err == nil {
		return nil
	}
	hash, err := submit.HashPassword(st.password)
	if err != nil {
		return err
	}
	line, err := config.FormatUserLine(devLogin, hash, []string{"*@" + devDomain})
	if err != nil {
		return err
	}
	listHash, err := submit.HashPassword(st.listPassword)
	if err != nil {
		return err
	}
	listLine, err := config.FormatUserLine(devListLogin, listHash, []string{"*@" + devListDomain})
	if err != nil {
		return err
	}
	// A mailing list: verified and sealed, signed as its own domain, From rewritten when the
	// author's domain asks for DMARC enforcement, SRS for senders from elsewhere.
	listLine += " role=forwarder sign_as=" + devListDomain + " list_address=" + devListLogin +
		" list_name=List from_rewrite=auto srs=yes trusted_authserv_ids=mx." + devListDomain
	data := "# sealgate dev mode users file; see `sealgate users add --help`\n" + line + "\n" + listLine + "\n"
	if err := atomicfile.Write(st.usersFile, []byte(data), 0o600); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	return nil
}
