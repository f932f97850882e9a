package verify

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// spfSyntaxError is a record that does not follow the grammar of RFC 7208 §12. The check
// gives permerror "without further interpretation" (RFC 7208 §4.6), even where a mechanism
// before the error would have matched, so the record is checked whole before it is used.
type spfSyntaxError struct {
	domain, msg string
}

func (e *spfSyntaxError) Error() string {
	return fmt.Sprintf("the SPF record of %s is malformed: %s (RFC 7208 §4.6)", e.domain, e.msg)
}

// CheckSPFSyntax checks an SPF record (v=spf1 and its terms) against the grammar of
// RFC 7208 §12 and returns what is wrong, or "" for a record that parses.
func CheckSPFSyntax(record string) string {
	terms := strings.Split(record, " ")
	redirects, exps := 0, 0
	for _, term := range terms[1:] {
		if term == "" {
			continue // 1*SP between terms
		}
		name, value, isMod := cutModifier(term)
		if isMod {
			switch strings.ToLower(name) {
			case "redirect":
				redirects++
				if msg := checkDomainSpec(value, false); msg != "" {
					return "redirect=" + value + ": " + msg
				}
			case "exp":
				exps++
				if msg := checkDomainSpec(value, false); msg != "" {
					return "exp=" + value + ": " + msg
				}
			default:
				if msg := checkMacroString(value, false); msg != "" {
					return term + ": " + msg
				}
			}
			continue
		}
		if msg := checkMechanism(term); msg != "" {
			return msg
		}
	}
	switch {
	case redirects > 1:
		return "more than one redirect= modifier (RFC 7208 §6)"
	case exps > 1:
		return "more than one exp= modifier (RFC 7208 §6)"
	}
	return ""
}

// cutModifier splits name=value when term is a modifier: name = ALPHA *( ALPHA / DIGIT /
// "-" / "_" / "." ), then "=" before any ':' or '/'.
func cutModifier(term string) (name, value string, ok bool) {
	i := strings.IndexByte(term, '=')
	if i <= 0 || strings.ContainsAny(term[:i], ":/") {
		return "", "", false
	}
	name = term[:i]
	if !isAlpha(name[0]) {
		return "", "", false
	}
	for j := 1; j < len(name); j++ {
		c := name[j]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.' {
			return "", "", false
		}
	}
	return name, term[i+1:], true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func checkMechanism(term string) string {
	t := term
	if strings.IndexByte("+-~?", t[0]) >= 0 {
		t = t[1:]
	}
	bad := func(msg string) string { return fmt.Sprintf("%q: %s", term, msg) }
	mech, arg, hasArg := strings.Cut(t, ":") // arg keeps the case of macro letters
	rest := ""
	if !hasArg {
		if i := strings.IndexByte(mech, '/'); i >= 0 {
			mech, rest = mech[:i], mech[i:]
		}
	}
	mech = strings.ToLower(mech)
	switch mech {
	case "all":
		if hasArg || rest != "" {
			return bad("all takes no argument")
		}
	case "include", "exists":
		if !hasArg {
			return bad(mech + " needs a domain")
		}
		if msg := checkDomainSpec(arg, false); msg != "" {
			return bad(msg)
		}
	case "a", "mx":
		if hasArg {
			arg, rest = cutDualCIDR(arg)
			if msg := checkDomainSpec(arg, false); msg != "" {
				return bad(msg)
			}
		}
		if msg := checkDualCIDR(rest); msg != "" {
			return bad(msg)
		}
	case "ptr":
		if rest != "" {
			return bad("ptr takes no prefix length")
		}
		if hasArg {
			if msg := checkDomainSpec(arg, false); msg != "" {
				return bad(msg)
			}
		}
	case "ip4", "ip6":
		if !hasArg {
			return bad(mech + " needs a network")
		}
		network, cidr, hasCIDR := strings.Cut(arg, "/")
		a, err := netip.ParseAddr(network)
		if err != nil || a.Is4() != (mech == "ip4") || a.Zone() != "" {
			return bad(fmt.Sprintf("%q is not an %s address", network, map[string]string{"ip4": "IPv4", "ip6": "IPv6"}[mech]))
		}
		if hasCIDR && !validCIDR(cidr, a.BitLen()) {
			return bad(fmt.Sprintf("/%s is not a prefix length of 0 to %d", cidr, a.BitLen()))
		}
	default:
		return bad("unknown mechanism")
	}
	return ""
}

