package keys

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/atomicfile"
)

// Publish before sign: a rotation generates the next selector's key and records it as
// pending; only when CheckPublished sees its record does the new key replace the old one
// of its family in signing, and the old record stays published for a while (queued and
// forwarded mail still carries its signatures) before the admin is told to remove it. The
// rotation state file under the state directory is the truth across restarts and
// reloads: the configured keys with the rotations applied (ApplyRotations) are the keys
// that sign.

// Rotation states, in order. A rotation's state is kept in its fields; State derives it.
const (
	// RotationPending: the new key waits for its record to be published; the old key signs.
	RotationPending = "pending-publication"
	// RotationRetiring: the new key signs; the old record must stay published until
	// RetireAfter.
	RotationRetiring = "retiring"
	// RotationRemoveRecord: the old record can be removed from DNS.
	RotationRemoveRecord = "remove-record"
	// RotationDone: the old record is gone from DNS.
	RotationDone = "done"
)

// Key families: a rotation replaces the key of the same family (rsa2048 and rsa3072 keys
// are both "rsa").
const (
	FamilyRSA     = "rsa"
	FamilyEd25519 = "ed25519"
)

// Family returns the family of an algorithm name of Generate, or of "rsa" ("" if unknown).
func Family(alg string) string {
	switch alg {
	case RSA2048, RSA3072, FamilyRSA:
		return FamilyRSA
	case Ed25519:
		return FamilyEd25519
	}
	return ""
}

// KeyFamily returns the family of a key ("" for a key DKIM cannot use).
func KeyFamily(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return FamilyRSA
	case ed25519.PublicKey:
		return FamilyEd25519
	}
	return ""
}

// Rotation is one key rotation of a domain.
type Rotation struct {
	Domain addr.Domain `json:"domain"`
	Family string      `json:"family"`        // FamilyRSA or FamilyEd25519
	Alg    string      `json:"algorithm"`     // the new key's algorithm (Generate's names)
	Old    string      `json:"old,omitempty"` // the selector replaced; "" when the domain had no key of the family
	// OldKeyFile is the replaced key's file, for the admin's clean-up.
	OldKeyFile string    `json:"old_key_file,omitempty"`
	New        string    `json:"new"`          // the new selector
	NewKeyFile string    `json:"new_key_file"` // under the state directory, mode 0600
	Created    time.Time `json:"created"`
	// Switched is when the new key began to sign: when its record was seen published, or
	// when an admin forced it (Forced). Zero while pending.
	Switched time.Time `json:"switched,omitzero"`
	Forced   bool      `json:"forced,omitempty"`
	// RetireAfter is when the old record may go: Switched plus the keep time.
	RetireAfter time.Time `json:"retire_after,omitzero"`
	// RemoveNoticed is when a check first saw RetireAfter passed (logged once); Removed
	// when the old record was seen gone.
	RemoveNoticed time.Time `json:"remove_noticed,omitzero"`
	Removed       time.Time `json:"removed,omitzero"`
	// LastCheck and LastResult are the latest publication check of the new record.
	LastCheck  time.Time `json:"last_check,omitzero"`
	LastResult string    `json:"last_result,omitempty"`
}

// State returns the rotation's state at now.
func (r *Rotation) State(now time.Time) string {
	switch {
	case r.Switched.IsZero():
		return RotationPending
	case !r.Removed.IsZero():
		return RotationDone
	case r.Old == "":
		return RotationDone // nothing to retire
	case now.Before(r.RetireAfter):
		return RotationRetiring
	}
	return RotationRemoveRecord
}

// Switch records that the new key signs from now, keeping the old record keep long.
func (r *Rotation) Switch(now time.Time, keep time.Duration, forced bool) {
	r.Switched, r.Forced = now.UTC(), forced
	r.RetireAfter = r.Switched.Add(keep)
}

