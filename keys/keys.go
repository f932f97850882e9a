// Package keys generates, stores, loads and checks DKIM signing keys (RFC 6376, RFC 8301,
// RFC 8463): RSA-2048, RSA-3072 and Ed25519 keys kept as PKCS#8 PEM files readable by their
// owner only, and the TXT record (RFC 6376 §3.6.1) that publishes each one.
//
// It refuses to load RSA keys under sign.MinRSABits (2048) unless a lower minimum, down to
// the 1024 bits RFC 8301 permits, is asked for (LoadOptions), never generates one, and
// refuses key files other users can read or change.
//
// It rotates keys publish-before-sign (rotation.go): a new selector's key is generated and
// recorded as pending in a state file under the state directory, and replaces the old key
// of its family only once CheckPublished (publish.go) sees its record through the
// configured resolver and at every authoritative server of the zone that answers; the old
// record is kept for a while, then the admin is told to remove it. It does not talk to DNS
// providers' APIs to publish or remove records, or encrypt key files; those are left to the
// operator's tooling.
package keys

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"sealgate/internal/atomicfile"
	"sealgate/internal/libcrypto"
	"sealgate/internal/secretfile"
	"sealgate/sign"
)

// Key algorithms Generate accepts.
const (
	RSA2048 = "rsa2048"
	RSA3072 = "rsa3072"
	Ed25519 = "ed25519"
)

// Algorithms lists the names Generate accepts, the recommended one first.
var Algorithms = []string{RSA2048, RSA3072, Ed25519}

// maxKeyFileSize bounds what Load reads; a PEM RSA-4096 key is about 3.3 kB.
const maxKeyFileSize = 64 << 10

// Generate returns a new private key for alg: "rsa2048", "rsa3072" or "ed25519".
func Generate(alg string) (crypto.Signer, error) {
	switch alg {
	case RSA2048, RSA3072:
		bits := 2048
		if alg == RSA3072 {
			bits = 3072
		}
		key, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, fmt.Errorf("keys: generate %s key: %w", alg, err)
		}
		return key, nil
	case Ed25519:
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("keys: generate %s key: %w", alg, err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("keys: unknown key algorithm %q (want one of %s)", alg, strings.Join(Algorithms, ", "))
}

// WritePrivateKey stores key at path as a PKCS#8 PEM file with mode 0600, creating the parent
// directory with mode 0700 if it is missing. It refuses to replace an existing file. The file
// appears complete or not at all: the key is written to a temporary file in the same directory,
// synced, then linked into place.
func WritePrivateKey(path string, key crypto.Signer) error {
	return writePrivateKey(path, key, false)
}

// ReplacePrivateKey is WritePrivateKey, but replaces a file already at path.
func ReplacePrivateKey(path string, key crypto.Signer) error {
	return writePrivateKey(path, key, true)
}

func writePrivateKey(path string, key crypto.Signer, overwrite bool) (err error) {
	if err := checkSigningKey(key, 0); err != nil {
		return fmt.Errorf("keys: %s: %w", path, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("keys: %s: encode key: %w", path, err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	// Without overwrite the key is linked into place, which fails if path exists, so a key
	// that appeared meanwhile is not clobbered.
	write := atomicfile.Create
	if overwrite {
		write = atomicfile.Write
	}
	if err := write(path, data, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("keys: %s already exists; not overwriting a key", path)
		}
		return fmt.Errorf("keys: %w", err)
	}
	return nil
}

// LoadOptions tune Load.
type LoadOptions struct {
	// MinRSABits is the smallest RSA key accepted: 0 means sign.MinRSABits (2048); it may be
	// lowered to sign.LowestMinRSABits (1024) for an existing selector that is still to be
	// rotated.
	MinRSABits int
}

// Load reads a private key from a PEM file: PKCS#8 ("PRIVATE KEY") or, for imported keys,
// PKCS#1 ("RSA PRIVATE KEY"). It refuses a file that group or other users can read or write
// (internal/secretfile), RSA keys under sign.MinRSABits and key types DKIM cannot use. Errors name
// the file and never contain key material. An RSA key signs through libcrypto in a build
// with it (see internal/libcrypto), so the result is an *rsa.PrivateKey only without.
func Load(path string) (crypto.Signer, error) {
	return LoadWithOptions(path, LoadOptions{})
}

// LoadWithOptions is Load with a configured minimum RSA key size.
func LoadWithOptions(path string, opts LoadOptions) (crypto.Signer, error) {
	if err := sign.CheckMinRSABits(opts.MinRSABits); err != nil {
		return nil, fmt.Errorf("keys: %s: minimum RSA key size %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if err := secretfile.CheckMode(path, fi, "the private key"); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keys: read %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("keys: %s: larger than %d bytes; not a key file", path, maxKeyFileSize)
	}
	key, err := parsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	if err := checkSigningKey(key, opts.MinRSABits); err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	if k, ok := key.(*rsa.PrivateKey); ok {
		// A build with libcrypto (-tags openssl) loads the key into it once, and RSA signs
		// about four times faster; otherwise NewRSASigner returns k and crypto/rsa signs.
		if key, err = libcrypto.NewRSASigner(k); err != nil {
			return nil, fmt.Errorf("keys: %s: %w", path, err)
		}
	}
	return key, nil
}

// parsePEM finds the first private key block in data and decodes it.
func parsePEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New(`no PEM "PRIVATE KEY" block found`)
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted; sealgate needs it unencrypted " +
				"(openssl pkey -in FILE -out FILE.new, then protect the file with mode 0600)")
		case "OPENSSH PRIVATE KEY":
			return nil, errors.New("an OpenSSH key file is not supported; convert it to PKCS#8 " +
				"(ssh-keygen -p -m PKCS8 -f FILE)")
		case "EC PRIVATE KEY":
			return nil, errors.New("an ECDSA key cannot sign DKIM; use RSA or Ed25519")
		default:
			continue // parameters, certificates, public keys: look further
		}
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", key)
		}
		return signer, nil
	}
}

// checkSigningKey refuses keys DKIM cannot sign with or that are under the minimum RSA size
// (0: sign.MinRSABits).
func checkSigningKey(key crypto.Signer, minRSABits int) error {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return sign.CheckRSAKeySize(k.N.BitLen(), minRSABits)
	case ed25519.PrivateKey:
		return nil
	}
	return fmt.Errorf("a %T key cannot sign DKIM; use RSA or Ed25519", key)
}
