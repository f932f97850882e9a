// Package submit is sealgate's submission side: who a client is, what it may send
// as, and the checks that refuse anything else before a message is signed.
//
// It implements message submission rules from RFC 6409 (§4.3 authorization and
// "enforce submission rights", §8 sender checks), SMTP AUTH (RFC 4954) with the
// SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) mechanisms, and the
// originator-field rules of RFC 5322 §3.6.2 and §3.6.6 (RFC 6854 groups).
//
// The core promise: a client never gets mail signed for an address or domain it
// may not use. Every envelope sender and every From, Sender, Resent-From and
// Resent-Sender mailbox must match one of the identity's MaySendAs patterns, and a
// display name may not show another address (standards.md §8.2).
//
// It deliberately does not: rewrite senders (a refusal is the only answer),
// support delegation ("send on behalf of"), apply sub-address or alias rules, or
// compare the envelope sender with the header From (each is checked on its own).
package submit

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/publicsuffix"

	"sealgate/internal/addr"
)

// IdentityKind says how a client proved who it is.
type IdentityKind int

// The kinds of identity.
const (
	// KindLogin is a SASL login (PLAIN or LOGIN) checked against the users file.
	KindLogin IdentityKind = iota + 1
	// KindClientCert is a TLS client certificate mapped by subject or fingerprint.
	KindClientCert
	// KindClientNetwork is a trusted client network (a client organisation's
	// smart host), matched by source address.
	KindClientNetwork
)

// String returns the words used in replies: "login", "client certificate",
// "client network".
func (k IdentityKind) String() string {
	switch k {
	case KindLogin:
		return "login"
	case KindClientCert:
		return "client certificate"
	case KindClientNetwork:
		return "client network"
	}
	return "identity"
}

// Identity is an authenticated client and what it may do. Build it with
// NewIdentity so that defaults apply; an Identity is read-only once in use.
type Identity struct {
	// Name is the login or the configured client name, used in logs, replies
	// and the AAR smtp.auth property.
	Name string
	// Kind says how the client was identified.
	Kind IdentityKind
	// MaySendAs lists the addresses the client may use. Empty means none.
	MaySendAs []Pattern
	// AllowNullSender permits MAIL FROM:<> (bounces, auto-replies).
	AllowNullSender bool
	// Seal turns ARC sealing on for this client's mail (default true).
	Seal bool
	// RatePerMinute caps accepted messages per minute; 0 means no cap.
	RatePerMinute int
	// MaxRecipients caps RCPT TO per message; 0 means the listener's limit.
	MaxRecipients int
	// AllowUnsigned lets mail for a domain without DKIM keys be relayed
	// unsigned when that domain is configured "unsigned: relay".
	AllowUnsigned bool
}

// NewIdentity returns an Identity with the defaults: sealing on, no null sender,
// no rate cap.
func NewIdentity(name string, kind IdentityKind, maySendAs []Pattern) *Identity {
	return &Identity{Name: name, Kind: kind, MaySendAs: maySendAs, Seal: true}
}

// String describes the identity for replies and logs: "login alice@client.example".
func (id *Identity) String() string {
	if id == nil {
		return "unauthenticated client"
	}
	return id.Kind.String() + " " + id.Name
}

// Permits reports whether the identity may use address a. Address literals and
// addresses without a domain are never permitted.
func (id *Identity) Permits(a addr.Address) bool {
	if id == nil || a.Domain == "" || a.AddressLiteral != "" {
		return false
	}
	for _, p := range id.MaySendAs {
		if p.Matches(a) {
			return true
		}
	}
	return false
}

// AllowedString lists the identity's patterns for replies:
// "*@client.example, bob@other.example", or "nothing".
func (id *Identity) AllowedString() string {
	if id == nil || len(id.MaySendAs) == 0 {
		return "nothing"
	}
	s := make([]string, len(id.MaySendAs))
	for i, p := range id.MaySendAs {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

type patternKind int

const (
	patternAddress    patternKind = iota + 1 // bob@example.com
	patternDomain                            // *@example.com
	patternSubdomains                        // *@*.example.com
)

// Pattern is one may_send_as entry. The zero Pattern matches nothing.
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
	addr   addr.Address // patternAddress
	domain addr.Domain  // patternDomain, patternSubdomains
}

// ParsePattern parses a may_send_as pattern. It refuses "*", "*@*", wildcards in
// any other position, address literals, wildcard patterns over a single-label
// domain ("*@com", "*@*.com") and wildcard patterns over a public suffix
// ("*@co.uk", "*@*.github.io"; see checkPublicSuffix): sealgate never allows a
// client to send as everybody, as a whole top-level domain, or as every domain
// registered under a public suffix.
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
		d, err := addr.ParseDomain(rest)
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
	a, err := addr.ParseAddress(s)
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
//
// The list is the snapshot compiled into golang.org/x/net/publicsuffix, so a
// newer x/net can refuse a pattern that an older build accepted. Its names, and
// the names it takes, are lower-case A-labels: the form of addr.Domain, so an
// IDN suffix such as 公司.香港 is found whichever form the pattern used.
func checkPublicSuffix(kind patternKind, d addr.Domain) error {
	if section, ok := publicSuffixSection(string(d)); ok {
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
		if section, ok := publicSuffixSection("sealgate-probe." + string(d)); ok {
			return fmt.Errorf("the domains directly under %s are public suffixes (%s section of the Public Suffix List, wildcard rule \"*.%s\"); "+
				"a pattern may not cover every domain under them: list the client's own domains instead",
				quoteDomain(d), section, d)
		}
	}
	return nil
}

// publicSuffixSection reports whether name (lower-case A-labels, at least two
// labels) is itself a public suffix, and in which section of the list. The
// list's default rule "*" makes every single-label name a suffix, with icann
// false; callers refuse single-label names before asking.
func publicSuffixSection(name string) (section string, ok bool) {
	suffix, icann := publicsuffix.PublicSuffix(name)
	switch {
	case suffix != name:
		return "", false
	case icann:
		return "ICANN", true
	}
	return "private", true
}

// quoteDomain names a domain for an admin: "co.uk", or for an IDN both forms,
// "xn--55qx5d.xn--j6w193g" (公司.香港).
func quoteDomain(d addr.Domain) string {
	if u := d.Unicode(); u != string(d) {
		return fmt.Sprintf("%q (%s)", string(d), u)
	}
	return fmt.Sprintf("%q", string(d))
}

// MustParsePatterns parses patterns and panics on error; for tests and fixed tables.
func MustParsePatterns(ss ...string) []Pattern {
	ps, err := ParsePatterns(ss)
	if err != nil {
		panic(err)
	}
	return ps
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

// Matches reports whether a matches the pattern.
func (p Pattern) Matches(a addr.Address) bool {
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
