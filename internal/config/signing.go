package config

import (
	"crypto"
	"crypto/rsa"
	"fmt"
	"os"
	"slices"
	"strings"

	"sealgate/internal/addr"
	"sealgate/keys"
	"sealgate/sign"
)

// The checks of what signs and seals: the domains and their keys, the ARC key and the
// pseudonym secret, and that every identity's may_send_as patterns can be signed.

// domains checks the domains section, loads every key and builds the key ring from the
// domains that are valid.
func (v *validation) domains() {
	c, p := v.c, &v.p
	v.domainIndex = map[addr.Domain]int{}
	var ring []sign.DomainKeys
	for i, d := range c.Domains {
		k := fmt.Sprintf("domains[%d]", i)
		nd, err := addr.ParseDomain(d.Domain)
		valid := err == nil
		switch {
		case err != nil:
			p.add(k+".domain", "%v", err)
		case slices.ContainsFunc(ring, func(dk sign.DomainKeys) bool { return dk.Domain == nd }):
			p.add(k+".domain", "%s listed twice", nd)
			valid = false
		case d.SignSubdomains && addr.IsPublicSuffix(nd):
			p.add(k+".sign_subdomains", "%s is a public suffix: the domains under it belong to others, and its keys may not sign for them", quote(nd))
			valid = false
		}
		minOK := true
		if err := sign.CheckMinRSABits(d.MinRSABits); err != nil {
			p.add(k+".min_rsa_bits", "%v", err)
			minOK = false
		}
		dk := sign.DomainKeys{Domain: nd, SignSubdomains: d.SignSubdomains, RelayUnsigned: d.Unsigned == "relay", MinRSABits: d.MinRSABits}
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
			signer := v.key(kk+".key_file", key.KeyFile, d.MinRSABits, minOK, fmt.Sprintf("%s (%s s=%s)", kk, nd, key.Selector))
			if signer != nil && selOK {
				dk.Keys = append(dk.Keys, sign.Key{Selector: key.Selector, Signer: signer})
			}
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
			v.domainIndex[nd] = i
			ring = append(ring, dk)
		}
	}
	r, err := sign.NewKeyRing(ring...)
	if err != nil {
		// Every reason NewKeyRing has was checked above; this is a bug if it happens.
		p.add("domains", "%v", err)
		return
	}
	v.res.KeyRing = r
}

// key loads a DKIM or ARC private key for real: the file mode rule, PEM, key type and the
// RSA minimum. It returns nil after adding a problem. weak names the key in WeakKeys.
func (v *validation) key(key, path string, minRSABits int, minOK bool, weak string) crypto.Signer {
	if !v.file(key, path) || !minOK {
		return nil
	}
	signer, err := keys.LoadWithOptions(path, keys.LoadOptions{MinRSABits: minRSABits})
	if err != nil {
		v.p.add(key, "%s", strings.TrimPrefix(err.Error(), "keys: "))
		return nil
	}
	if pub, ok := signer.Public().(*rsa.PublicKey); ok && pub.N.BitLen() < sign.MinRSABits {
		v.res.WeakKeys = append(v.res.WeakKeys, fmt.Sprintf("%s: RSA %d bits", weak, pub.N.BitLen()))
	}
	return signer
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
	minOK := true
	if err := sign.CheckMinRSABits(a.MinRSABits); err != nil {
		p.add("arc.min_rsa_bits", "%v", err)
		minOK = false
	}
	v.res.ARCKey = v.key("arc.key_file", a.KeyFile, a.MinRSABits, minOK, fmt.Sprintf("arc.key_file (%s s=%s)", a.Domain, a.Selector))
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

// coverage checks that every may_send_as pattern of every identity has DKIM keys to sign
// with, or may be relayed unsigned: otherwise serve would refuse all of that mail.
func (v *validation) coverage() {
	if v.res.KeyRing == nil {
		return
	}
	for i, n := range v.c.ClientNetworks {
		v.coverRules(fmt.Sprintf("client_networks[%d]", i), n.SenderRules)
	}
	for i, cc := range v.c.ClientCerts {
		v.coverRules(fmt.Sprintf("client_certs[%d]", i), cc.SenderRules)
	}
	for _, u := range v.res.Users {
		for _, pt := range u.MaySendAs {
			if msg := v.cover(pt, u.AllowUnsigned, "unsigned=yes on this line"); msg != "" {
				v.p.add("users_file", "%s:%d: login %q: may_send_as %s: %s", v.c.UsersFile, u.Line, u.Login, pt, msg)
			}
		}
	}
}

func (v *validation) coverRules(k string, r SenderRules) {
	for j, s := range r.MaySendAs {
		pt, err := addr.ParsePattern(s)
		if err != nil {
			continue // reported by rules
		}
		if msg := v.cover(pt, r.AllowUnsigned, "allow_unsigned: true on "+k); msg != "" {
			v.p.add(fmt.Sprintf("%s.may_send_as[%d]", k, j), "%s: %s", pt, msg)
		}
	}
}

// cover says what is missing for pattern pt to be signed (or relayed unsigned by an
// identity with allowUnsigned), or "" when nothing is.
func (v *validation) cover(pt addr.Pattern, allowUnsigned bool, allowHint string) string {
	ring, d := v.res.KeyRing, pt.Domain()
	if !pt.Subdomains() {
		dk, ok := ring.Lookup(d)
		if !ok {
			return fmt.Sprintf("no DKIM keys sign for %s: add it under domains with keys (or set sign_subdomains: true on a parent domain listed there)", d)
		}
		return v.usable(dk, allowUnsigned, allowHint)
	}
	// *@*.d: every subdomain without an entry of its own is signed by d's (or a parent's)
	// entry with sign_subdomains, and every listed subdomain by its own.
	dk, ok := ring.ForSubdomainsOf(d)
	if !ok {
		if i, listed := v.domainIndex[d]; listed {
			return fmt.Sprintf("no DKIM keys sign for the subdomains of %s: set sign_subdomains: true on domains[%d] (%s)", d, i, d)
		}
		return fmt.Sprintf("no DKIM keys sign for the subdomains of %s: add %s under domains with keys and sign_subdomains: true", d, d)
	}
	if msg := v.usable(dk, allowUnsigned, allowHint); msg != "" {
		return msg
	}
	for _, sub := range ring.Domains() {
		if sub.IsSubdomainOf(d) {
			own, _ := ring.Lookup(sub)
			if msg := v.usable(own, allowUnsigned, allowHint); msg != "" {
				return msg
			}
		}
	}
	return ""
}

// usable says why mail covered by entry dk cannot pass for an identity, or "".
func (v *validation) usable(dk *sign.DomainKeys, allowUnsigned bool, allowHint string) string {
	i := v.domainIndex[dk.Domain]
	if len(v.c.Domains[i].Keys) > 0 {
		return "" // key problems are reported on the keys themselves
	}
	switch {
	case !dk.RelayUnsigned:
		return "" // reported as domains[i].keys: no keys and unsigned is refuse
	case !allowUnsigned:
		return fmt.Sprintf("domains[%d] (%s) has no DKIM keys and relays unsigned mail only for identities that allow it: set %s, or add keys", i, dk.Domain, allowHint)
	}
	return ""
}

// quote names a domain for an admin, with its Unicode form when it is an IDN.
func quote(d addr.Domain) string {
	if u := d.Unicode(); u != string(d) {
		return fmt.Sprintf("%s (%s)", d, u)
	}
	return string(d)
}
