// Package dkimcore holds what DKIM signing (RFC 6376, RFC 8463) and ARC (RFC 8617) share:
// header parsing, simple and relaxed canonicalisation, tag lists, key records, header
// selection for hashing, and the signing and verification of one DKIM-syntax field
// (DKIM-Signature, ARC-Message-Signature, ARC-Seal). Verifier is the one place where key
// records are fetched and their rules applied (k=, h=, s=, t=s, revoked, key size), for DKIM
// verification in package sign and for ARC validation alike.
//
// It exists so that the body of a message is canonicalised and hashed once per
// canonicalisation and the result shared by every signature and seal made over it.
//
// It does not choose what to sign, pick keys or decide policy: that is package sign (DKIM)
// and package arc (ARC). rsa-sha1 is neither produced nor accepted (RFC 8301), and l= is never
// produced; a signature carrying l= is refused (a policy error) rather than verified over a
// partial body.
package dkimcore
