//go:build openssl && cgo

package libcrypto

// This file is the whole binding: no OpenSSL binding for Go is served by our module proxy, and
// crypto/rsa is about four times slower than OpenSSL's IFMA code for RSA-2048 here (see the
// package comment). OPENSSL_NO_DEPRECATED hides every call deprecated in OpenSSL 3 (RSA_*,
// EVP_PKEY_get1_RSA, ...), so the build fails if one creeps in: only the EVP API is used.

/*
#cgo pkg-config: libcrypto
#cgo CFLAGS: -DOPENSSL_API_COMPAT=30000 -DOPENSSL_NO_DEPRECATED
#cgo noescape sg_sign
#cgo nocallback sg_sign
#include <stdlib.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/rsa.h>

#if OPENSSL_VERSION_MAJOR < 3
#error "sealgate's libcrypto signer needs OpenSSL 3 (Debian: libssl-dev)"
#endif

enum { SG_SHA256 = 1, SG_SHA384, SG_SHA512 };

// sg_load decodes a PKCS #1 RSAPrivateKey into an EVP_PKEY, then clears the DER bytes; the
// caller frees them. On failure it returns NULL with OpenSSL's error code in *err.
static EVP_PKEY *sg_load(unsigned char *der, long len, unsigned long *err) {
	const unsigned char *p = der;
	EVP_PKEY *pkey;

	ERR_clear_error();
	pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, len);
	OPENSSL_cleanse(der, (size_t)len);
	*err = pkey == NULL ? ERR_peek_last_error() : 0;
	return pkey;
}

// sg_sign makes an RSASSA-PKCS1-v1_5 signature (RFC 8017 §8.2.1) of a digest with a fresh
// EVP_PKEY_CTX, freed before it returns: the EVP_PKEY is only read, so many threads may sign
// with it at once. It returns 0, or the step that failed with OpenSSL's error code in *err
// (the error queue is per thread, so it is read here, before the goroutine can move).
static int sg_sign(EVP_PKEY *pkey, int hash, const unsigned char *digest, size_t dlen,
		unsigned char *sig, size_t *siglen, unsigned long *err) {
	const EVP_MD *md = hash == SG_SHA512 ? EVP_sha512() : hash == SG_SHA384 ? EVP_sha384() : EVP_sha256();
	EVP_PKEY_CTX *ctx;
	int step = 0;

	ERR_clear_error();
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (ctx == NULL)
		step = 1;
	else if (EVP_PKEY_sign_init(ctx) <= 0)
		step = 2;
	else if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
		step = 3;
	else if (EVP_PKEY_CTX_set_signature_md(ctx, md) <= 0)
		step = 4;
	else if (EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) <= 0)
		step = 5;
	*err = step ? ERR_peek_last_error() : 0;
	EVP_PKEY_CTX_free(ctx);
	return step;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Enabled reports whether this build signs RSA through libcrypto: it needs the build tag
// "openssl" and cgo.
const Enabled = true

// Signer is an RSA private key held by libcrypto. It is safe for concurrent use: every
// signature gets its own EVP_PKEY_CTX, and the EVP_PKEY is never changed after loading
// (openssl-threads(7): objects are thread-safe while the calls made on them do not modify
// them, and libcrypto locks its own cached state, such as the reference count and RSA
// blinding). The key is freed when the Signer is garbage collected.
type Signer struct {
	pkey *C.EVP_PKEY
	pub  *rsa.PublicKey
	size int // bytes in a signature: the modulus length
}

// freedKeys counts keys released by the cleanup, for the tests.
var freedKeys atomic.Int64

// NewRSASigner loads key into libcrypto once and returns a Signer for it. The private key's
// DER encoding handed to C is cleared before it is freed; key itself is not changed. A
// first signature, checked with crypto/rsa against key's public half, makes sure libcrypto
// holds the same key (and warms libcrypto's per-key caches before concurrent use).
func NewRSASigner(key *rsa.PrivateKey) (crypto.Signer, error) {
	if key == nil {
		return nil, errors.New("libcrypto: no RSA key")
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	cder := C.CBytes(der)
	clear(der)
	var code C.ulong
	pkey := C.sg_load((*C.uchar)(cder), C.long(len(der)), &code)
	C.free(cder)
	if pkey == nil {
		return nil, fmt.Errorf("libcrypto: load the RSA key: %s", errorString(code))
	}
	s := &Signer{
		pkey: pkey,
		pub:  &rsa.PublicKey{N: new(big.Int).Set(key.N), E: key.E},
		size: (key.N.BitLen() + 7) / 8,
	}
	runtime.AddCleanup(s, freeKey, pkey)
	if n := int(C.EVP_PKEY_get_size(pkey)); n != s.size {
		return nil, fmt.Errorf("libcrypto: loaded an RSA key with %d-byte signatures, want %d", n, s.size)
	}
	check := sha256.Sum256([]byte("sealgate: libcrypto signer self-check"))
	sig, err := s.Sign(nil, check[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	if err := rsa.VerifyPKCS1v15(s.pub, crypto.SHA256, check[:], sig); err != nil {
		return nil, fmt.Errorf("libcrypto: a signature of the loaded key does not verify with its public key: %w", err)
	}
	return s, nil
}

func freeKey(pkey *C.EVP_PKEY) {
	C.EVP_PKEY_free(pkey)
	freedKeys.Add(1)
}

// Public returns the key's *rsa.PublicKey.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Implementation names what signs: "libcrypto (OpenSSL 3.0.19 27 Jan 2026)".
func (s *Signer) Implementation() string { return "libcrypto (" + version() + ")" }

var version = sync.OnceValue(func() string { return C.GoString(C.OpenSSL_version(C.OPENSSL_VERSION)) })

// Sign makes an RSASSA-PKCS1-v1_5 signature of digest, a hash made with opts.HashFunc():
// SHA-256 (crypto.SHA256, what DKIM and ARC use), SHA-384 or SHA-512. It refuses RSA-PSS
// options, unhashed input (crypto.Hash(0)) and other hashes. The signature is
// deterministic; rand is not used (libcrypto blinds with its own generator).
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	hash, err := hashFor(opts, len(digest))
	if err != nil {
		return nil, err
	}
	sig := make([]byte, s.size)
	n := C.size_t(len(sig))
	var code C.ulong
	step := C.sg_sign(s.pkey, hash, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), &n, &code)
	runtime.KeepAlive(s) // the cleanup must not free pkey during the call
	if step != 0 {
		return nil, fmt.Errorf("libcrypto: RSA signature: %s: %s", signSteps[step], errorString(code))
	}
	if int(n) != len(sig) {
		return nil, fmt.Errorf("libcrypto: RSA signature of %d bytes, want %d", n, len(sig))
	}
	return sig, nil
}

var signSteps = [...]string{1: "new EVP_PKEY_CTX", 2: "EVP_PKEY_sign_init",
	3: "set PKCS #1 v1.5 padding", 4: "set the digest", 5: "EVP_PKEY_sign"}

// hashFor maps opts to the digest sg_sign names, checking digest's length n.
func hashFor(opts crypto.SignerOpts, n int) (C.int, error) {
	if opts == nil {
		return 0, errors.New("libcrypto: no signer options; pass the digest's hash, e.g. crypto.SHA256")
	}
	if _, ok := opts.(*rsa.PSSOptions); ok {
		return 0, errors.New("libcrypto: RSA-PSS is not supported; this signer makes PKCS #1 v1.5 signatures of SHA-256, SHA-384 or SHA-512 digests")
	}
	var id C.int
	switch h := opts.HashFunc(); h {
	case crypto.SHA256:
		id = C.SG_SHA256
	case crypto.SHA384:
		id = C.SG_SHA384
	case crypto.SHA512:
		id = C.SG_SHA512
	case 0:
		return 0, errors.New("libcrypto: unhashed input (crypto.Hash(0)) is not supported; sign a SHA-256, SHA-384 or SHA-512 digest")
	default:
		return 0, fmt.Errorf("libcrypto: %v digests are not supported; sign a SHA-256, SHA-384 or SHA-512 digest", h)
	}
	if h := opts.HashFunc(); n != h.Size() {
		return 0, fmt.Errorf("libcrypto: a %v digest is %d bytes, got %d", h, h.Size(), n)
	}
	return id, nil
}

// errorString describes an OpenSSL error code.
func errorString(code C.ulong) string {
	if code == 0 {
		return "libcrypto gave no reason"
	}
	var buf [256]C.char
	C.ERR_error_string_n(code, &buf[0], C.size_t(len(buf)))
	return C.GoString(&buf[0])
}
