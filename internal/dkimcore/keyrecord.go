package dkimcore

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"sealgate/internal/resolver"
)

// KeyRecord is a parsed DKIM public key record (RFC 6376 §3.6.1, RFC 8463 §4).
type KeyRecord struct {
	KeyType string // "rsa" or "ed25519" (k=, default "rsa")
	// PublicKey is a *rsa.PublicKey or an ed25519.PublicKey; nil if the key is revoked.
	PublicKey crypto.PublicKey
	Revoked   bool // p= is empty: the key has been withdrawn (RFC 6376 §3.6.1)
	Testing   bool // t=y: the domain is testing DKIM (RFC 6376 §3.6.1)
	Strict    bool // t=s: the i= domain must equal d=, not be a subdomain of it
	// Hashes lists the acceptable hash algorithms (h=); nil when absent, meaning all.
	Hashes []string
	// Services lists the service types (s=); nil when absent, meaning "*".
	Services []string
	Raw      string // the record as published
}

// ErrKeyRevoked is wrapped by the error LookupKey returns for a revoked key (empty p=).
var ErrKeyRevoked = errors.New("key revoked (empty p=)")

// keyErr is a permanent error about a key record; LookupKey replaces the "key record" prefix
// with the record's name.
func keyErr(format string, a ...any) error {
	return permErr("key record: "+format, a...)
}

// ParseKeyRecord parses the text of a DKIM key record (one TXT record, its strings joined).
// v=, if present, must be the first tag and be DKIM1; k= defaults to rsa; p= is base64 with
// white space allowed, holding a DER SubjectPublicKeyInfo or bare PKCS#1 key for RSA and the
// raw 32-byte key for Ed25519 (RFC 8463 §4). RSA keys under 1024 bits are refused (RFC 8301).
// h=, if present, must allow sha256; s= must be * or include email. An empty p= gives a record
// with Revoked set and no error. Errors are permanent *Error values.
func ParseKeyRecord(txt string) (*KeyRecord, error) {
	tags, err := ParseTags(txt)
	if err != nil {
		return nil, &Error{Msg: "key record", Err: err}
	}
	rec := &KeyRecord{KeyType: "rsa", Raw: txt}

	// RFC 6376 §3.6.1: "v= ... If specified, this tag MUST be set to "DKIM1" ... and MUST be
	// the first tag in the record."
	if v, ok := tags.Get("v"); ok {
		if tags[0].Name != "v" {
			return nil, keyErr("v= must be the first tag")
		}
		if v != "DKIM1" {
			return nil, keyErr("v=%s is not DKIM1", shorten(v))
		}
	}
	if h, ok := tags.Get("h"); ok {
		rec.Hashes = keyTagList(h)
		if !listHas(rec.Hashes, "sha256") {
			return nil, keyErr("h=%s does not allow sha256, the only hash sealgate uses (RFC 8301)", shorten(h))
		}
	}
	if s, ok := tags.Get("s"); ok {
		rec.Services = keyTagList(s)
		if !listHas(rec.Services, "*") && !listHas(rec.Services, "email") {
			return nil, keyErr("s=%s does not include email or *", shorten(s))
		}
	}
	if t, ok := tags.Get("t"); ok {
		for _, flag := range keyTagList(t) {
			switch flag {
			case "y":
				rec.Testing = true
			case "s":
				rec.Strict = true
			} // unknown flags are ignored (RFC 6376 §3.6.1)
		}
	}
	if k, ok := tags.Get("k"); ok {
		rec.KeyType = strings.ToLower(k)
	}
	if rec.KeyType != "rsa" && rec.KeyType != "ed25519" {
		return nil, keyErr("k=%s is not a supported key type (rsa, ed25519)", shorten(rec.KeyType))
	}

	p, ok := tags.Get("p")
	if !ok {
		return nil, keyErr("p= is missing")
	}
	p = StripFWS(p)
	if p == "" {
		rec.Revoked = true
		return rec, nil
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, keyErr("p= is not valid base64")
	}

	switch rec.KeyType {
	case "rsa":
		pub, err := parseRSAKey(der)
		if err != nil {
			return nil, err
		}
		if bits := pub.N.BitLen(); bits < MinVerifyRSABits {
			return nil, keyErr("RSA key is %d bits; at least %d are required (RFC 8301)", bits, MinVerifyRSABits)
		}
		rec.PublicKey = pub
	case "ed25519":
		// RFC 8463 §4: p= is the raw 32-byte public key, not a SubjectPublicKeyInfo.
		if len(der) != ed25519.PublicKeySize {
			hint := ""
			if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
				hint = fmt.Sprintf(" (it holds a %s SubjectPublicKeyInfo; publish the raw key)", publicKeyName(pub))
			}
			return nil, keyErr("k=ed25519 needs the raw %d-byte key in p=, got %d bytes%s", ed25519.PublicKeySize, len(der), hint)
		}
		rec.PublicKey = ed25519.PublicKey(der)
	}
	return rec, nil
}

