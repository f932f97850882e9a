package libcrypto

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
)

// Implementation names the code that makes key's signatures, for the log line at start:
// "libcrypto (OpenSSL 3.0.19 27 Jan 2026)" for a Signer, "crypto/rsa" (with
// GOEXPERIMENT=boringcrypto: "crypto/rsa (BoringCrypto)") for an *rsa.PrivateKey and
// "crypto/ed25519" for an ed25519.PrivateKey.
func Implementation(key crypto.Signer) string {
	switch k := key.(type) {
	case interface{ Implementation() string }:
		return k.Implementation()
	case *rsa.PrivateKey:
		return goRSA
	case ed25519.PrivateKey:
		return "crypto/ed25519"
	}
	return fmt.Sprintf("%T", key)
}
