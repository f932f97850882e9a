package addr

import (
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// golang.org/x/net/idna validates against the UTS #46 tables, which call "valid"
// many code points that IDNA 2008 itself DISALLOWS (those UTS #46 marks NV8):
// symbols and punctuation such as U+2044 FRACTION SLASH, U+2010 HYPHEN, U+2212
// MINUS SIGN or U+2764 HEAVY BLACK HEART, the look-alikes of "/", "-" and "."
// that a domain could hide behind; and it applies no CONTEXTO rule, so U+00B7
// MIDDLE DOT passes anywhere. checkIDNA2008 adds what is missing: the derived
// property of RFC 5892 §2-3 computed from Go's Unicode tables, and the CONTEXTO
// rules of RFC 5892 Appendix A.3-A.9. (CONTEXTJ, the Bidi rule and the hyphen
// rules are idna's.)

// idnaExceptions is RFC 5892 §2.6 (F): code points whose property is fixed.
var idnaExceptions = map[rune]string{
	0x00DF: "PVALID", 0x03C2: "PVALID", 0x06FD: "PVALID", 0x06FE: "PVALID", 0x0F0B: "PVALID", 0x3007: "PVALID",
	0x00B7: "CONTEXTO", 0x0375: "CONTEXTO", 0x05F3: "CONTEXTO", 0x05F4: "CONTEXTO", 0x30FB: "CONTEXTO",
	0x0640: "DISALLOWED", 0x07FA: "DISALLOWED", 0x302E: "DISALLOWED", 0x302F: "DISALLOWED", 0x3031: "DISALLOWED",
	0x3032: "DISALLOWED", 0x3033: "DISALLOWED", 0x3034: "DISALLOWED", 0x3035: "DISALLOWED", 0x303B: "DISALLOWED",
}

// idnaProperty is the IDNA 2008 derived property of r (RFC 5892 §3), for a
// non-ASCII code point.
func idnaProperty(r rune) string {
	if p, ok := idnaExceptions[r]; ok {
		return p
	}
	switch {
	case r >= 0x0660 && r <= 0x0669, r >= 0x06F0 && r <= 0x06F9: // Appendix A.8, A.9
		return "CONTEXTO"
	case unicode.Is(unicode.Join_Control, r): // H
		return "CONTEXTJ"
	// B: Unstable, NFKC_Casefold(r) != r; case folding is taken as lower-casing,
	// which it is but for Cherokee (folded to upper case there).
	case norm.NFKC.String(strings.ToLower(norm.NFKC.String(string(r)))) != string(r):
		return "DISALLOWED"
	case unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.White_Space, unicode.Noncharacter_Code_Point,
		unicode.Variation_Selector, unicode.Cf): // C: IgnorableProperties (Default_Ignorable_Code_Point's parts)
		return "DISALLOWED"
	case r >= 0x20D0 && r <= 0x20FF, r >= 0x1D100 && r <= 0x1D24F: // D: IgnorableBlocks
		return "DISALLOWED"
	case r >= 0x1100 && r <= 0x11FF, r >= 0xA960 && r <= 0xA97F, r >= 0xD7B0 && r <= 0xD7FF: // I: OldHangulJamo
		return "DISALLOWED"
	case unicode.In(r, unicode.Ll, unicode.Lu, unicode.Lo, unicode.Nd, unicode.Lm, unicode.Mn, unicode.Mc): // A: LetterDigits
		return "PVALID"
	}
	return "DISALLOWED" // symbols, punctuation, unassigned (J, K)
}

// checkIDNA2008 checks each non-ASCII code point of a U-label: PVALID, CONTEXTJ
// (idna checks those), or CONTEXTO with its rule of RFC 5892 Appendix A met.
func checkIDNA2008(label string) error {
	rs := []rune(label)
	for i, r := range rs {
		if r < 0x80 {
			continue
		}
		switch idnaProperty(r) {
		case "PVALID", "CONTEXTJ":
			continue
		case "CONTEXTO":
			if contextO(rs, i) {
				continue
			}
			return fmt.Errorf("U+%04X %q is not allowed here (RFC 5892 Appendix A)", r, r)
		}
		return fmt.Errorf("U+%04X %q is DISALLOWED in IDNA 2008 (RFC 5892)", r, r)
	}
	return nil
}

// contextO applies the CONTEXTO rule of rs[i] (RFC 5892 Appendix A.3-A.9).
func contextO(rs []rune, i int) bool {
	before := func() rune {
		if i > 0 {
			return rs[i-1]
		}
		return 0
	}
	after := func() rune {
		if i+1 < len(rs) {
			return rs[i+1]
		}
		return 0
	}
	switch r := rs[i]; {
	case r == 0x00B7: // A.3 MIDDLE DOT: between two 'l' (Catalan)
		return before() == 'l' && after() == 'l'
	case r == 0x0375: // A.4 GREEK LOWER NUMERAL SIGN: followed by Greek
		return unicode.Is(unicode.Greek, after())
	case r == 0x05F3 || r == 0x05F4: // A.5, A.6 HEBREW GERESH, GERSHAYIM: after Hebrew
		return unicode.Is(unicode.Hebrew, before())
	case r == 0x30FB: // A.7 KATAKANA MIDDLE DOT: in a label with Hiragana, Katakana or Han
		for _, c := range rs {
			if c != 0x30FB && unicode.In(c, unicode.Hiragana, unicode.Katakana, unicode.Han) {
				return true
			}
		}
		return false
	case r >= 0x0660 && r <= 0x0669: // A.8: no Extended Arabic-Indic digit in the label
		for _, c := range rs {
			if c >= 0x06F0 && c <= 0x06F9 {
				return false
			}
		}
		return true
	case r >= 0x06F0 && r <= 0x06F9: // A.9: no Arabic-Indic digit in the label
		for _, c := range rs {
			if c >= 0x0660 && c <= 0x0669 {
				return false
			}
		}
		return true
	}
	return false
}
