package config

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"sealgate/internal/addr"
)

// The checks of the domains and arc sections that need no signing package: names,
// selectors, the unsigned setting and the pseudonym secret. Loading the keys, their RSA
// minimum, the key ring and whether every identity can be signed are checked by
// cmd/sealgate (signing.go there), which builds them: internal/ imports no top-level package.

// CheckedDomain is one entry of the domains section as these checks left it, in the order
// of Config.Domains, for the key ring cmd/sealgate builds.
type CheckedDomain struct {
	// Domain is the entry's domain, normalised; "" when the entry is not valid (a bad or
	// repeated name, sign_subdomains on a public suffix): no key of it signs then.
	Domain addr.Domain
	// GoodSelector holds, for each of the entry's keys, whether its selector is valid and
	// not repeated: a key with a bad selector does not sign.
	GoodSelector []bool
}

// domains checks the domains section: names, selectors and unsigned.
func (v *validation) domains() {
	c, p := v.c, &v.p
	v.res.Domains = make([]CheckedDomain, len(c.Domains))
	var seen []addr.Domain
	for i, d := range c.Domains {
		k := fmt.Sprintf("domains[%d]", i)
		nd, err := addr.ParseDomain(d.Domain)
		valid := err == nil
		switch {
		case err != nil:
			p.add(k+".domain", "%v", err)
		case slices.Contains(seen, nd):
			p.add(k+".domain", "%s listed twice", nd)
			valid = false
		case d.SignSubdomains && addr.IsPublicSuffix(nd):
			p.add(k+".sign_subdomains", "%s is a public suffix: the domains under it belong to others, and its keys may not sign for them", quote(nd))
			valid = false
		}
		cd := CheckedDomain{GoodSelector: make([]bool, len(d.Keys))}
		selectors := map[string]bool{}
		for j, key := range d.Keys {
			kk := fmt.Sprintf("%s.keys[%d]", k, j)
			selOK := true
			if err := addr.CheckSelector(key.Selector); err != nil {
				p.add(kk+".selector", "%v", err)
				selOK = false
			} else if selectors[strings.ToLower(key.Selector)] {
				p.add(kk+".selector", "%q listed twice", key.Selector)
				selOK = false
			}
			selectors[strings.ToLower(key.Selector)] = true
			v.file(kk+".key_file", key.KeyFile) // whether it loads is cmd/sealgate's check
			cd.GoodSelector[j] = selOK
		}
		switch d.Unsigned {
		case "", "refuse":
			if len(d.Keys) == 0 {
				p.add(k+".keys", "no keys and unsigned is refuse: all mail for %s would be refused; add keys or set unsigned: relay", d.Domain)
			}
		case "relay":
		default:
			p.add(k+".unsigned", "%q: want refuse or relay", d.Unsigned)
		}
		if valid {
			seen = append(seen, nd)
			cd.Domain = nd
		}
		v.res.Domains[i] = cd
	}
}

func (v *validation) arc() {
	a, p := v.c.ARC, &v.p
	if _, err := addr.ParseDomain(a.Domain); err != nil {
		p.add("arc.domain", "%v", err)
	}
	if a.Selector == "" {
		p.add("arc.selector", "required")
	} else if err := addr.CheckSelector(a.Selector); err != nil {
		p.add("arc.selector", "%v", err)
	}
	v.file("arc.key_file", a.KeyFile) // whether it loads is cmd/sealgate's check
	if a.PseudonymousAuth && v.secretFile("arc.pseudonym_secret_file", a.PseudonymSecretFile, "the secret") {
		secret, err := os.ReadFile(a.PseudonymSecretFile)
		secret = []byte(strings.TrimSpace(string(secret)))
		switch {
		case err != nil:
			p.add("arc.pseudonym_secret_file", "%v", err)
		case len(secret) < MinPseudonymSecretBytes:
			p.add("arc.pseudonym_secret_file", "%s holds %d bytes; the secret must be at least %d (for example: head -c 32 /dev/urandom | base64 > %s)",
				a.PseudonymSecretFile, len(secret), MinPseudonymSecretBytes, a.PseudonymSecretFile)
		default:
			v.res.PseudonymKey = secret
		}
	}
}

// MinPseudonymSecretBytes is the shortest pseudonym secret accepted (white space around it
// is not counted): 128 bits, so that nobody can guess it and unmask pseudonyms.
const MinPseudonymSecretBytes = 16

// quote names a domain for an admin, with its Unicode form when it is an IDN.
func quote(d addr.Domain) string {
	if u := d.Unicode(); u != string(d) {
		return fmt.Sprintf("%s (%s)", d, u)
	}
	return string(d)
}
