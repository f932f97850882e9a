package keys

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// RSA key generation is slow; each test key is made once.
var (
	keyOnce  sync.Map
	keyCache sync.Map
)

func testKey(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	once, _ := keyOnce.LoadOrStore(alg, new(sync.Once))
	once.(*sync.Once).Do(func() {
		key, err := Generate(alg)
		if err != nil {
			t.Fatalf("Generate(%s): %v", alg, err)
		}
		keyCache.Store(alg, key)
	})
	key, ok := keyCache.Load(alg)
	if !ok {
		t.Fatalf("no %s key", alg)
	}
	return key.(crypto.Signer)
}

func TestGenerate(t *testing.T) {
	for alg, bits := range map[string]int{RSA2048: 2048, RSA3072: 3072} {
		key, ok := testKey(t, alg).(*rsa.PrivateKey)
		if !ok || key.N.BitLen() != bits {
			t.Errorf("Generate(%s) = %T, want a %d-bit RSA key", alg, key, bits)
		}
	}
	if _, ok := testKey(t, Ed25519).(ed25519.PrivateKey); !ok {
		t.Errorf("Generate(ed25519) = %T", testKey(t, Ed25519))
	}
	if _, err := Generate("rsa1024"); err == nil || !strings.Contains(err.Error(), "rsa2048, rsa3072, ed25519") {
		t.Errorf("Generate(rsa1024) error = %v, want one listing the algorithms", err)
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			key := testKey(t, alg)
			dir := filepath.Join(t.TempDir(), "new", "keys")
			path := filepath.Join(dir, "s1.example.com.key")
			if err := WritePrivateKey(path, key); err != nil {
				t.Fatal(err)
			}
			for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got&^want != 0 {
					t.Errorf("%s: mode %04o, want at most %04o", p, got, want)
				}
			}
			data, _ := os.ReadFile(path)
			if block, _ := pem.Decode(data); block == nil || block.Type != "PRIVATE KEY" {
				t.Errorf("file is not a PKCS#8 PEM key")
			}
			loaded, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(loaded.Public()) {
				t.Error("loaded key differs from the written one")
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the key (no temporary files)", len(entries))
			}
		})
	}
}

func TestWriteRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.key")
	first, second := testKey(t, Ed25519), testKey(t, RSA2048)
	if err := WritePrivateKey(path, first); err != nil {
		t.Fatal(err)
	}
	err := WritePrivateKey(path, second)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second write: error = %v, want already exists", err)
	}
	if k, err := Load(path); err != nil || !first.Public().(ed25519.PublicKey).Equal(k.Public()) {
		t.Fatalf("the first key was not kept: %v", err)
	}
	if err := ReplacePrivateKey(path, second); err != nil {
		t.Fatal(err)
	}
	if k, err := Load(path); err != nil || !second.Public().(*rsa.PublicKey).Equal(k.Public()) {
		t.Fatalf("ReplacePrivateKey did not replace the key: %v", err)
	}
}

func writeFile(t *testing.T, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
	return path
}

func TestLoadRefusesOpenModes(t *testing.T) {
	der, _ := x509.MarshalPKCS8PrivateKey(testKey(t, Ed25519))
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for mode, want := range map[os.FileMode]string{
		0o644: "mode 0644 lets others read the private key; chmod 600 it",
		0o640: "mode 0640 lets others read the private key; chmod 600 it",
		0o620: "mode 0620 lets others change the private key; chmod 600 it",
	} {
		path := writeFile(t, "k.key", data, mode)
		_, err := Load(path)
		if err == nil || err.Error() != "keys: "+path+": "+want {
			t.Errorf("mode %04o: error = %v, want %q", mode, err, want)
		}
	}
	if _, err := Load(writeFile(t, "k.key", data, 0o400)); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestLoadFormats(t *testing.T) {
	rsaKey := testKey(t, RSA2048).(*rsa.PrivateKey)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	key, err := Load(writeFile(t, "pkcs1.key", pkcs1, 0o600))
	if err != nil || !rsaKey.PublicKey.Equal(key.Public()) {
		t.Errorf("PKCS#1 import: %v", err)
	}

	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)})

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"weak", weakPEM, "RSA key is 1024 bits; signing needs at least 2048"},
		{"empty", nil, `no PEM "PRIVATE KEY" block found`},
		{"public", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), "no PEM"},
		{"encrypted", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), "the key is encrypted"},
		{"corrupt", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), "decode PRIVATE KEY"},
		{"ec", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}), "ECDSA key cannot sign DKIM"},
	}
	for _, tt := range tests {
		path := writeFile(t, tt.name+".key", tt.data, 0o600)
		_, err := Load(path)
		if err == nil || !strings.HasPrefix(err.Error(), "keys: "+path+": ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want one naming the file and saying %q", tt.name, err, tt.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.key")); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Errorf("missing file: error = %v", err)
	}
	if err := WritePrivateKey(filepath.Join(t.TempDir(), "weak.key"), weak); err == nil {
		t.Error("WritePrivateKey accepted a 1024-bit key")
	}

	// A lower minimum, down to 1024 bits (RFC 8301 §3.2), is an explicit opt-in.
	weakFile := writeFile(t, "weak-opt-in.key", weakPEM, 0o600)
	if key, err := LoadWithOptions(weakFile, LoadOptions{MinRSABits: 1024}); err != nil || !weak.PublicKey.Equal(key.Public()) {
		t.Errorf("1024-bit key with MinRSABits 1024: %v", err)
	}
	if _, err := LoadWithOptions(weakFile, LoadOptions{MinRSABits: 1536}); err == nil || !strings.Contains(err.Error(), "at least 1536") {
		t.Errorf("1024-bit key with MinRSABits 1536: %v", err)
	}
	if _, err := LoadWithOptions(weakFile, LoadOptions{MinRSABits: 512}); err == nil || !strings.Contains(err.Error(), "at least 1024 bits") {
		t.Errorf("MinRSABits 512: %v", err)
	}
}

