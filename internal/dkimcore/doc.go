// Package dkimcore holds what DKIM signing (RFC 6376, RFC 8463) and ARC (RFC 8617) share:
// header parsing, simple and relaxed canonicalisation, tag lists, key records, and the
// signing and verification of one DKIM-syntax field (DKIM-Signature, ARC-Message-Signature,
// ARC-Seal).
//
// It exists so that the body of a message is canonicalised and hashed once per
// canonicalisation and the result shared by every signature and seal made over it.
//
// It does not choose what to sign, pick keys or decide policy: that is package sign (DKIM)
// and package arc (ARC). rsa-sha1 is neither produced nor accepted (RFC 8301), and l= is never
// produced; a signature carrying l= is refused rather than verified over a partial body.
package dkimcore
