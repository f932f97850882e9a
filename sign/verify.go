package sign

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/authres"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
)

// DefaultMaxVerifications caps the signatures verified per message, so a message carrying
// hundreds of signatures cannot make us do hundreds of key lookups (RFC 6376 §8.4).
const DefaultMaxVerifications = 8

// Status is the outcome of verifying one DKIM-Signature, named as the dkim method's results
// of RFC 8601 §2.7.1.
type Status string

// The results of RFC 8601 §2.7.1.
const (
	// StatusPass: the signature verified.
	StatusPass Status = "pass"
	// StatusFail: the signature was checked and did not verify (body hash or b=).
	StatusFail Status = "fail"
	// StatusNeutral: the signature was not checked: it came after the first
	// VerifyOptions.MaxVerifications signatures.
	StatusNeutral Status = "neutral"
	// StatusTempError: the key could not be fetched for now (DNS timeout, SERVFAIL).
	StatusTempError Status = "temperror"
	// StatusPermError: the signature or its key record is malformed, missing, revoked or
	// expired (RFC 6376 §6.1.1, §6.1.2).
	StatusPermError Status = "permerror"
	// StatusPolicy: the signature is well-formed but uses what this verifier does not
	// accept: l= (a partial body), rsa-sha1 (RFC 8301 §3.1), or an RSA key under
	// VerifyOptions.MinRSABits.
	StatusPolicy Status = "policy"
)

// Result is the outcome of verifying one DKIM-Signature, with the properties an
// Authentication-Results dkim entry reports (RFC 8601 §2.7.1, RFC 6008). Fields are empty
// where the signature did not say (or could not be read far enough to say).
type Result struct {
	Status Status
	// Reason says why, when Status is not pass.
	Reason     string
	Domain     addr.Domain // d=, normalised
	Selector   string      // s=
	Algorithm  string      // a=, lower-case
	Identifier string      // the AUID: i=, or "@" + d= when absent (RFC 6376 §3.5)
	B          string      // header.b: the first 12 characters of b= (RFC 6008 §4)
	// KeyBits is the size of the public key (RSA modulus bits, 256 for Ed25519), 0 when no
	// key was found.
	KeyBits int
	// Testing is set when the key record says t=y: the domain is testing DKIM, and a
	// verifier must not treat the message differently for a failed signature (RFC 6376
	// §3.6.1).
	Testing bool
}

// AuthResult returns the result as an Authentication-Results dkim entry: dkim=pass
// header.d=... header.i=... header.s=... header.a=... header.b=..., with reason= when it did
// not pass.
func (r *Result) AuthResult() authres.Result {
	res := authres.Result{Method: "dkim", Value: string(r.Status)}
	if r.Status != StatusPass {
		res.Reason = r.Reason
	}
	for _, p := range [][2]string{{"d", string(r.Domain)}, {"i", r.Identifier}, {"s", r.Selector}, {"a", r.Algorithm}, {"b", r.B}} {
		if p[1] != "" {
			res.Props = append(res.Props, authres.Prop{Type: "header", Property: p[0], Value: p[1]})
		}
	}
	return res
}

// VerifyOptions tunes verification. The zero value verifies with no resolver, which makes
// every key lookup fail: set Resolver.
type VerifyOptions struct {
	// Resolver fetches the signers' key records.
	Resolver resolver.Resolver
	// MaxVerifications is how many signatures are checked against a key at most, top
	// first; the others are reported neutral. 0 means DefaultMaxVerifications.
	MaxVerifications int
	// MinRSABits is the smallest RSA key accepted; a smaller key of at least 1024 bits gives
	// policy, and under 1024 bits permerror (RFC 8301 §3.2). 0 means 1024.
	MinRSABits int
	// Now is the clock x= expiry is checked against; nil means time.Now.
	Now func() time.Time
}

// BodyCanonicalizations returns the body canonicalisations the DKIM-Signatures of hdr use,
// so a caller can hash the body once for all of them before VerifyHeader. Relaxed is always
// included.
func BodyCanonicalizations(hdr dkimcore.Header) []dkimcore.Canonicalization {
	canons := []dkimcore.Canonicalization{dkimcore.Relaxed}
	for _, f := range hdr {
		if !f.Is("DKIM-Signature") {
			continue
		}
		tags, err := dkimcore.ParseTags(f.Value())
		if err != nil {
			continue
		}
		c, _ := tags.Get("c")
		if _, b, err := dkimcore.ParseCanonicalization(c); err == nil && b == dkimcore.Simple {
			return append(canons, dkimcore.Simple)
		}
	}
	return canons
}