// parseRSAKey reads a DER SubjectPublicKeyInfo or, as some publishers use, a bare PKCS#1
// RSAPublicKey (RFC 6376 §3.6.1 says SPKI; RFC 3447 keys are common in the wild).
func parseRSAKey(der []byte) (*rsa.PublicKey, error) {
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		rsaPub, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, keyErr("k=rsa but p= holds an %s key; set k= to match", publicKeyName(pub))
		}
		return rsaPub, nil
	}
	if pub, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return pub, nil
	}
	if len(der) == ed25519.PublicKeySize {
		return nil, keyErr("k=rsa (the default) but p= looks like a raw Ed25519 key; add k=ed25519")
	}
	return nil, keyErr("p= is not an RSA public key (neither SubjectPublicKeyInfo nor PKCS#1)")
}

func publicKeyName(pub any) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// splitList splits a colon-separated tag value (h=, s=, t=), dropping white space.
func keyTagList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ":") {
		if item = trimFWS(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func listHas(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// LookupKey fetches and parses the key record at <selector>._domainkey.<domain> (RFC 6376
// §3.6.2.2). No record is a permanent *Error ("no key record at ..."), a temporary DNS failure
// an *Error with Temporary set, several TXT records a permanent error, and a revoked key a
// permanent error wrapping ErrKeyRevoked.
func LookupKey(ctx context.Context, r resolver.Resolver, selector, domain string) (*KeyRecord, error) {
	name := selector + "._domainkey." + strings.TrimSuffix(domain, ".")
	txts, err := r.LookupTXT(ctx, name)
	switch {
	case resolver.IsNotFound(err):
		return nil, &Error{Msg: "no key record at " + name, Err: err}
	case resolver.IsTemporary(err):
		return nil, &Error{Temporary: true, Msg: "key record lookup for " + name + " failed temporarily", Err: err}
	case err != nil:
		return nil, &Error{Msg: "key record lookup for " + name, Err: err}
	case len(txts) == 0:
		return nil, permErr("no key record at %s", name)
	case len(txts) > 1:
		// RFC 6376 §3.6.2.2 leaves several records undefined; treat as permerror.
		return nil, permErr("%d TXT records at %s; a selector must have exactly one", len(txts), name)
	}
	rec, err := ParseKeyRecord(txts[0])
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, &Error{Msg: "key record at " + name + strings.TrimPrefix(e.Msg, "key record"), Err: e.Err}
		}
		return nil, err
	}
	if rec.Revoked {
		return nil, &Error{Msg: "key record at " + name, Err: ErrKeyRevoked}
	}
	return rec, nil
}

// KeyRecordText returns the key record to publish for pub: "v=DKIM1; k=rsa; p=<SPKI base64>" for
// a *rsa.PublicKey, "v=DKIM1; k=ed25519; p=<raw key base64>" for an ed25519.PublicKey.
func KeyRecordText(pub crypto.PublicKey) (string, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("key record: encode RSA public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return "", fmt.Errorf("key record: Ed25519 public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
		}
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("key record: unsupported public key type %T (want RSA or Ed25519)", pub)
}
