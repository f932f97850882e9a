//go:build boringcrypto

package libcrypto

// goRSA names Go's RSA code; with GOEXPERIMENT=boringcrypto, BoringCrypto does the work.
const goRSA = "crypto/rsa (BoringCrypto)"
