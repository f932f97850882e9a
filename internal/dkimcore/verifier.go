package dkimcore

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"

	"sealgate/internal/resolver"
)

// Verifier verifies DKIM-syntax signatures (DKIM-Signature, ARC-Message-Signature,
// ARC-Seal) with one set of rules for key records, fetching each key record once. DKIM
// verification (package sign) and ARC validation (package arc) both use it, so a key
// record means the same to both. A Verifier is for one message or one batch of messages
// from the same moment; it is not safe for concurrent use.
type Verifier struct {
	// Resolver fetches key records (RFC 6376 §3.6.2.2).
	Resolver resolver.Resolver
	// MinRSABits is the smallest RSA key a signature is accepted with; a smaller key at or
	// above MinVerifyRSABits gives a policy error. Values under MinVerifyRSABits (RFC 8301
	// §3.2: keys under 1024 bits are never valid) mean MinVerifyRSABits.
	MinRSABits int

	keys map[string]keyLookup
}

type keyLookup struct {
	rec *KeyRecord
	err error
}

// Key returns the key record at selector._domainkey.domain, looking it up on first use and
// remembering the answer (a failure too) for the Verifier's lifetime. Errors are those of
// LookupKey.
func (v *Verifier) Key(ctx context.Context, selector, domain string) (*KeyRecord, error) {
	id := selector + "._domainkey." + domain
	if k, ok := v.keys[id]; ok {
		return k.rec, k.err
	}
	var k keyLookup
	if v.Resolver == nil {
		k.err = permErr("no DNS resolver to fetch key %s", id)
	} else {
		k.rec, k.err = LookupKey(ctx, v.Resolver, selector, domain)
	}
	if v.keys == nil {
		v.keys = map[string]keyLookup{}
	}
	v.keys[id] = k
	return k.rec, k.err
}

// UsableKey fetches the key of sig and checks what the key record says about its use (RFC
// 6376 §6.1.2): the key is not revoked (LookupKey), its type matches a=, an RSA key is large
// enough, and for a DKIM-Signature under a t=s key, i= is in d= exactly. It returns the key
// record whenever one was found, so callers can report its size and t=y also when it may not
// be used. Errors are *Error values.
func (v *Verifier) UsableKey(ctx context.Context, sig *Signature) (*KeyRecord, error) {
	key, err := v.Key(ctx, sig.Selector, sig.Domain)
	if err != nil {
		return nil, err
	}
	switch pub := key.PublicKey.(type) {
	case *rsa.PublicKey:
		if sig.Algorithm != RSASHA256 {
			return key, permErr("key type rsa does not match a=%s", sig.Algorithm)
		}
		if bits, min := pub.N.BitLen(), max(v.MinRSABits, MinVerifyRSABits); bits < min {
			if bits < MinVerifyRSABits {
				return key, permErr("RSA key of %d bits is too short (RFC 8301 §3.2)", bits)
			}
			return key, policyErr("RSA key of %d bits is under the %d bits required here", bits, min)
		}
	case ed25519.PublicKey:
		if sig.Algorithm != Ed25519SHA256 {
			return key, permErr("key type ed25519 does not match a=%s", sig.Algorithm)
		}
	}
	if sig.Kind == DKIMSignature && key.Strict && sig.Identifier != "" && !identifierInDomain(sig.Identifier, sig.Domain, true) {
		return key, permErr("key record has t=s, so i= must be in d=%s itself, not a subdomain (RFC 6376 §3.6.1)", sig.Domain)
	}
	return key, nil
}

// Verify checks sig with its key (UsableKey): b= over hashInput followed by the signature
// field itself (b= emptied) canonicalised with c. It returns the key record when one was
// found, also when verification then fails. Errors are *Error values.
func (v *Verifier) Verify(ctx context.Context, sig *Signature, hashInput []byte, c Canonicalization) (*KeyRecord, error) {
	key, err := v.UsableKey(ctx, sig)
	if err != nil {
		return key, err
	}
	return key, sig.VerifyWithKey(key, hashInput, c)
}

// Bits is the size of the public key in bits: the RSA modulus length, or 256 for Ed25519;
// 0 for a revoked key.
func (k *KeyRecord) Bits() int {
	switch pub := k.PublicKey.(type) {
	case *rsa.PublicKey:
		return pub.N.BitLen()
	case ed25519.PublicKey:
		return 8 * len(pub)
	}
	return 0
}
