// Package libcrypto signs with RSA keys through the system's OpenSSL 3 libcrypto: the
// RSASSA-PKCS1-v1_5 signatures (RFC 8017 §8.2) of DKIM (RFC 6376 §3.3.1, RFC 8301) and ARC
// (RFC 8617 §4.1.2, §4.1.3), which are most of the relay's CPU time per message.
//
// It exists because no OpenSSL binding for Go is served by our module proxy, and Go's
// crypto/rsa is about four times slower than OpenSSL's AVX-512 IFMA code path for RSA-2048
// on the machines sealgate runs on. The binding is one file of cgo, built with the build tag
// "openssl" (and cgo); without them NewRSASigner returns the key unchanged and Go's crypto/rsa
// signs, so a machine without a C compiler or libssl-dev builds and runs sealgate the same
// way, only slower.
//
// It signs PKCS #1 v1.5 over SHA-256, SHA-384 and SHA-512 digests only, through the EVP
// API. It does not verify, encrypt, decrypt, sign RSA-PSS or handle other key types:
// verification stays with crypto/rsa, and Ed25519 signing is already fast in Go.
package libcrypto
