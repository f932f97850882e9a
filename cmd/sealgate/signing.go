package main

import (
	"crypto"
	"crypto/rsa"
	"fmt"
	"strings"

	"sealgate/internal/addr"
	"sealgate/internal/config"
	"sealgate/keys"
	"sealgate/sign"
)

// The checks of what signs and seals that need the signing packages, which internal/config
// may not import: each DKIM and ARC key loaded for real (the file mode rule, PEM, key type,
// the RSA minimum of RFC 8301), the key ring built from the domains section, and that every
// identity's may_send_as patterns and every forwarder's sign_as have keys to sign with.
// config checks the rest of those sections (names, selectors, that the key files exist);
// loadAndOpen, loadConfig and openConfig (resources.go) run these after it and report their
// problems the same way, each with its key path.

// signing is what signs and seals, built from a checked configuration.
type signing struct {
	// KeyRing holds the DKIM keys of every configured domain.
	KeyRing *sign.KeyRing
	// ARCKey is the sealing key of arc.key_file.
	ARCKey crypto.Signer
	// WeakKeys describes each RSA key under sign.MinRSABits that a lowered min_rsa_bits let
	// in ("domains[0].keys[1] (example.com s=old): RSA 1024 bits"), for a warning at start.
	WeakKeys []string
}

// signingCheck is one run of checkSigning.
type signingCheck struct {
	c   *config.Config
	res *config.Resources
	p   *config.Problems
	out *signing
	// domainIndex maps each valid configured domain to its index in Domains.
	domainIndex map[addr.Domain]int
	// rot is the key rotation state of dir (signing_rotation.go), read once; rotErr is set
	// when it could not be read.
	rot    *keys.Rotations
	rotErr bool
}

// checkSigning loads the keys of cfg and builds its key ring; res is what config.Open
// returned, complete or not. The error lists every problem; the signing is then incomplete.
func checkSigning(cfg *config.Config, res *config.Resources) (*signing, error) {
	v := &signingCheck{c: cfg, res: res, p: cfg.Problems(), out: &signing{}}
	v.domains()
	v.arc()
	v.coverage()
	v.forwarders()
	return v.out, v.p.Err()
}

// domains loads every key of the domains section and builds the key ring from the
// domains that are valid.
func (v *signingCheck) domains() {
	c, p := v.c, v.p
	v.domainIndex = map[addr.Domain]int{}
	var ring []sign.DomainKeys
	for i, d := range c.Domains {
		k := fmt.Sprintf("domains[%d]", i)
		var checked config.CheckedDomain
		if i < len(v.res.Domains) {
			checked = v.res.Domains[i]
		}
		nd, _ := addr.ParseDomain(d.Domain) // the name in WeakKeys, even of an entry not valid
		minOK := true
		if err := sign.CheckMinRSABits(d.MinRSABits); err != nil {
			p.Add(k+".min_rsa_bits", "%v", err)
			minOK = false
		}
		dk := sign.DomainKeys{Domain: checked.Domain, SignSubdomains: d.SignSubdomains, RelayUnsigned: d.Unsigned == "relay", MinRSABits: d.MinRSABits}
		files := map[string]string{}
		for j, key := range d.Keys {
			kk := fmt.Sprintf("%s.keys[%d]", k, j)
			signer := v.key(kk+".key_file", key.KeyFile, d.MinRSABits, minOK, fmt.Sprintf("%s (%s s=%s)", kk, nd, key.Selector))
			if signer != nil && j < len(checked.GoodSelector) && checked.GoodSelector[j] {
				dk.Keys = append(dk.Keys, sign.Key{Selector: key.Selector, Signer: signer})
				files[key.Selector] = key.KeyFile
			}
		}
		if minOK {
			dk.Keys = v.rotated(k, checked.Domain, dk.Keys, files, d.MinRSABits)
		}
		if checked.Domain != "" {
			v.domainIndex[checked.Domain] = i
			ring = append(ring, dk)
		}
	}
	r, err := sign.NewKeyRing(ring...)
	if err != nil {
		// Every reason NewKeyRing has was checked above or by config; this is a bug if it happens.
		p.Add("domains", "%v", err)
		return
	}
	v.out.KeyRing = r
}