func TestDNSRecord(t *testing.T) {
	for alg, strs := range map[string]int{Ed25519: 1, RSA2048: 2, RSA3072: 3} {
		pub := testKey(t, alg).Public()
		line := DNSRecord(pub, "s1", "Example.com.")
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("%s: %q does not parse as a zone line: %v", alg, line, err)
		}
		txt, ok := rr.(*dns.TXT)
		if !ok || txt.Hdr.Name != "s1._domainkey.Example.com." {
			t.Fatalf("%s: parsed %v", alg, rr)
		}
		if len(txt.Txt) != strs {
			t.Errorf("%s: %d strings, want %d", alg, len(txt.Txt), strs)
		}
		for _, s := range txt.Txt[:len(txt.Txt)-1] {
			if len(s) != 255 {
				t.Errorf("%s: inner string of %d octets, want 255", alg, len(s))
			}
		}
		want, _ := dkimcore.KeyRecordText(pub)
		if got := strings.Join(txt.Txt, ""); got != want {
			t.Errorf("%s: joined strings = %q, want %q", alg, got, want)
		}
		if strs == 1 && strings.Contains(line, "(") {
			t.Errorf("%s: single-string record has parentheses: %s", alg, line)
		}
	}
	if got := DNSRecord("not a key", "s", "example.com"); got != "" {
		t.Errorf("DNSRecord(string) = %q, want empty", got)
	}
}

func TestCheck(t *testing.T) {
	key := testKey(t, Ed25519)
	other := testKey(t, RSA2048)
	rec := func(sel string, k crypto.Signer) string { return DNSRecord(k.Public(), sel, "example.com") }
	text, _ := dkimcore.KeyRecordText(key.Public())
	zone := strings.Join([]string{
		rec("good", key),
		rec("other", other),
		`testing._domainkey.example.com. IN TXT "` + text + `; t=y"`,
		`bad._domainkey.example.com. IN TXT "v=DKIM1; k=ed25519; p=@@@"`,
		`revoked._domainkey.example.com. IN TXT "v=DKIM1; k=ed25519; p="`,
		rec("two", key),
		rec("two", other),
		`nodata._domainkey.example.com. IN A 192.0.2.1`,
	}, "\n") + "\n"
	r := resolvertest.NewZone(t, zone)

	tests := []struct {
		selector string
		status   Status
		detail   string
	}{
		{"good", StatusPublished, "publishes this key"},
		{"missing", StatusMissing, "the name does not exist"},
		{"nodata", StatusMissing, "exists without a TXT record"},
		{"other", StatusOtherKey, "different RSA key"},
		{"testing", StatusTesting, "t=y"},
		{"bad", StatusBadSyntax, "p= is not valid base64"},
		{"revoked", StatusRevoked, "revoked"},
		{"two", StatusSeveralRecords, "2 TXT records"},
	}
	for _, tt := range tests {
		res, err := Check(context.Background(), r, key, tt.selector, "example.com")
		if err != nil {
			t.Errorf("%s: %v", tt.selector, err)
			continue
		}
		if res.Status != tt.status || !strings.Contains(res.Detail, tt.detail) || res.OK() != (tt.status == StatusPublished) {
			t.Errorf("%s: %s %q, want %s containing %q", tt.selector, res.Status, res.Detail, tt.status, tt.detail)
		}
		if res.Name != tt.selector+"._domainkey.example.com" || res.Want != text {
			t.Errorf("%s: Name %q Want %q", tt.selector, res.Name, res.Want)
		}
	}
}

func TestCheckTemporaryFailure(t *testing.T) {
	addr := resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_ = w.WriteMsg(new(dns.Msg).SetRcode(req, dns.RcodeServerFailure))
	}))
	r, err := resolver.New(resolver.Config{Server: addr})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Check(context.Background(), r, testKey(t, Ed25519), "s1", "example.com")
	if !resolver.IsTemporary(err) || res == nil || res.Status != StatusDNSFailure || res.OK() {
		t.Fatalf("Check = %+v, %v; want a temporary DNS failure, not missing", res, err)
	}
}

// TestCheckOverNetwork publishes an RSA-3072 key (three strings, a >512-octet answer) on the
// test DNS server and checks it through the network resolver.
func TestCheckOverNetwork(t *testing.T) {
	key := testKey(t, RSA3072)
	addr := resolvertest.Start(t, DNSRecord(key.Public(), "big", "example.com")+"\n")
	r, err := resolver.New(resolver.Config{Server: addr})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Check(context.Background(), r, key, "big", "example.com")
	if err != nil || !res.OK() {
		t.Fatalf("Check = %+v, %v", res, err)
	}
}
