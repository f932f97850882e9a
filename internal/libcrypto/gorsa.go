//go:build !boringcrypto

package libcrypto

// goRSA names Go's RSA code.
const goRSA = "crypto/rsa"
