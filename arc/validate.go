package arc

import (
	"context"
	"fmt"
	"strings"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
)

// Result is the outcome of validating a message's ARC chain (RFC 8617 §5.2).
type Result struct {
	Status ChainStatus
	// Reason says why the chain failed, or is empty.
	Reason string
	// Instances is the highest instance of the chain (0 for none).
	Instances int
	// OldestPass is the lowest instance k such that AMS(k) .. AMS(N) all verify, or 0 when
	// all of them do (RFC 8617 §5.2 step 6 as most validators report it). Valid for pass.
	OldestPass int
	// Temporary is set when the chain failed only because a key could not be fetched
	// (DNS timeout or SERVFAIL); a caller may defer rather than act on the failure.
	Temporary bool
}

// String formats the result as an Authentication-Results method entry:
// "arc=pass (i=2) header.oldest-pass=0", "arc=fail (reason)", "arc=none".
func (r *Result) String() string {
	switch r.Status {
	case Pass:
		return fmt.Sprintf("arc=pass (i=%d) header.oldest-pass=%d", r.Instances, r.OldestPass)
	case Fail:
		return "arc=fail (" + commentSafe(r.Reason) + ")"
	default:
		return "arc=none"
	}
}

// commentSafe makes s safe inside an RFC 5322 comment.
func commentSafe(s string) string {
	return strings.NewReplacer("(", "[", ")", "]", "\\", "/", "\r", " ", "\n", " ").Replace(s)
}

// ValidateOptions configures Validate.
type ValidateOptions struct {
	// Resolver fetches the sealers' and signers' keys.
	Resolver resolver.Resolver
	// MinRSABits is the smallest RSA key accepted; 0 means dkimcore.MinVerifyRSABits (1024,
	// RFC 8301 §3.2). The same rule applies to DKIM verification in package sign.
	MinRSABits int
}

// Validate runs the chain validation algorithm of RFC 8617 §5.2 over a message whose header
// is hdr and whose body hashes are bodies (compute them with RequiredCanonicalizations).
func Validate(ctx context.Context, hdr dkimcore.Header, bodies dkimcore.BodyHashes, o ValidateOptions) *Result {
	c, reason := collect(hdr)
	if reason != "" {
		return &Result{Status: Fail, Reason: reason}
	}
	n := len(c.sets)
	if n == 0 {
		return &Result{Status: None}
	}
	res := &Result{Instances: n}
	fail := func(format string, a ...any) *Result {
		res.Status = Fail
		res.Reason = fmt.Sprintf(format, a...)
		return res
	}
	v := &verifier{ctx: ctx, Verifier: dkimcore.Verifier{Resolver: o.Resolver, MinRSABits: o.MinRSABits}}

	// Step 3-4: structure and cv values, newest first.
	seals := make([]*dkimcore.Signature, n)
	for i := n; i >= 1; i-- {
		as := c.sets[i-1].as
		tags, err := dkimcore.ParseTags(as.Value())
		if err != nil {
			return fail("ARC-Seal i=%d: %v", i, err)
		}
		cv, _ := tags.Get("cv")
		cv = strings.ToLower(cv)
		if cv != string(None) && cv != string(Pass) && cv != string(Fail) {
			return fail("ARC-Seal i=%d has cv=%s; only none, pass and fail exist", i, cv)
		}
		if i == n && cv == string(Fail) {
			return fail("ARC-Seal i=%d says cv=fail", i)
		}
		if want := wantCV(i); cv != want {
			return fail("ARC-Seal i=%d has cv=%s, want cv=%s", i, cv, want)
		}
		if _, ok := tags.Get("h"); ok {
			return fail("ARC-Seal i=%d has an h= tag", i)
		}
		sig, err := dkimcore.ParseSignature(as)
		if err != nil {
			return fail("ARC-Seal i=%d: %v", i, err)
		}
		seals[i-1] = sig
	}

	// Step 5-6: AMS(N) must verify; then older ones, to find the oldest that passes.
	for i := n; i >= 1; i-- {
		err := v.verifyAMS(hdr, c.sets[i-1].ams, bodies)
		if err != nil {
			if i == n {
				res.Temporary = dkimcore.IsTemporary(err)
				return fail("ARC-Message-Signature i=%d: %v", i, err)
			}
			res.OldestPass = i + 1
			break
		}
	}

	// Step 7: every seal over the sets up to its own.
	for i := n; i >= 1; i-- {
		input := appendSealInput(nil, c.sets[:i-1])
		input = dkimcore.AppendCanonicalField(input, c.sets[i-1].aar, dkimcore.Relaxed)
		input = dkimcore.AppendCanonicalField(input, c.sets[i-1].ams, dkimcore.Relaxed)
		if err := v.verify(seals[i-1], input, dkimcore.Relaxed); err != nil {
			res.Temporary = dkimcore.IsTemporary(err)
			return fail("ARC-Seal i=%d: %v", i, err)
		}
	}
	res.Status = Pass
	return res
}

func wantCV(i int) string {
	if i == 1 {
		return string(None)
	}
	return string(Pass)
}

// appendSealInput appends the relaxed canonical form of every field of sets, in instance
// order AAR, AMS, AS (RFC 8617 §5.1.1).
func appendSealInput(dst []byte, sets []set) []byte {
	for _, s := range sets {
		dst = dkimcore.AppendCanonicalField(dst, s.aar, dkimcore.Relaxed)
		dst = dkimcore.AppendCanonicalField(dst, s.ams, dkimcore.Relaxed)
		dst = dkimcore.AppendCanonicalField(dst, s.as, dkimcore.Relaxed)
	}
	return dst
}

// verifier verifies a chain's signatures with the key rules DKIM verification uses,
// fetching each key once per validation.
type verifier struct {
	ctx context.Context
	dkimcore.Verifier
}

func (v *verifier) verify(sig *dkimcore.Signature, input []byte, c dkimcore.Canonicalization) error {
	_, err := v.Verify(v.ctx, sig, input, c)
	return err
}

// verifyAMS verifies an ARC-Message-Signature like a DKIM signature (RFC 8617 §4.1.2); its h=
// may be empty, and empty names in it are skipped (as dkimpy and the ARC test suite read it).
func (v *verifier) verifyAMS(hdr dkimcore.Header, ams dkimcore.Field, bodies dkimcore.BodyHashes) error {
	sig, err := dkimcore.ParseSignature(ams)
	if err != nil {
		return err
	}
	for _, h := range sig.Headers {
		if strings.EqualFold(h, ASField) {
			return fmt.Errorf("h= lists ARC-Seal")
		}
	}
	if err := sig.CheckBodyHash(bodies); err != nil {
		return err
	}
	input := dkimcore.AppendHeaderHashInput(nil, hdr, sig.Headers, sig.HeaderCanon)
	return v.verify(sig, input, sig.HeaderCanon)
}
