package keys

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"

	"sealgate/internal/libcrypto"
)

// Load hands RSA keys to libcrypto in a build with it, and leaves them to crypto/rsa
// otherwise; either way the signatures are crypto/rsa's, byte for byte.
func TestLoadSignsThroughLibcryptoWhenBuilt(t *testing.T) {
	rsaKey := testKey(t, RSA2048).(*rsa.PrivateKey)
	path := filepath.Join(t.TempDir(), "rsa.key")
	if err := WritePrivateKey(path, rsaKey); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	name := libcrypto.Implementation(loaded)
	if libcrypto.Enabled {
		if !strings.HasPrefix(name, "libcrypto (OpenSSL 3") {
			t.Errorf("a build with libcrypto loaded a key for %q (%T)", name, loaded)
		}
	} else if _, ok := loaded.(*rsa.PrivateKey); !ok || !strings.HasPrefix(name, "crypto/rsa") {
		t.Errorf("a build without libcrypto loaded a %T for %q, want *rsa.PrivateKey", loaded, name)
	}
	digest := sha256.Sum256([]byte("keys"))
	got, err := loaded.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rsa.SignPKCS1v15(nil, rsaKey, crypto.SHA256, digest[:])
	if !bytes.Equal(got, want) {
		t.Errorf("%s signature differs from crypto/rsa's", name)
	}

	// A PKCS #1 file and a lowered minimum take the same path.
	pkcs1File := writeFile(t, "pkcs1.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), 0o600)
	if k, err := LoadWithOptions(pkcs1File, LoadOptions{MinRSABits: 1024}); err != nil || libcrypto.Implementation(k) != name {
		t.Errorf("PKCS #1 file: %v, signer %q, want %q", err, libcrypto.Implementation(k), name)
	}

	ed, err := Load(writeKey(t, testKey(t, Ed25519)))
	if err != nil {
		t.Fatal(err)
	}
	if got := libcrypto.Implementation(ed); got != "crypto/ed25519" {
		t.Errorf("Ed25519 key signs through %q, want crypto/ed25519", got)
	}
}

func writeKey(t *testing.T, key crypto.Signer) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k.key")
	if err := WritePrivateKey(path, key); err != nil {
		t.Fatal(err)
	}
	return path
}
