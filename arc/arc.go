// Package arc implements Authenticated Received Chain (RFC 8617): sealing a message with a
// new ARC set and validating the chain a message carries.
//
// A set is an ARC-Authentication-Results (AAR) copy of this hop's authentication results, an
// ARC-Message-Signature (AMS, a DKIM signature without v= whose i= is the instance) and an
// ARC-Seal (AS) over all sets so far. Canonicalisation, hashing and key lookups are shared
// with DKIM through internal/dkimcore, so the relay hashes a body once for its DKIM
// signatures and its AMS.
//
// Validate is written for an inbound verifier as much as for the relay: it gives none, pass
// or fail with a reason, the number of sets and the oldest instance whose AMS still verifies.
// This package does not decide whether to trust a sealer's AAR; that is local policy.
package arc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"sealgate/internal/dkimcore"
)

// MaxInstances is the highest instance a chain may have (RFC 8617 §4.2.1).
const MaxInstances = 50

// Field names of the three members of a set (RFC 8617 §4.1).
const (
	AARField = "ARC-Authentication-Results"
	AMSField = "ARC-Message-Signature"
	ASField  = "ARC-Seal"
)

// ChainStatus is the chain validation status, as AS cv= and A-R arc= write it.
type ChainStatus string

// The chain statuses of RFC 8617 §4.4.
const (
	None ChainStatus = "none"
	Pass ChainStatus = "pass"
	Fail ChainStatus = "fail"
)

// set is one ARC set, indexed by instance.
type set struct {
	aar, ams, as dkimcore.Field
}

// chain holds a message's ARC fields grouped by instance.
type chain struct {
	sets []set // sets[i-1] is instance i
}

// collect groups the ARC fields of hdr by instance and checks the structure rules of
// RFC 8617 §5.2 step 2-4 that need no cryptography. It returns the chain and "" or the chain
// and a reason it fails. An empty chain means none.
func collect(hdr dkimcore.Header) (*chain, string) {
	bySet := map[int]*set{}
	maxI := 0
	for _, f := range hdr {
		var slot func(*set) *dkimcore.Field
		var what string
		switch {
		case f.Is(AARField):
			slot, what = func(s *set) *dkimcore.Field { return &s.aar }, "ARC-Authentication-Results"
		case f.Is(AMSField):
			slot, what = func(s *set) *dkimcore.Field { return &s.ams }, "ARC-Message-Signature"
		case f.Is(ASField):
			slot, what = func(s *set) *dkimcore.Field { return &s.as }, "ARC-Seal"
		default:
			continue
		}
		i, err := instanceOf(f)
		if err != nil {
			return nil, what + ": " + err.Error()
		}
		if i < 1 || i > MaxInstances {
			return nil, what + " instance i=" + strconv.Itoa(i) + " is outside 1.." + strconv.Itoa(MaxInstances)
		}
		s := bySet[i]
		if s == nil {
			s = &set{}
			bySet[i] = s
		}
		p := slot(s)
		if *p != nil {
			return nil, "more than one " + what + " with i=" + strconv.Itoa(i)
		}
		*p = f
		maxI = max(maxI, i)
	}
	c := &chain{sets: make([]set, maxI)}
	for i := 1; i <= maxI; i++ {
		s := bySet[i]
		if s == nil || s.aar == nil || s.ams == nil || s.as == nil {
			return nil, "ARC set i=" + strconv.Itoa(i) + " is incomplete or missing"
		}
		c.sets[i-1] = *s
	}
	return c, ""
}

// instanceOf reads i= of an ARC field. For the AAR it is the first element before ';'
// (RFC 8617 §4.1.1); for AMS and AS it is a tag, and the whole tag list must parse: an empty
// tag-spec ("s=x;;") is a syntax error that fails the chain (RFC 6376 §3.2).
func instanceOf(f dkimcore.Field) (int, error) {
	v := f.Value()
	var s string
	if f.Is(AARField) {
		first, _, _ := strings.Cut(v, ";")
		name, val, ok := strings.Cut(first, "=")
		if !ok || strings.TrimSpace(name) != "i" {
			return 0, errors.New("no i= instance before the first ';'")
		}
		s = val
	} else {
		tags, err := dkimcore.ParseTags(v)
		if err != nil {
			return 0, err
		}
		var ok bool
		if s, ok = tags.Get("i"); !ok {
			return 0, errors.New("no i= tag")
		}
	}
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if s == "" || len(s) > 3 || err != nil {
		return 0, fmt.Errorf("i=%q is not an instance number", shorten(s))
	}
	return n, nil
}

func shorten(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

// RequiredCanonicalizations returns the body canonicalisations the message's AMS fields use,
// always including relaxed, so a caller can hash the body once for all of them before
// validating and sealing.
func RequiredCanonicalizations(hdr dkimcore.Header) []dkimcore.Canonicalization {
	canons := []dkimcore.Canonicalization{dkimcore.Relaxed}
	for _, f := range hdr {
		if !f.Is(AMSField) {
			continue
		}
		tags, err := dkimcore.ParseTags(f.Value())
		if err != nil {
			continue
		}
		c, ok := tags.Get("c")
		if !ok {
			continue // relaxed/relaxed, the ARC default
		}
		if _, b, err := dkimcore.ParseCanonicalization(c); err == nil && b == dkimcore.Simple {
			return append(canons, dkimcore.Simple)
		}
	}
	return canons
}