// VerifyHeader checks every DKIM-Signature of a message whose header is hdr and whose body
// hashes are bodies (computed for BodyCanonicalizations(hdr)), and returns one Result per
// signature in header order, top first. A message without signatures gives no results.
//
// Each signature goes through the checks of RFC 6376 §6.1: its syntax (v=1, the required
// tags, h= including From, i= within d=, a known a=; see dkimcore.ParseSignature), x=
// expiry, the key record (k=, h=, s=, t=s, revoked, size; see dkimcore.Verifier), the body
// hash and b=. l= is refused (policy) rather than verified over part of the body.
func VerifyHeader(ctx context.Context, hdr dkimcore.Header, bodies dkimcore.BodyHashes, o *VerifyOptions) []Result {
	if o == nil {
		o = &VerifyOptions{}
	}
	maxVerif := o.MaxVerifications
	if maxVerif <= 0 {
		maxVerif = DefaultMaxVerifications
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	v := &dkimcore.Verifier{Resolver: o.Resolver, MinRSABits: o.MinRSABits}
	var results []Result
	checked := 0
	for _, f := range hdr {
		if !f.Is("DKIM-Signature") {
			continue
		}
		r := describe(f)
		sig, err := dkimcore.ParseSignature(f)
		switch {
		case err != nil:
			r.setError(err)
		case checked >= maxVerif:
			r.Status = StatusNeutral
			r.Reason = fmt.Sprintf("not verified: only the first %d signatures are checked (RFC 6376 §8.4)", maxVerif)
		default:
			checked++
			verifyOne(ctx, v, &r, sig, hdr, bodies, now())
		}
		results = append(results, r)
	}
	return results
}

// verifyOne checks a parsed signature and fills in r.
func verifyOne(ctx context.Context, v *dkimcore.Verifier, r *Result, sig *dkimcore.Signature, hdr dkimcore.Header, bodies dkimcore.BodyHashes, now time.Time) {
	r.Identifier = sig.AUID()
	d, err := addr.ParseDomain(sig.Domain)
	if err != nil {
		r.setError(fmt.Errorf("d=%s is not a domain name: %w", sig.Domain, err))
		return
	}
	r.Domain = d
	if sig.Expiration >= 0 && now.Unix() > sig.Expiration {
		r.setError(fmt.Errorf("signature expired at %s (x=)", time.Unix(sig.Expiration, 0).UTC().Format(time.RFC3339)))
		return
	}
	// The key first, as RFC 6376 §6.1.2 orders it (and dkimpy and go-msgauth do): a
	// signature without a usable key is permerror, temperror or policy whatever its body
	// hash says.
	key, err := v.UsableKey(ctx, sig)
	if key != nil {
		r.KeyBits, r.Testing = key.Bits(), key.Testing
	}
	if err != nil {
		r.setError(err)
		return
	}
	if err := sig.CheckBodyHash(bodies); err != nil {
		r.setError(err)
		return
	}
	input := dkimcore.AppendHeaderHashInput(nil, hdr, sig.Headers, sig.HeaderCanon)
	if err := sig.VerifyWithKey(key, input, sig.HeaderCanon); err != nil {
		r.setError(err)
		return
	}
	r.Status = StatusPass
}

// describe reads what a signature says about itself, as far as its tag list parses, for
// reporting: d=, s=, a=, i= and the start of b=.
func describe(f dkimcore.Field) Result {
	var r Result
	tags, err := dkimcore.ParseTags(f.Value())
	if err != nil {
		return r
	}
	if d, ok := tags.Get("d"); ok {
		if dom, err := addr.ParseDomain(d); err == nil {
			r.Domain = dom
		}
	}
	r.Selector, _ = tags.Get("s")
	r.Algorithm, _ = tags.Get("a")
	r.Algorithm = strings.ToLower(r.Algorithm)
	r.Identifier, _ = tags.Get("i")
	if r.Identifier == "" && r.Domain != "" {
		r.Identifier = "@" + string(r.Domain)
	}
	b, _ := tags.Get("b")
	b = dkimcore.StripFWS(b)
	r.B = b[:min(12, len(b))]
	return r
}

// setError sets the status an error maps to (RFC 8601 §2.7.1) and the reason.
func (r *Result) setError(err error) {
	r.Reason = err.Error()
	switch {
	case dkimcore.IsTemporary(err):
		r.Status = StatusTempError
	case dkimcore.IsFail(err):
		r.Status = StatusFail
	case dkimcore.IsPolicy(err):
		r.Status = StatusPolicy
	default:
		r.Status = StatusPermError
	}
}

// Verify reads a whole message (CRLF or bare-LF line ends) from r and checks its
// DKIM-Signatures as VerifyHeader does. The error is for a message that cannot be read or
// parsed; signatures that do not verify are results, not errors.
func Verify(ctx context.Context, r io.Reader, o *VerifyOptions) ([]Result, error) {
	hdr, body, err := ReadMessage(r)
	if err != nil {
		return nil, err
	}
	return VerifyHeader(ctx, hdr, dkimcore.HashBody(body, BodyCanonicalizations(hdr)...), o), nil
}