func validCIDR(s string, max int) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= max
}

// dualCIDRSuffix is the dual-cidr-length that may end an a or mx term.
var dualCIDRSuffix = regexp.MustCompile(`(/[0-9]*)?(//[0-9]*)?$`)

// cutDualCIDR splits the argument of an a or mx term into its domain-spec and its
// dual-cidr-length. The domain-spec may itself hold ':' and '/' (macro-literal, RFC 7208
// §7.1; RFC 7208 tests a-colon-domain, mx-colon-domain): the prefix lengths are only what
// ends the term as /N, //N or /N//N.
func cutDualCIDR(arg string) (domainSpec, cidr string) {
	i := dualCIDRSuffix.FindStringIndex(arg)[0]
	return arg[:i], arg[i:]
}

// checkDualCIDR checks [ "/" ip4-cidr-length ] [ "//" ip6-cidr-length ].
func checkDualCIDR(s string) string {
	if s == "" {
		return ""
	}
	v4, v6, both := strings.Cut(s[1:], "//")
	if strings.HasPrefix(s, "//") {
		v4, v6, both = "", s[2:], true
	}
	if v4 != "" && !validCIDR(v4, 32) {
		return fmt.Sprintf("/%s is not an IPv4 prefix length", v4)
	}
	if both && !validCIDR(v6, 128) {
		return fmt.Sprintf("//%s is not an IPv6 prefix length", v6)
	}
	if !both && v4 == "" {
		return "empty prefix length"
	}
	return ""
}

// checkDomainSpec checks domain-spec = macro-string domain-end, domain-end = ( "." toplabel
// [ "." ] ) / macro-expand.
func checkDomainSpec(s string, exp bool) string {
	if s == "" {
		return "empty domain"
	}
	if msg := checkMacroString(s, exp); msg != "" {
		return msg
	}
	if strings.HasSuffix(s, "}") {
		return "" // ends in a macro-expand
	}
	d := strings.TrimSuffix(s, ".")
	i := strings.LastIndexByte(d, '.')
	if i < 0 {
		return fmt.Sprintf("%q does not end in a top-level label", s)
	}
	top := d[i+1:]
	// toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
	if top == "" || top[0] == '-' || top[len(top)-1] == '-' {
		return fmt.Sprintf("%q does not end in a valid top-level label", s)
	}
	alpha := false
	for j := 0; j < len(top); j++ {
		c := top[j]
		switch {
		case isAlpha(c):
			alpha = true
		case c >= '0' && c <= '9':
		case c == '-':
			alpha = true
		default:
			return fmt.Sprintf("%q does not end in a valid top-level label", s)
		}
	}
	if !alpha {
		return fmt.Sprintf("%q ends in an all-numeric label", s)
	}
	return ""
}

// checkMacroString checks macros (RFC 7208 §7.1): %{letter digits r delimiters}, %%, %_, %-;
// c, r and t only in exp= text.
func checkMacroString(s string, exp bool) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e {
			return fmt.Sprintf("character %q not allowed", c)
		}
		if c != '%' {
			continue
		}
		if i+1 == len(s) {
			return "'%' at the end"
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return fmt.Sprintf("'%%%c' is not a macro", s[i+1])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "unterminated macro"
		}
		body := s[i+2 : i+end]
		if body == "" || strings.IndexByte("slodiphvSLODIPHV", body[0]) < 0 && !(exp && strings.IndexByte("crtCRT", body[0]) >= 0) {
			return fmt.Sprintf("%%{%s}: unknown macro letter", body)
		}
		j := 1
		for j < len(body) && body[j] >= '0' && body[j] <= '9' {
			j++
		}
		if j > 1 {
			if n, err := strconv.Atoi(body[1:j]); err != nil || n == 0 {
				return fmt.Sprintf("%%{%s}: bad label count", body)
			}
		}
		if j < len(body) && (body[j] == 'r' || body[j] == 'R') {
			j++
		}
		for ; j < len(body); j++ {
			if strings.IndexByte(".-+,/_=", body[j]) < 0 {
				return fmt.Sprintf("%%{%s}: bad delimiter %q", body, body[j])
			}
		}
		i += end
	}
	return ""
}
