package addr

import (
	"errors"
	"fmt"
	"strings"
)

type patternKind int

const (
	patternAddress    patternKind = iota + 1 // bob@example.com
	patternDomain                            // *@example.com
	patternSubdomains                        // *@*.example.com
)

// Pattern is one may_send_as entry: the addresses an identity may use as a sender. The zero
// Pattern matches nothing.
//
//   - "bob@example.com" matches that address (local part compared ASCII
//     case-insensitively, domain as A-label);
//   - "*@example.com" matches every address at example.com, not at its subdomains;
//   - "*@*.example.com" matches every address at a strict subdomain of
//     example.com (a.example.com, x.a.example.com) but NOT at example.com itself:
//     list "*@example.com" as well to allow both.
//
// Domains may be given in Unicode: "*@bücher.example" matches
// "x@xn--bcher-kva.example".
type Pattern struct {
	kind   patternKind
	addr   Address // patternAddress
	domain Domain  // patternDomain, patternSubdomains
}

// ParsePattern parses a may_send_as pattern. It refuses "*", "*@*", wildcards in
// any other position, address literals, wildcard patterns over a single-label
// domain ("*@com", "*@*.com") and wildcard patterns over a public suffix
// ("*@co.uk", "*@*.github.io"; see checkPublicSuffix): sealgate never allows a
// client to send as everybody, as a whole top-level domain, or as every domain
// registered under a public suffix. Errors name the pattern:
// `may_send_as pattern "*@co.uk": ...`.
func ParsePattern(s string) (Pattern, error) {
	p, err := parsePattern(s)
	if err != nil {
		return Pattern{}, fmt.Errorf("may_send_as pattern %q: %w", s, err)
	}
	return p, nil
}

func parsePattern(s string) (Pattern, error) {
	switch s {
	case "":
		return Pattern{}, errors.New("empty")
	case "*", "*@*", "*@*.*", "@":
		return Pattern{}, errors.New("would allow every address; list addresses or domains")
	}
	if rest, ok := strings.CutPrefix(s, "*@"); ok {
		kind := patternDomain
		if sub, ok := strings.CutPrefix(rest, "*."); ok {
			kind, rest = patternSubdomains, sub
		}
		if strings.ContainsAny(rest, "*?") {
			return Pattern{}, errors.New(`"*" is allowed only as "*@domain" or "*@*.domain"`)
		}
		d, err := ParseDomain(rest)
		if err != nil {
			return Pattern{}, err
		}
		if !strings.Contains(string(d), ".") {
			return Pattern{}, fmt.Errorf("domain %q is a top-level domain; a pattern may not cover it", d)
		}
		if err := checkPublicSuffix(kind, d); err != nil {
			return Pattern{}, err
		}
		return Pattern{kind: kind, domain: d}, nil
	}
	if strings.Contains(s, "*") && !strings.Contains(s, `"`) {
		return Pattern{}, errors.New(`"*" is allowed only as "*@domain" or "*@*.domain"`)
	}
	a, err := ParseAddress(s)
	if err != nil {
		return Pattern{}, err
	}
	if a.AddressLiteral != "" {
		return Pattern{}, errors.New("address literals are not allowed")
	}
	return Pattern{kind: patternAddress, addr: a}, nil
}

// checkPublicSuffix refuses a wildcard pattern over a public suffix: a name under
// which anyone can register a domain, from the ICANN section of the Public Suffix
// List ("co.uk") or its private section ("github.io", whose subdomains belong to
// GitHub's users). "*@*.co.uk" would let one client sign for every domain
// registered under co.uk. "*@co.uk" is refused as well, like "*@com": the
// suffix's own addresses belong to its registry, and such a pattern is almost
// certainly a mistake for the client's own domain.
//
// Exact addresses at a public suffix ("postmaster@co.uk") stay allowed: only the
// registry can receive mail there, so listing one hands a client nothing that
// belongs to a registrant, and refusing it would protect nobody.
//
// For "*@*.D" the names directly under D are checked too: a wildcard rule of the
// list ("*.kawasaki.jp") makes every child of D a public suffix although D
// itself is not one. A suffix listed by name deeper under D ("s3.amazonaws.com"
// under amazonaws.com) is not found: golang.org/x/net/publicsuffix cannot list
// the names under a domain.
func checkPublicSuffix(kind patternKind, d Domain) error {
	if section, ok := PublicSuffixSection(d); ok {
		if kind == patternDomain {
			return fmt.Errorf("%s is a public suffix (%s section of the Public Suffix List); "+
				"a wildcard pattern may not cover it: list the client's own domains instead, such as \"*@example.%s\"",
				quoteDomain(d), section, d.Unicode())
		}
		return fmt.Errorf("%s is a public suffix (%s section of the Public Suffix List); "+
			"a pattern may not cover every domain under it: list the client's own domains instead, such as \"*@example.%s\" and \"*@*.example.%s\"",
			quoteDomain(d), section, d.Unicode(), d.Unicode())
	}
	if kind == patternSubdomains {
		// A label that no exception rule ("!city.kawasaki.jp") names.
		if section, ok := PublicSuffixSection("sealgate-probe." + d); ok {
			return fmt.Errorf("the domains directly under %s are public suffixes (%s section of the Public Suffix List, wildcard rule \"*.%s\"); "+
				"a pattern may not cover every domain under them: list the client's own domains instead",
				quoteDomain(d), section, d)
		}
	}
	return nil
}

// ParsePatterns parses every pattern and returns all problems joined.
func ParsePatterns(ss []string) ([]Pattern, error) {
	var errs []error
	ps := make([]Pattern, 0, len(ss))
	for _, s := range ss {
		p, err := ParsePattern(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps = append(ps, p)
	}
	return ps, errors.Join(errs...)
}

// Matches reports whether a matches the pattern. Address literals and addresses without a
// domain never match.
func (p Pattern) Matches(a Address) bool {
	if a.Domain == "" || a.AddressLiteral != "" {
		return false
	}
	switch p.kind {
	case patternAddress:
		return p.addr.Equal(a)
	case patternDomain:
		return a.Domain == p.domain
	case patternSubdomains:
		return a.Domain.IsSubdomainOf(p.domain)
	}
	return false
}

// Domain returns the domain the pattern's addresses are at: the address's domain for
// "bob@example.com", example.com for "*@example.com", and for "*@*.example.com" the
// parent example.com, whose strict subdomains it covers (see Subdomains).
func (p Pattern) Domain() Domain {
	if p.kind == patternAddress {
		return p.addr.Domain
	}
	return p.domain
}

// Subdomains reports whether the pattern is "*@*.D": every address at a strict subdomain
// of Domain(), and none at Domain() itself.
func (p Pattern) Subdomains() bool { return p.kind == patternSubdomains }

// String returns the pattern in normalised form ("*@xn--bcher-kva.example").
func (p Pattern) String() string {
	switch p.kind {
	case patternAddress:
		return p.addr.String()
	case patternDomain:
		return "*@" + string(p.domain)
	case patternSubdomains:
		return "*@*." + string(p.domain)
	}
	return "(none)"
}
