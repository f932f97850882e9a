package main

import (
	"strings"

	"sealgate/internal/addr"
	"sealgate/keys"
	"sealgate/sign"
)

// The keys that sign are the configured keys with the key rotations of the state file
// applied (keys.Rotations.ApplyRotations, README "Rotating keys"): a rotation's new key
// signs once its record was seen published (or an admin forced it), in place of the old
// key of its family, and a pending rotation's new key never signs. The state file is the
// truth at every start and reload; a state file that cannot be read is a problem of dir,
// so that serve does not start, or a reload is not applied, on keys it cannot vouch for.

// rotations returns the rotation state of the configuration's dir, read once per check;
// nil after adding a problem.
func (v *signingCheck) rotations() *keys.Rotations {
	if v.rot != nil || v.rotErr {
		return v.rot
	}
	if v.c.Dir == "" {
		v.rot = &keys.Rotations{}
		return v.rot
	}
	rs, err := keys.LoadRotations(keys.RotationFile(v.c.Dir))
	if err != nil {
		v.p.Add("dir", "%s", strings.TrimPrefix(err.Error(), "keys: "))
		v.rotErr = true
		return nil
	}
	v.rot = rs
	return rs
}

// rotated returns the keys that sign for domain d (configured: its loaded keys, with
// their files in files) once its rotations are applied; k is the domain's key path.
func (v *signingCheck) rotated(k string, d addr.Domain, configured []sign.Key, files map[string]string, minRSABits int) []sign.Key {
	rs := v.rotations()
	if rs == nil || d == "" || len(rs.Of(d)) == 0 {
		return configured
	}
	var in []keys.ActiveKey
	signers := map[string]sign.Key{}
	for _, key := range configured {
		in = append(in, keys.ActiveKey{Selector: key.Selector, KeyFile: files[key.Selector]})
		signers[strings.ToLower(key.Selector)] = key
	}
	var out []sign.Key
	for _, a := range rs.ApplyRotations(d, in) {
		if key, ok := signers[strings.ToLower(a.Selector)]; ok {
			out = append(out, key)
			continue
		}
		signer, err := keys.LoadWithOptions(a.KeyFile, keys.LoadOptions{MinRSABits: minRSABits})
		if err != nil {
			v.p.Add(k+".keys", "key rotation to s=%s (%s): %s", a.Selector, keys.RotationFile(v.c.Dir), strings.TrimPrefix(err.Error(), "keys: "))
			continue
		}
		out = append(out, sign.Key{Selector: a.Selector, Signer: signer})
	}
	if len(out) == 0 && len(configured) > 0 {
		v.p.Add(k+".keys", "%s: no key left to sign with once the key rotations of %s are applied", d, keys.RotationFile(v.c.Dir))
	}
	return out
}
