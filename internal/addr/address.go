package addr

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Length limits of RFC 5321 §4.5.3.1.1-3, in octets.
const (
	MaxLocalLen  = 64
	MaxDomainLen = 255
	// MaxPathLen counts the angle brackets; go-smtp strips them, so a path value
	// without brackets may be at most MaxPathLen-2 octets.
	MaxPathLen = 256
)

// Address is a mailbox: local part "@" domain. Compare addresses with Equal, never
// with ==, so that the one local-part rule of this package applies (see the
// package comment).
type Address struct {
	// Local is the local part without its quoting: for "a b"@example.com it is
	// `a b`. It may contain UTF-8 (RFC 6531).
	Local string
	// Domain is the normalised domain; empty when AddressLiteral is set.
	Domain Domain
	// Quoted reports that Local is not an RFC 5321 Dot-string and must be written
	// as a Quoted-string ("ops@partner.example"@relay.example). It is derived from
	// Local, not from how the address was written: "bob"@x is the same mailbox as
	// bob@x and is not Quoted.
	Quoted bool
	// AddressLiteral is set, in normalised form ("[192.0.2.1]",
	// "[IPv6:2001:db8::1]"), when the domain part is an RFC 5321 §4.1.3 address
	// literal instead of a domain. sealgate never signs for such addresses; the
	// field exists so callers can refuse them with a precise reply.
	AddressLiteral string
}

// String returns the address in RFC 5321 form, quoting the local part if needed
// and using the A-label form of the domain.
func (a Address) String() string {
	d := string(a.Domain)
	if a.AddressLiteral != "" {
		d = a.AddressLiteral
	}
	return quoteLocal(a.Local) + "@" + d
}

// IsZero reports whether a is the zero Address.
func (a Address) IsZero() bool { return a == Address{} }

// Equal reports whether a and b are the same mailbox: the same domain (or
// address literal) and local parts equal under ASCII case-insensitive comparison.
func (a Address) Equal(b Address) bool {
	return a.Domain == b.Domain && a.AddressLiteral == b.AddressLiteral && LocalPartsEqual(a.Local, b.Local)
}

