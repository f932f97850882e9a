package addr

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
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
// optionally with one trailing dot (the DNS root). ASCII letters may be in either
// case; U-labels are brought to NFC (RFC 5891 §5.2) and must then be valid
// IDNA 2008 U-labels as they stand (RFC 5891 §4, idna.Registration: no UTS #46
// mapping, no transitional processing, so "ß" stays "ß" and is not "ss"), and
// A-labels must decode to such U-labels (RFC 5891 §5.4).
//
// It refuses empty names and labels, labels and names over the RFC 1035 limits,
// characters outside letters, digits and hyphen (STD 3), IP addresses and
// address literals (see IsAddressLiteral), and names whose last label is all
// digits (RFC 3696 §2).
//
// A name that is not valid IDNA 2008 but is shown to a reader like a valid one
// (fullwidth letters, upper-case non-ASCII letters, zero-width and other
// invisible characters, ideographic full stops, or the A-label of any of these)
// is refused with a *LookalikeError naming the domain it looks like: lenient
// UTS #46 mapping would turn "ｅxample.com" or "exa\u00admple.com" into
// example.com, and an identity check must never see one domain where the
// message shows another string.
func ParseDomain(s string) (Domain, error) {
	d, err := parseDomain(s)
	if err == nil {
		return d, nil
	}
	if like, ok := looksLike(s); ok {
		return "", &LookalikeError{Domain: s, LooksLike: like, Err: err}
	}
	return "", err
}

// LookalikeError is the error for a domain written in a form that IDNA 2008 does
// not allow, which a reader would nevertheless take for the valid domain
// LooksLike (see ParseDomain).
type LookalikeError struct {
	Domain    string // as written
	LooksLike Domain // the valid domain it is shown like
	Err       error  // why Domain itself is invalid
}

func (e *LookalikeError) Error() string {
	return fmt.Sprintf("addr: domain %q looks like %s but is not it (%s); if that domain is meant, write it as %s",
		e.Domain, e.LooksLike.Unicode(), e.Why(), e.LooksLike.Unicode())
}

// Why says what makes Domain invalid, without the "addr:" prefix.
func (e *LookalikeError) Why() string { return strings.TrimPrefix(e.Err.Error(), "addr: ") }

func (e *LookalikeError) Unwrap() error { return e.Err }

// strictIDNA checks a name without mapping it: IDNA 2008 as registered (RFC 5891
// §4), STD 3 rules, ContextJ rules for joiners (RFC 5892 Appendix A), the Bidi
// rule (RFC 5893), non-transitional.
var strictIDNA = idna.Registration

func parseDomain(s string) (Domain, error) {
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
	t := lowerASCIIString(s)
	if a, ok := plainLDH(t); ok {
		// Nothing for IDNA to map, decode or refuse: the common case, on the
		// per-message path.
		return finishDomain(s, a)
	}
	return parseDomainIDNA(s, t)
}

// parseDomainIDNA is parseDomain for names IDNA must map, decode or check: t is s with
// its ASCII letters lower-cased.
func parseDomainIDNA(s, t string) (Domain, error) {
	if !IsASCII(t) {
		t = norm.NFC.String(t)
	}
	a, err := strictIDNA.ToASCII(t)
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
	u, err := strictIDNA.ToUnicode(a)
	if err != nil {
		// Punycode that does not decode to a valid U-label (RFC 5891 §5.4).
		return "", fmt.Errorf("addr: invalid domain %q: %w", s, err)
	}
	for _, l := range strings.Split(u, ".") {
		if err := checkIDNA2008(l); err != nil {
			return "", fmt.Errorf("addr: invalid domain %q: %w", s, err)
		}
	}
	return finishDomain(s, a)
}

// plainLDH returns t without a trailing dot when it is a domain IDNA leaves as it is:
// lower-case ASCII letters, digits and hyphens, labels of 1 to 63 characters that
// neither begin nor end with a hyphen nor hold one in their third and fourth places
// (RFC 5891 §4.2.3.1, which also covers A-labels), at most 253 characters. Anything
// else goes through IDNA, and its errors.
func plainLDH(t string) (string, bool) {
	t = strings.TrimSuffix(t, ".")
	if t == "" || len(t) > maxDomainLen {
		return "", false
	}
	start := 0
	for i := 0; i <= len(t); i++ {
		if i < len(t) && t[i] != '.' {
			c := t[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", false
			}
			continue
		}
		l := t[start:i]
		if l == "" || len(l) > maxLabelLen || l[0] == '-' || l[len(l)-1] == '-' || len(l) >= 4 && l[2] == '-' && l[3] == '-' {
			return "", false
		}
		start = i + 1
	}
	return t, true
}

// finishDomain applies to a, the A-label form of the domain written s, the rules
// beyond IDNA.
func finishDomain(s, a string) (Domain, error) {
	labels := strings.Split(a, ".")
	if allDigits(labels[len(labels)-1]) {
		// RFC 3696 §2: a top-level domain is never all-numeric; this also keeps
		// dotted-quad lookalikes such as "192.0.2.1." out.
		return "", fmt.Errorf("addr: invalid domain %q: all-numeric top-level label", s)
	}
	return Domain(a), nil
}

// looksLike returns the valid domain a reader would take an invalid name s for:
// its A-labels decoded as they are, then what renders as nothing removed,
// compatibility forms folded (NFKC: fullwidth letters, ideographic full stops),
// dashes taken for hyphens, letters lower-cased. ok is false when that gives no valid domain or changes
// nothing.
func looksLike(s string) (Domain, bool) {
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if p, ok := cutPrefixFold(l, "xn--"); ok {
			if u, err := idna.Punycode.ToUnicode("xn--" + p); err == nil {
				labels[i] = u
			}
		}
	}
	f := strings.Join(labels, ".")
	f = strings.Map(dropInvisible, f)
	f = norm.NFKC.String(f)
	f = strings.Map(dropInvisible, f)
	f = strings.NewReplacer("\u3002", ".", "\uff61", ".", "\uff0e", ".").Replace(f)
	f = strings.Map(func(r rune) rune {
		if r > 0x7f && (unicode.Is(unicode.Pd, r) || r == '\u2212') {
			return '-' // dashes and the minus sign show as a hyphen
		}
		return r
	}, f)
	f = strings.ToLower(f)
	if f == s {
		return "", false
	}
	d, err := parseDomain(strings.TrimSuffix(f, "."))
	return d, err == nil
}

func lowerASCIIString(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lowerASCII(b[j])
			}
			return string(b)
		}
	}
	return s
}

// IsASCII reports whether s holds only US-ASCII: a domain, an address or a header
// field that needs no SMTPUTF8 (RFC 6531).
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
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
