package addr

import (
	"fmt"

	"golang.org/x/net/publicsuffix"
)

// The Public Suffix List (https://publicsuffix.org/) names the domains under which anyone
// can register a name: "com", "co.uk" (its ICANN section) and "github.io" (its private
// section, where each subdomain belongs to another user). sealgate uses it to refuse
// may_send_as patterns that would cover every registrant under a suffix, and to find a
// domain's organisational domain (RFC 7489 §3.2), which DKIM signing for subdomains and
// DMARC alignment are judged by.
//
// The list is the snapshot compiled into golang.org/x/net/publicsuffix, so a newer x/net
// can answer differently from an older build. Its names are lower-case A-labels, the form
// of Domain, so an IDN suffix such as 公司.香港 is found whichever form a name was given in.
// Both sections are used, as DMARC implementations do.

// IsPublicSuffix reports whether d is itself a public suffix, in either section of the
// list. By the list's default rule "*" every single-label name is one.
func IsPublicSuffix(d Domain) bool {
	if d == "" {
		return false
	}
	suffix, _ := publicsuffix.PublicSuffix(string(d))
	return suffix == string(d)
}

// PublicSuffixSection reports whether d is itself a public suffix and in which section of
// the list: "ICANN" or "private". A single-label name that only the default rule "*" makes a
// suffix is reported as "private"; callers that care refuse single-label names first.
func PublicSuffixSection(d Domain) (section string, ok bool) {
	if d == "" {
		return "", false
	}
	suffix, icann := publicsuffix.PublicSuffix(string(d))
	switch {
	case suffix != string(d):
		return "", false
	case icann:
		return "ICANN", true
	}
	return "private", true
}

// OrgDomain returns d's organisational domain (RFC 7489 §3.2): its public suffix plus one
// label, so OrgDomain("news.client.example.co.uk") is "example.co.uk" and
// OrgDomain("alice.github.io") is "alice.github.io". A public suffix is its own
// organisational domain, and so is a name the list does not know beyond its last label
// ("relay.example.test" gives "example.test": the default rule makes "test" the suffix).
func OrgDomain(d Domain) Domain {
	if d == "" {
		return ""
	}
	org, err := publicsuffix.EffectiveTLDPlusOne(string(d))
	if err != nil {
		// d is a public suffix (or has empty labels, which ParseDomain never returns).
		return d
	}
	return Domain(org)
}

// Parent returns d without its first label, or "" for a single-label name:
// Parent("news.client.example") is "client.example".
func (d Domain) Parent() Domain {
	for i := 0; i < len(d); i++ {
		if d[i] == '.' {
			return d[i+1:]
		}
	}
	return ""
}

// quoteDomain names a domain for an admin: "co.uk", or for an IDN both forms,
// "xn--55qx5d.xn--j6w193g" (公司.香港).
func quoteDomain(d Domain) string {
	if u := d.Unicode(); u != string(d) {
		return fmt.Sprintf("%q (%s)", string(d), u)
	}
	return fmt.Sprintf("%q", string(d))
}