// LocalPartsEqual compares two unquoted local parts by sealgate's one rule:
// ASCII letters compare case-insensitively, every other byte must be equal once
// both are in Unicode NFC (RFC 6532 §3.1: NFC is what senders should use, and a
// local part in another canonically equivalent form shows the same characters).
// No other folding: a fullwidth or zero-width character makes a different local
// part.
func LocalPartsEqual(x, y string) bool {
	if !IsASCII(x) || !IsASCII(y) {
		x, y = norm.NFC.String(x), norm.NFC.String(y)
	}
	if len(x) != len(y) {
		return false
	}
	for i := 0; i < len(x); i++ {
		if lowerASCII(x[i]) != lowerASCII(y[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// isAtext reports whether c may appear in an RFC 5321 §4.1.2 Atom (RFC 5322
// §3.2.3 atext). Bytes >= 0x80 are accepted as parts of UTF-8 (RFC 6531 §3.3).
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// isDotString reports whether s is an RFC 5321 Dot-string: Atoms separated by
// single dots.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && !isAtext(s[i]) {
			return false
		}
	}
	return true
}

// quoteLocal writes an unquoted local part in RFC 5321 §4.1.2 form.
func quoteLocal(local string) string {
	if isDotString(local) {
		return local
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if local[i] == '"' || local[i] == '\\' {
			b.WriteByte('\\') // quoted-pairSMTP
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// checkLocal validates an unquoted local part and reports whether it needs quoting.
func checkLocal(local string) (quoted bool, err error) {
	if local == "" {
		return false, errors.New("empty local part")
	}
	if !utf8.ValidString(local) {
		return false, errors.New("local part is not valid UTF-8")
	}
	for _, r := range local {
		// qtextSMTP and quoted-pairSMTP (RFC 5321 §4.1.2) cover only printable
		// ASCII and space; RFC 6531 adds UTF-8, which we accept without controls.
		if unicode.IsControl(r) || r == utf8.RuneError {
			return false, fmt.Errorf("local part contains control character %U", r)
		}
		// A bidirectional control makes a reader see the address in another
		// order ("\u202eelpmaxe.knab" shows as bank.example...); no address needs one.
		if unicode.Is(unicode.Bidi_Control, r) {
			return false, fmt.Errorf("local part contains bidirectional control %U, which changes how the address is shown", r)
		}
	}
	if n := len(quoteLocal(local)); n > MaxLocalLen {
		return false, fmt.Errorf("local part is %d octets, at most %d allowed (RFC 5321 §4.5.3.1.1)", n, MaxLocalLen)
	}
	return !isDotString(local), nil
}

// parseDomainPart parses what follows the "@" of an RFC 5321 mailbox: a Domain or
// an address literal. It sets a.Domain or a.AddressLiteral.
func parseDomainPart(a *Address, s string) error {
	if len(s) > MaxDomainLen {
		return fmt.Errorf("domain is %d octets, at most %d allowed (RFC 5321 §4.5.3.1.2)", len(s), MaxDomainLen)
	}
	if IsAddressLiteral(s) {
		lit, err := normaliseAddressLiteral(s)
		if err != nil {
			return err
		}
		a.AddressLiteral = lit
		return nil
	}
	if strings.HasSuffix(s, ".") {
		// RFC 5321 §4.1.2 Domain has no trailing dot. A reader takes
		// "example.com." for example.com: a look-alike in a mailbox.
		err := fmt.Errorf("domain %q ends with a dot", s)
		if d, perr := ParseDomain(s); perr == nil {
			return &LookalikeError{Domain: s, LooksLike: d, Err: err}
		}
		return err
	}
	d, err := ParseDomain(s)
	if err != nil {
		return err
	}
	a.Domain = d
	return nil
}

// normaliseAddressLiteral checks an RFC 5321 §4.1.3 address literal and returns it
// in canonical form. General-address-literals other than IPv6 are refused: nothing
// in sealgate can use them.
func normaliseAddressLiteral(s string) (string, error) {
	inner := s[1 : len(s)-1]
	if v6, ok := cutPrefixFold(inner, "IPv6:"); ok {
		ip, err := netip.ParseAddr(v6)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", fmt.Errorf("invalid IPv6 address literal %q", s)
		}
		return "[IPv6:" + ip.String() + "]", nil
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || !ip.Is4() {
		return "", fmt.Errorf("invalid address literal %q", s)
	}
	return "[" + ip.String() + "]", nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// ParseAddress parses an RFC 5321 §4.1.2 Mailbox written in SMTP syntax, without
// angle brackets: a Dot-string or Quoted-string local part, "@", and a domain
// (A-label or U-label) or an address literal. It enforces the RFC 5321 §4.5.3.1
// length limits. Use it for addresses in configuration and for raw SMTP text;
// use ParsePath for the values go-smtp passes to Session.Mail and Session.Rcpt.
func ParseAddress(s string) (Address, error) {
	a, err := parseAddress(s)
	if err != nil {
		return Address{}, fmt.Errorf("addr: invalid address %q: %w", s, err)
	}
	return a, nil
}

func parseAddress(s string) (Address, error) {
	if len(s) > MaxPathLen-2 {
		return Address{}, fmt.Errorf("%d octets, at most %d allowed (RFC 5321 §4.5.3.1.3)", len(s), MaxPathLen-2)
	}
	var local, rest string
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		i := 1
		for ; ; i++ {
			if i >= len(s) {
				return Address{}, errors.New("unterminated quoted string")
			}
			c := s[i]
			if c == '"' {
				break
			}
			if c == '\\' {
				i++
				if i >= len(s) || s[i] < 32 || s[i] > 126 { // quoted-pairSMTP
					return Address{}, errors.New("bad quoted pair")
				}
				c = s[i]
			} else if c < 32 || c == 127 {
				return Address{}, errors.New("control character in quoted string")
			}
			b.WriteByte(c)
		}
		local, rest = b.String(), s[i+1:]
		if !strings.HasPrefix(rest, "@") {
			return Address{}, errors.New("missing @ after quoted local part")
		}
		rest = rest[1:]
	} else {
		i := strings.IndexByte(s, '@')
		if i < 0 {
			return Address{}, errors.New("missing @")
		}
		local, rest = s[:i], s[i+1:]
		if !isDotString(local) {
			return Address{}, fmt.Errorf("local part %q is not a dot-string; quote it", local)
		}
	}
	var a Address
	var err error
	if a.Quoted, err = checkLocal(local); err != nil {
		return Address{}, err
	}
	a.Local = local
	if err := parseDomainPart(&a, rest); err != nil {
		return Address{}, err
	}
	return a, nil
}

// Path is a parsed MAIL FROM reverse-path or RCPT TO forward-path.
type Path struct {
	// Null is set for the null reverse-path "<>" (RFC 5321 §4.5.5); Addr is then zero.
	Null bool
	// Addr is the mailbox. Callers must use Addr.String() for anything they send
	// on, never the raw value, so that what was checked is what is used.
	Addr Address
	// Route holds the ignored source route ("@a,@b") if there was one (RFC 5321
	// §4.1.1.3 and Appendix C: accepted, ignored).
	Route string
}

// String returns the path's mailbox in RFC 5321 form (Address.String), or "" for
// the null path: the form to store and send on.
func (p Path) String() string {
	if p.Null {
		return ""
	}
	return p.Addr.String()
}

// ParsePath parses a MAIL FROM or RCPT TO value as emersion/go-smtp v0.25.1 hands
// it to a Session: without angle brackets, "" for the null path, with the quoting
// of a Quoted-string local part already removed (go-smtp turns
// <"ops@partner.example"@relay.example> into ops@partner.example@relay.example).
// So the domain is taken after the last "@" (or at the last "@[" for an address
// literal) and everything before it is local-part text, taken as it is: "%" and
// "!" have no routing meaning here.
//
// A leading source route "@a,@b:" is accepted and ignored (go-smtp normally
// removes it already). Because go-smtp loses quoting, such text can also be the
// start of an unquoted local part; treating it as a route is safe as long as the
// caller sends on Path.Addr and not the raw value.
//
// Address literals are returned with Addr.AddressLiteral set so that the caller
// can refuse them.
func ParsePath(s string) (Path, error) {
	p, err := parsePath(s)
	if err != nil {
		return Path{}, fmt.Errorf("addr: invalid path <%s>: %w", s, err)
	}
	return p, nil
}

func parsePath(s string) (Path, error) {
	if s == "" || s == "<>" {
		return Path{Null: true}, nil
	}
	if len(s) > MaxPathLen-2 {
		return Path{}, fmt.Errorf("%d octets, at most %d allowed (RFC 5321 §4.5.3.1.3)", len(s), MaxPathLen-2)
	}
	var p Path
	if s[0] == '@' {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return Path{}, errors.New("source route without ':'")
		}
		// A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain.
		for _, hop := range strings.Split(s[:i], ",") {
			if len(hop) < 2 || hop[0] != '@' {
				return Path{}, fmt.Errorf("malformed source route %q", s[:i])
			}
			if _, err := ParseDomain(hop[1:]); err != nil && !IsAddressLiteral(hop[1:]) {
				return Path{}, fmt.Errorf("malformed source route %q", s[:i])
			}
		}
		p.Route, s = s[:i], s[i+1:]
	}
	var at int
	if strings.HasSuffix(s, "]") {
		at = strings.LastIndex(s, "@[")
	} else {
		at = strings.LastIndexByte(s, '@')
	}
	if at < 0 {
		return Path{}, errors.New("missing @")
	}
	local, domain := s[:at], s[at+1:]
	var err error
	if p.Addr.Quoted, err = checkLocal(local); err != nil {
		return Path{}, err
	}
	p.Addr.Local = local
	if err := parseDomainPart(&p.Addr, domain); err != nil {
		return Path{}, err
	}
	if n := len(p.Addr.String()) + 2; n > MaxPathLen {
		return Path{}, fmt.Errorf("%d octets, at most %d allowed (RFC 5321 §4.5.3.1.3)", n, MaxPathLen)
	}
	return p, nil
}
