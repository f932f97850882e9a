package addr

import (
	"errors"
	"fmt"
	"strings"
)

// CheckSelector checks a DKIM or ARC selector (the s= tag), the one rule sealgate applies
// wherever a selector is configured, given on the command line or signed with. It returns
// nil or an error that starts with the quoted selector.
//
// RFC 6376 §3.1 defines selector = sub-domain *("." sub-domain), with sub-domain from
// RFC 5321 §4.1.2: Let-dig [Ldh-str], labels of letters, digits and inner hyphens. sealgate
// also allows '_' inside a label (not at its start or end). DNS itself allows any octet in
// a label (RFC 2181 §11), verifiers look such selectors up without complaint, and selectors
// like "google_2023" are in real use: refusing them would force an organisation moving its
// existing keys onto sealgate to rotate first. A label may not start with '_' because such
// labels are underscored attribute names (RFC 8552), like _domainkey itself; none may start
// or end with '-' (RFC 5321). Labels are 1 to 63 octets (RFC 1035 §2.3.4), the selector at
// most 253.
func CheckSelector(s string) error {
	if s == "" {
		return errors.New(`"": empty selector`)
	}
	if len(s) > 253 {
		return fmt.Errorf("%q: longer than 253 characters", s)
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			return fmt.Errorf("%q: empty label; want dot-separated labels such as s2026 or rsa.2026", s)
		}
		if len(label) > 63 {
			return fmt.Errorf("%q: label longer than 63 characters", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isLetDig(c) && c != '-' && c != '_' {
				return fmt.Errorf("%q: %q is not allowed; use letters, digits, '-' and '_' (RFC 6376 §3.1)", s, c)
			}
		}
		if !isLetDig(label[0]) || !isLetDig(label[len(label)-1]) {
			return fmt.Errorf("%q: label %q must start and end with a letter or digit (RFC 6376 §3.1)", s, label)
		}
	}
	return nil
}

func isLetDig(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