// Rotations is the rotation state file: every rotation, oldest first.
type Rotations struct {
	Version   int        `json:"version"`
	Rotations []Rotation `json:"rotations"`
}

// rotationsVersion is the state file's format.
const rotationsVersion = 1

// RotationFile returns the state file's path in the state directory dir.
func RotationFile(dir string) string { return filepath.Join(dir, "keys", "rotation.json") }

// RotationKeyFile returns where a rotation's new key is written in the state directory dir.
func RotationKeyFile(dir, selector string, domain addr.Domain) string {
	return filepath.Join(dir, "keys", selector+"."+string(domain)+".key")
}

// maxRotationFile bounds what LoadRotations reads.
const maxRotationFile = 1 << 20

// LoadRotations reads the state file at path; a missing file is no rotation at all.
func LoadRotations(path string) (*Rotations, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Rotations{Version: rotationsVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: rotation state: %w", err)
	}
	if len(data) > maxRotationFile {
		return nil, fmt.Errorf("keys: rotation state %s: larger than %d bytes", path, maxRotationFile)
	}
	var rs Rotations
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rs); err != nil {
		return nil, fmt.Errorf("keys: rotation state %s: %w (restore it, or move it away to drop every rotation)", path, err)
	}
	if rs.Version != rotationsVersion {
		return nil, fmt.Errorf("keys: rotation state %s: version %d, this sealgate reads version %d", path, rs.Version, rotationsVersion)
	}
	base := stateDir(path)
	for i := range rs.Rotations {
		r := &rs.Rotations[i]
		if r.Domain == "" || r.New == "" || r.NewKeyFile == "" || Family(r.Family) != r.Family || r.Family == "" {
			return nil, fmt.Errorf("keys: rotation state %s: rotation %d is incomplete (domain, family, new, new_key_file)", path, i)
		}
		r.NewKeyFile, r.OldKeyFile = absUnder(base, r.NewKeyFile), absUnder(base, r.OldKeyFile)
	}
	return &rs, nil
}

// stateDir is the state directory of the state file at path (DIR of DIR/keys/rotation.json).
// Key files under it are stored relative to it, so that the state and its keys can be
// copied to another node's state directory.
func stateDir(path string) string { return filepath.Dir(filepath.Dir(path)) }

func absUnder(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// relUnder is absUnder's inverse: p (absolute, or relative to the working directory, as
// the paths of a loaded state are) relative to base when it is under base, else
// absolute.
func relUnder(base, p string) string {
	if p == "" {
		return p
	}
	absP, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	absBase, err := filepath.Abs(base)
	if err != nil {
		return absP
	}
	if rel, err := filepath.Rel(absBase, absP); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return rel
	}
	return absP
}

