package libcrypto

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// Test keys, made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:N` (PKCS #8
// PEM). They sign nothing outside these tests.
var testKeyBits = []int{1024, 2048, 3072, 4096}

var (
	testKeysOnce sync.Once
	testKeys     map[int]*rsa.PrivateKey
	testKeysErr  error
)

// testKey returns the committed test key of the given size.
func testKey(tb testing.TB, bits int) *rsa.PrivateKey {
	tb.Helper()
	testKeysOnce.Do(func() {
		testKeys = map[int]*rsa.PrivateKey{}
		for _, n := range testKeyBits {
			file := filepath.Join("testdata", "rsa"+strconv.Itoa(n)+".pem")
			data, err := os.ReadFile(file)
			if err != nil {
				testKeysErr = err
				return
			}
			block, _ := pem.Decode(data)
			if block == nil {
				testKeysErr = &os.PathError{Op: "decode PEM", Path: file, Err: os.ErrInvalid}
				return
			}
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				testKeysErr = err
				return
			}
			testKeys[n] = k.(*rsa.PrivateKey)
		}
	})
	if testKeysErr != nil {
		tb.Fatal(testKeysErr)
	}
	k := testKeys[bits]
	if k == nil || k.N.BitLen() != bits {
		tb.Fatalf("no %d-bit test key", bits)
	}
	return k
}
