package sign

import (
	"fmt"
	"slices"
	"strings"

	"sealgate/internal/addr"
)

// DomainKeys are the DKIM keys of one signing domain and what the domain allows.
type DomainKeys struct {
	// Domain is the signing domain, the d= of its signatures.
	Domain addr.Domain
	// Keys sign for the domain, one signature each. Empty means mail for the domain is
	// relayed unsigned if RelayUnsigned allows it, and refused otherwise.
	Keys []Key
	// SignSubdomains makes these keys sign, with d=Domain, mail whose From domain is a
	// subdomain of Domain that has no keys of its own. DMARC relaxed alignment (RFC 7489
	// §3.1.1) accepts d=client.example for From: x@news.client.example, because both have the
	// organisational domain client.example.
	SignSubdomains bool
	// RelayUnsigned lets mail for the domain pass unsigned when Keys is empty, for identities
	// that are allowed to send unsigned mail.
	RelayUnsigned bool
	// MinRSABits is the smallest RSA key the domain signs with; 0 means MinRSABits.
	MinRSABits int
}

// Options returns signing options for these keys; the caller sets Time and Expiration.
func (dk *DomainKeys) Options() *Options {
	return &Options{Domain: string(dk.Domain), Keys: dk.Keys, MinRSABits: dk.MinRSABits}
}

// KeyRing holds the DKIM keys of every domain sealgate signs for and answers "which keys
// sign for this From domain?". A From domain is signed by its own entry; failing that, by
// the nearest parent domain whose entry has SignSubdomains. The search never climbs to or
// above a public suffix, so the signing domain always has the From domain's organisational
// domain (RFC 7489 §3.2) and aligns with it.
//
// A KeyRing is built once, then read-only and safe for concurrent use.
type KeyRing struct {
	domains map[addr.Domain]*DomainKeys
}

// NewKeyRing returns a ring of the given domains. It refuses a domain listed twice, a
// public suffix with SignSubdomains, bad selectors and keys under the domain's minimum RSA
// size, naming the domain.
func NewKeyRing(domains ...DomainKeys) (*KeyRing, error) {
	r := &KeyRing{domains: make(map[addr.Domain]*DomainKeys, len(domains))}
	for i := range domains {
		dk := domains[i]
		if dk.Domain == "" {
			return nil, fmt.Errorf("sign: key ring: a domain without a name")
		}
		if _, dup := r.domains[dk.Domain]; dup {
			return nil, fmt.Errorf("sign: key ring: %s listed twice", dk.Domain)
		}
		if dk.SignSubdomains && addr.IsPublicSuffix(dk.Domain) {
			return nil, fmt.Errorf("sign: key ring: %s is a public suffix; its keys may not sign for the domains under it", dk.Domain)
		}
		if len(dk.Keys) > 0 {
			if err := dk.Options().Validate(); err != nil {
				return nil, fmt.Errorf("sign: key ring: %s: %w", dk.Domain, err)
			}
		}
		dk.Keys = slices.Clone(dk.Keys)
		r.domains[dk.Domain] = &dk
	}
	return r, nil
}

// Lookup returns the entry that decides how mail with From domain from is signed: from's
// own entry, or else that of its nearest parent with SignSubdomains. Its Domain is the d= to
// sign with. ok is false when no entry covers from: such mail may be neither signed nor
// relayed unsigned. The entry must not be modified.
func (r *KeyRing) Lookup(from addr.Domain) (dk *DomainKeys, ok bool) {
	if r == nil {
		return nil, false
	}
	if dk := r.domains[from]; dk != nil {
		return dk, true
	}
	return r.ForSubdomainsOf(from.Parent())
}

// ForSubdomainsOf returns the entry that signs for a subdomain of d that has no entry of its
// own: d's entry if it has SignSubdomains, or else that of d's nearest such parent. It is
// what a may_send_as pattern "*@*.d" needs.
func (r *KeyRing) ForSubdomainsOf(d addr.Domain) (dk *DomainKeys, ok bool) {
	if r == nil {
		return nil, false
	}
	for ; d != "" && !addr.IsPublicSuffix(d); d = d.Parent() {
		if dk := r.domains[d]; dk != nil && dk.SignSubdomains {
			return dk, true
		}
	}
	return nil, false
}

// Domains returns the ring's signing domains in order.
func (r *KeyRing) Domains() []addr.Domain {
	if r == nil {
		return nil
	}
	out := make([]addr.Domain, 0, len(r.domains))
	for d := range r.domains {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b addr.Domain) int { return strings.Compare(string(a), string(b)) })
	return out
}