// Save writes the state file at path atomically (a crash leaves the old file or the new),
// mode 0600, creating its directory with mode 0700.
func (rs *Rotations) Save(path string) error {
	rs.Version = rotationsVersion
	stored := Rotations{Version: rotationsVersion, Rotations: slices.Clone(rs.Rotations)}
	base := stateDir(path)
	for i := range stored.Rotations {
		r := &stored.Rotations[i]
		r.NewKeyFile, r.OldKeyFile = relUnder(base, r.NewKeyFile), relUnder(base, r.OldKeyFile)
	}
	data, err := json.MarshalIndent(&stored, "", "  ")
	if err != nil {
		return fmt.Errorf("keys: rotation state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keys: rotation state: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("keys: rotation state: %w", err)
	}
	return nil
}

// Open returns the rotation of domain and family that is pending or retiring (at most
// one is), or nil.
func (rs *Rotations) Open(domain addr.Domain, family string, now time.Time) *Rotation {
	for i := range rs.Rotations {
		r := &rs.Rotations[i]
		if r.Domain == domain && r.Family == family {
			if s := r.State(now); s == RotationPending || s == RotationRetiring {
				return r
			}
		}
	}
	return nil
}

// Pending returns the pending rotation of domain and family, or nil.
func (rs *Rotations) Pending(domain addr.Domain, family string) *Rotation {
	for i := range rs.Rotations {
		r := &rs.Rotations[i]
		if r.Domain == domain && r.Family == family && r.Switched.IsZero() {
			return r
		}
	}
	return nil
}

// Of returns the rotations of domain, oldest first.
func (rs *Rotations) Of(domain addr.Domain) []*Rotation {
	var out []*Rotation
	for i := range rs.Rotations {
		if rs.Rotations[i].Domain == domain {
			out = append(out, &rs.Rotations[i])
		}
	}
	return out
}

// Selectors returns every selector the rotations of domain name, new and old.
func (rs *Rotations) Selectors(domain addr.Domain) []string {
	var out []string
	for _, r := range rs.Of(domain) {
		out = append(out, r.New)
		if r.Old != "" {
			out = append(out, r.Old)
		}
	}
	return out
}

// Start adds a pending rotation. It refuses one while another of the same domain and
// family is pending or retiring.
func (rs *Rotations) Start(r Rotation, now time.Time) error {
	if o := rs.Open(r.Domain, r.Family, now); o != nil {
		return fmt.Errorf("keys: %s already has a %s rotation to selector %s (%s); wait for it to finish or abort it", r.Domain, r.Family, o.New, o.State(now))
	}
	if slices.Contains(rs.Selectors(r.Domain), r.New) {
		return fmt.Errorf("keys: selector %s of %s was used by an earlier rotation; choose another", r.New, r.Domain)
	}
	r.Created = now.UTC()
	r.Switched, r.RetireAfter = time.Time{}, time.Time{}
	rs.Rotations = append(rs.Rotations, r)
	return nil
}

// Remove drops a rotation (an aborted one) from the state; r may point into it, and is
// not to be used afterwards.
func (rs *Rotations) Remove(r *Rotation) {
	domain, sel := r.Domain, r.New // r may be moved over by the deletion
	rs.Rotations = slices.DeleteFunc(rs.Rotations, func(x Rotation) bool {
		return x.Domain == domain && x.New == sel
	})
}

// ActiveKey is one key that signs for a domain, as ApplyRotations sees it.
type ActiveKey struct {
	Selector string
	KeyFile  string
}

// ApplyRotations returns the keys that sign for domain: configured (the domain's keys in
// the configuration) with each switched rotation applied in order (the old selector out,
// the new in) and every pending rotation's new selector left out, in case the admin
// listed it already: a key signs only once its record is published, or forced.
func (rs *Rotations) ApplyRotations(domain addr.Domain, configured []ActiveKey) []ActiveKey {
	out := slices.Clone(configured)
	for _, r := range rs.Of(domain) {
		if r.Switched.IsZero() {
			out = slices.DeleteFunc(out, func(k ActiveKey) bool { return strings.EqualFold(k.Selector, r.New) })
			continue
		}
		if r.Old != "" {
			out = slices.DeleteFunc(out, func(k ActiveKey) bool { return strings.EqualFold(k.Selector, r.Old) })
		}
		if !slices.ContainsFunc(out, func(k ActiveKey) bool { return strings.EqualFold(k.Selector, r.New) }) {
			out = append(out, ActiveKey{Selector: r.New, KeyFile: r.NewKeyFile})
		}
	}
	return out
}

// DefaultSelector names the next selector of family for a rotation on day now: "rsa" or
// "ed" and the date, "rsa20261207", with "-2", "-3", ... added when that is taken.
func DefaultSelector(family string, now time.Time, taken []string) string {
	prefix := "rsa"
	if family == FamilyEd25519 {
		prefix = "ed"
	}
	base := prefix + now.UTC().Format("20060102")
	s := base
	for i := 2; slices.ContainsFunc(taken, func(t string) bool { return strings.EqualFold(t, s) }); i++ {
		s = base + "-" + strconv.Itoa(i)
	}
	return s
}
