package keys

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
)

// DefaultCheckInterval and DefaultKeepOldRecord are the defaults of key_rotation's
// check_interval and keep_old_record.
const (
	DefaultCheckInterval = 5 * time.Minute
	DefaultKeepOldRecord = 7 * 24 * time.Hour
)

// RotationCheck is one round of the checks that move rotations on: a pending rotation
// switches once CheckPublished sees its new record everywhere, a retiring one becomes
// remove-record once its keep time is over, and one whose old record is gone from DNS is
// done. Each change is logged, one line.
type RotationCheck struct {
	// Publish says where records are looked up.
	Publish PublishOptions
	// Keep is how long the old record stays published after a switch (0:
	// DefaultKeepOldRecord).
	Keep time.Duration
	// Log receives one line per state change (nil: none).
	Log *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// LoadOptions load the new keys.
	LoadOptions LoadOptions
}

// RotationCheckResult is what a round did.
type RotationCheckResult struct {
	// Switched lists the rotations that switched signing in this round: the caller must
	// rebuild its key ring.
	Switched []Rotation
	// Checked holds the publication verdict of each pending rotation's new record.
	Checked []RotationVerdict
}

// RotationVerdict is the publication check of one pending rotation.
type RotationVerdict struct {
	Domain   addr.Domain    `json:"domain"`
	Selector string         `json:"selector"`
	Result   *PublishResult `json:"result,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// Run does one round on the state file at path, under its lock, and saves it if anything
// changed. Rotations whose new key cannot be loaded or checked stay as they are, and say
// why in their LastResult.
func (c *RotationCheck) Run(ctx context.Context, path string) (*RotationCheckResult, error) {
	unlock, err := LockRotations(path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rs, err := LoadRotations(path)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	keep := c.Keep
	if keep <= 0 {
		keep = DefaultKeepOldRecord
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := &RotationCheckResult{}
	changed := false
	for i := range rs.Rotations {
		r := &rs.Rotations[i]
		switch r.State(now()) {
		case RotationPending:
			v := RotationVerdict{Domain: r.Domain, Selector: r.New}
			res, err := c.checkNew(ctx, r)
			t := now().UTC()
			r.LastCheck = t
			changed = true
			if err != nil {
				v.Error = err.Error()
				if r.LastResult != v.Error {
					log.Warn("key rotation: cannot check the new record", "domain", r.Domain, "selector", r.New, "err", err)
				}
				r.LastResult = v.Error
				out.Checked = append(out.Checked, v)
				continue
			}
			v.Result = res
			out.Checked = append(out.Checked, v)
			if !res.Published {
				if r.LastResult != res.Detail {
					log.Info("key rotation: new record not published yet; signing stays with the old key",
						"domain", r.Domain, "selector", r.New, "old_selector", r.Old, "detail", res.Detail)
				}
				r.LastResult = res.Detail
				continue
			}
			r.LastResult = res.Detail
			r.Switch(t, keep, false)
			out.Switched = append(out.Switched, *r)
			log.Info("key rotation: new record published; signing switches to the new selector",
				"domain", r.Domain, "selector", r.New, "old_selector", r.Old,
				"keep_old_record_until", r.RetireAfter.Format(time.RFC3339), "detail", res.Detail)
		case RotationRemoveRecord:
			if r.RemoveNoticed.IsZero() {
				r.RemoveNoticed, changed = now().UTC(), true
				log.Info("key rotation: the old record may now be removed from DNS",
					"domain", r.Domain, "old_selector", r.Old, "record", RecordName(r.Old, string(r.Domain)))
			}
			if gone, detail := c.oldGone(ctx, r); gone {
				r.Removed, changed = now().UTC(), true
				log.Info("key rotation: the old record is gone from DNS; rotation done",
					"domain", r.Domain, "old_selector", r.Old, "detail", detail)
			}
		}
	}
	if changed {
		if err := rs.Save(path); err != nil {
			return out, err
		}
	}
	return out, nil
}

func (c *RotationCheck) checkNew(ctx context.Context, r *Rotation) (*PublishResult, error) {
	key, err := LoadWithOptions(r.NewKeyFile, c.LoadOptions)
	if err != nil {
		return nil, err
	}
	return CheckPublished(ctx, c.Publish, key, r.New, string(r.Domain))
}

// oldGone says whether the old record is no longer published as the resolver sees it: no
// record, or the key revoked with an empty p= (RFC 6376 §3.6.1).
func (c *RotationCheck) oldGone(ctx context.Context, r *Rotation) (bool, string) {
	name := RecordName(r.Old, string(r.Domain))
	txts, err := c.Publish.Resolver.LookupTXT(ctx, name)
	if resolver.IsNotFound(err) {
		return true, "no TXT record at " + name
	}
	if err != nil || len(txts) != 1 {
		return false, ""
	}
	if rec, err := dkimcore.ParseKeyRecord(txts[0]); err == nil && rec.Revoked {
		return true, name + " is revoked (empty p=)"
	}
	return false, ""
}

// NewRotation generates the next key of a domain's family and writes it to
// RotationKeyFile under dir. old and oldKeyFile name the key it replaces ("" for none).
// The caller adds it with Rotations.Start and saves the state.
func NewRotation(dir string, domain addr.Domain, alg, selector, old, oldKeyFile string) (Rotation, crypto.Signer, error) {
	fam := Family(alg)
	if fam == "" || alg == FamilyRSA {
		if alg != FamilyRSA {
			return Rotation{}, nil, fmt.Errorf("keys: unknown key algorithm %q (want rsa, ed25519 or one of %v)", alg, Algorithms)
		}
		alg = RSA2048
	}
	key, err := Generate(alg)
	if err != nil {
		return Rotation{}, nil, err
	}
	path := RotationKeyFile(dir, selector, domain)
	if err := WritePrivateKey(path, key); err != nil {
		return Rotation{}, nil, err
	}
	return Rotation{Domain: domain, Family: fam, Alg: alg, Old: old, OldKeyFile: oldKeyFile,
		New: selector, NewKeyFile: path}, key, nil
}