// key loads a DKIM or ARC private key for real: the file mode rule, PEM, key type and the
// RSA minimum. It returns nil after adding a problem, and nil without one for a file that
// config reported missing. weak names the key in WeakKeys.
func (v *signingCheck) key(key, path string, minRSABits int, minOK bool, weak string) crypto.Signer {
	if config.CheckFile(path) != nil || !minOK {
		return nil
	}
	signer, err := keys.LoadWithOptions(path, keys.LoadOptions{MinRSABits: minRSABits})
	if err != nil {
		v.p.Add(key, "%s", strings.TrimPrefix(err.Error(), "keys: "))
		return nil
	}
	if pub, ok := signer.Public().(*rsa.PublicKey); ok && pub.N.BitLen() < sign.MinRSABits {
		v.out.WeakKeys = append(v.out.WeakKeys, fmt.Sprintf("%s: RSA %d bits", weak, pub.N.BitLen()))
	}
	return signer
}

func (v *signingCheck) arc() {
	a := v.c.ARC
	minOK := true
	if err := sign.CheckMinRSABits(a.MinRSABits); err != nil {
		v.p.Add("arc.min_rsa_bits", "%v", err)
		minOK = false
	}
	v.out.ARCKey = v.key("arc.key_file", a.KeyFile, a.MinRSABits, minOK, fmt.Sprintf("arc.key_file (%s s=%s)", a.Domain, a.Selector))
}

// coverage checks that every may_send_as pattern of every identity has DKIM keys to sign
// with, or may be relayed unsigned: otherwise serve would refuse all of that mail.
func (v *signingCheck) coverage() {
	if v.out.KeyRing == nil {
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
				v.p.Add("users_file", "%s:%d: login %q: may_send_as %s: %s", v.c.UsersFile, u.Line, u.Login, pt, msg)
			}
		}
	}
}

func (v *signingCheck) coverRules(k string, r config.SenderRules) {
	for j, s := range r.MaySendAs {
		pt, err := addr.ParsePattern(s)
		if err != nil {
			continue // reported by config
		}
		if msg := v.cover(pt, r.AllowUnsigned, "allow_unsigned: true on "+k); msg != "" {
			v.p.Add(fmt.Sprintf("%s.may_send_as[%d]", k, j), "%s: %s", pt, msg)
		}
	}
}

// cover says what is missing for pattern pt to be signed (or relayed unsigned by an
// identity with allowUnsigned), or "" when nothing is.
func (v *signingCheck) cover(pt addr.Pattern, allowUnsigned bool, allowHint string) string {
	ring, d := v.out.KeyRing, pt.Domain()
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
func (v *signingCheck) usable(dk *sign.DomainKeys, allowUnsigned bool, allowHint string) string {
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

// forwarders checks that the sign_as domain of every forwarder identity has DKIM keys; the
// rest of the forwarder settings are config's checks.
func (v *signingCheck) forwarders() {
	c := v.c
	if v.out.KeyRing == nil {
		return
	}
	check := func(f config.ForwarderRules, report func(format string, a ...any)) {
		if !f.IsForwarder() {
			return
		}
		d, err := addr.ParseDomain(f.SignAs)
		if err != nil {
			return // reported by config
		}
		dk, ok := v.out.KeyRing.Lookup(d)
		i, listed := v.domainIndex[d]
		// A listed domain whose key files have problems is reported at the keys.
		if (!ok || len(dk.Keys) == 0) && !(listed && len(c.Domains[i].Keys) > 0) {
			report("%s has no DKIM keys: add it under domains with keys", d)
		}
	}
	for i, n := range c.ClientNetworks {
		check(n.ForwarderRules, func(format string, a ...any) { v.p.Add(fmt.Sprintf("client_networks[%d].sign_as", i), format, a...) })
	}
	for i, cc := range c.ClientCerts {
		check(cc.ForwarderRules, func(format string, a ...any) { v.p.Add(fmt.Sprintf("client_certs[%d].sign_as", i), format, a...) })
	}
	for _, u := range v.res.Users {
		check(u.Forwarder, func(format string, a ...any) {
			v.p.Add("users_file", "%s:%d: login %q: %s: %s", c.UsersFile, u.Line, u.Login, "sign_as", fmt.Sprintf(format, a...))
		})
	}
}
