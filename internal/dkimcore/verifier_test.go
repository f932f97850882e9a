package dkimcore

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// countingResolver counts TXT lookups.
type countingResolver struct {
	resolver.Resolver
	txt int
}

func (c *countingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	c.txt++
	return c.Resolver.LookupTXT(ctx, name)
}

// TestVerifier: a key record is fetched once per Verifier (a failed lookup too), an RSA key
// under MinRSABits is a policy error, and a signature verifies through the same path for
// every kind of field.
func TestVerifier(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	rrec, _ := KeyRecordText(rk.Public())
	erec, _ := KeyRecordText(ek.Public())
	r := &countingResolver{Resolver: resolvertest.NewZone(t, "rsa._domainkey.example.com. 300 IN TXT \""+rrec+"\"\n"+
		"ed._domainkey.example.com. 300 IN TXT \""+erec+"\"\n")}
	ctx := context.Background()
	input := []byte("from:a@example.com\r\n")
	sign := func(name, sel string, key crypto.Signer) *Signature {
		t.Helper()
		tags := []Tag{{Name: "i", Value: "1"}, {Name: "a", Value: RSASHA256}, {Name: "d", Value: "example.com"}, {Name: "s", Value: sel}, {Name: "cv", Value: "none"}}
		if sel == "ed" {
			tags[1].Value = Ed25519SHA256
		}
		f, err := SignField(name, tags, input, Relaxed, key)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := ParseSignature(f)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	seal := sign("ARC-Seal", "rsa", rk)
	edSeal := sign("ARC-Seal", "ed", ek)

	v := &Verifier{Resolver: r}
	for range 3 {
		key, err := v.Verify(ctx, seal, input, Relaxed)
		if err != nil || key.Bits() != 1024 {
			t.Fatalf("1024-bit seal: %v (key %v)", err, key)
		}
	}
	if _, err := v.Verify(ctx, edSeal, input, Relaxed); err != nil {
		t.Fatalf("ed25519 seal: %v", err)
	}
	if _, err := v.Verify(ctx, seal, append([]byte("x"), input...), Relaxed); !IsFail(err) {
		t.Errorf("changed input: %v, want a fail", err)
	}
	for range 2 {
		if _, err := v.Key(ctx, "missing", "example.com"); err == nil || IsTemporary(err) {
			t.Errorf("missing key: %v", err)
		}
	}
	if r.txt != 3 {
		t.Errorf("%d TXT lookups, want 3 (rsa, ed, missing once each)", r.txt)
	}

	strict := &Verifier{Resolver: r, MinRSABits: 2048}
	key, err := strict.Verify(ctx, seal, input, Relaxed)
	if !IsPolicy(err) || key == nil || !strings.Contains(err.Error(), "1024 bits is under the 2048") {
		t.Errorf("MinRSABits 2048: %v", err)
	}
	if _, err := strict.Verify(ctx, edSeal, input, Relaxed); err != nil {
		t.Errorf("MinRSABits does not apply to Ed25519: %v", err)
	}
	if _, err := (&Verifier{}).Verify(ctx, seal, input, Relaxed); err == nil || IsTemporary(err) || !strings.Contains(err.Error(), "no DNS resolver") {
		t.Errorf("no resolver: %v", err)
	}
}
