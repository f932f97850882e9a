package addr

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Domain is a domain name in sealgate's normalised form: lower-case A-labels
// (IDNA 2008, RFC 5891 §5 Lookup), separated by dots, without a trailing dot.
// The zero value is the empty (invalid) domain. Two Domains are the same domain
// exactly when they are equal as strings.
type Domain string

// Length limits of RFC 1035 §2.3.4: 63 octets per label, 255 octets on the wire,
// which is 253 characters in text form without the trailing dot.
const (
	maxLabelLen  = 63
	maxDomainLen = 253
)

// ParseDomain normalises a domain name given in A-label or U-label (Unicode) form,
// in any case, optionally with one trailing dot (the DNS root). It refuses empty
// names and labels, labels and names over the RFC 1035 limits, characters outside
// letters, digits and hyphen (STD 3), IP addresses and address literals (see
// IsAddressLiteral), and names whose last label is all digits (RFC 3696 §2).
func ParseDomain(s string) (Domain, error) {
	if s == "" {
		return "", errors.New("addr: empty domain")
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("addr: domain %q is not valid UTF-8", s)
	}
	if IsAddressLiteral(s) {
		return "", fmt.Errorf("addr: %q is an address literal, not a domain", s)
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return "", fmt.Errorf("addr: %q is an IP address, not a domain", s)
	}
	a, err := idna.Lookup.ToASCII(s)
	if err != nil {
		return "", fmt.Errorf("addr: invalid domain %q: %w", s, err)
	}
	a = strings.TrimSuffix(a, ".")
	if a == "" {
		return "", fmt.Errorf("addr: invalid domain %q: empty", s)
	}
	if len(a) > maxDomainLen {
		return "", fmt.Errorf("addr: invalid domain %q: %d characters, at most %d allowed", s, len(a), maxDomainLen)
	}
	labels := strings.Split(a, ".")
	for _, l := range labels {
		if l == "" {
			return "", fmt.Errorf("addr: invalid domain %q: empty label", s)
		}
		if len(l) > maxLabelLen {
			return "", fmt.Errorf("addr: invalid domain %q: label of %d characters, at most %d allowed", s, len(l), maxLabelLen)
		}
		for i := 0; i < len(l); i++ {
			// idna's STD3 rules already enforce this; checked again because the
			// whole package relies on it (no '@', '[', space ... can ever appear).
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("addr: invalid domain %q: character %q", s, c)
			}
		}
	}
	if _, err := idna.Lookup.ToUnicode(a); err != nil {
		// Punycode that does not decode to a valid U-label (RFC 5891 §5.4).
		return "", fmt.Errorf("addr: invalid domain %q: %w", s, err)
	}
	if allDigits(labels[len(labels)-1]) {
		// RFC 3696 §2: a top-level domain is never all-numeric; this also keeps
		// dotted-quad lookalikes such as "192.0.2.1." out.
		return "", fmt.Errorf("addr: invalid domain %q: all-numeric top-level label", s)
	}
	return Domain(a), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// IsAddressLiteral reports whether s has the form of an RFC 5321 §4.1.3
// address-literal ("[192.0.2.1]", "[IPv6:2001:db8::1]") rather than a domain name.
func IsAddressLiteral(s string) bool {
	return len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']'
}

// String returns the A-label form.
func (d Domain) String() string { return string(d) }

// Unicode returns the domain with its A-labels converted to U-labels for display.
// If conversion fails it returns the A-label form.
func (d Domain) Unicode() string {
	u, err := idna.Display.ToUnicode(string(d))
	if err != nil {
		return string(d)
	}
	return u
}

// IsSubdomainOf reports whether d is a strict subdomain of parent:
// "a.example.com" and "x.a.example.com" are subdomains of "example.com";
// "example.com" itself and "badexample.com" are not.
func (d Domain) IsSubdomainOf(parent Domain) bool {
	return parent != "" && len(d) > len(parent)+1 && strings.HasSuffix(string(d), "."+string(parent))
}
