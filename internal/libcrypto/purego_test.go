//go:build !(openssl && cgo)

package libcrypto

import "testing"

// Without libcrypto, crypto/rsa signs: NewRSASigner hands back the key it was given.
func TestPureGoBuildReturnsTheKey(t *testing.T) {
	key := testKey(t, 2048)
	s, err := NewRSASigner(key)
	if err != nil {
		t.Fatal(err)
	}
	if s != key {
		t.Errorf("NewRSASigner returned %T %p, want the key %p itself", s, s, key)
	}
	if _, err := NewRSASigner(nil); err == nil {
		t.Error("NewRSASigner(nil) succeeded")
	}
}
