//go:build !(openssl && cgo)

package libcrypto

import (
	"crypto"
	"crypto/rsa"
	"errors"
)

// Enabled reports whether this build signs RSA through libcrypto: it needs the build tag
// "openssl" and cgo.
const Enabled = false

// NewRSASigner returns key itself: this build has no libcrypto, so crypto/rsa signs.
func NewRSASigner(key *rsa.PrivateKey) (crypto.Signer, error) {
	if key == nil {
		return nil, errors.New("libcrypto: no RSA key")
	}
	return key, nil
}
