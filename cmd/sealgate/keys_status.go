package main

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"sealgate/internal/addr"
	"sealgate/internal/config"
	"sealgate/keys"
)

var keysStatusCmd = &cobra.Command{
	Use:   "status [--config FILE] [--json]",
	Short: "Show each domain's DKIM selectors, their rotation state and the next step",
	Long: `Show, for each configured domain, its selectors with their algorithm and state, from
the configuration and the rotation state (DIR/keys/rotation.json), and what the admin does
next:

  active                  signs
  pending-publication     a rotation's new key, waiting for its record to be seen published
  retiring-until DATE     replaced, but its record must stay published until DATE
  remove-record           replaced long enough ago: remove its record from DNS
  removed                 its record is gone; remove it from the configuration if listed`,
	Args: cobra.NoArgs,
	RunE: runKeysStatus,
}

var statusFlags struct {
	config string
	json   bool
}

func init() {
	keysStatusCmd.Flags().StringVar(&statusFlags.config, "config", "/etc/sealgate/sealgate.yaml", "configuration `FILE`")
	keysStatusCmd.Flags().BoolVar(&statusFlags.json, "json", false, "print JSON")
	keysCmd.AddCommand(keysStatusCmd)
}

// Selector states of keys status beyond the rotation states.
const (
	selectorActive  = "active"
	selectorRemoved = "removed"
)

// selectorStatus is one selector of a domain in keys status.
type selectorStatus struct {
	Selector  string    `json:"selector"`
	Algorithm string    `json:"algorithm"`
	State     string    `json:"state"`
	Until     time.Time `json:"until,omitzero"` // retiring: the old record stays until then
	KeyFile   string    `json:"key_file"`
	Record    string    `json:"record"` // the TXT record's name
	// Forced is set on a key that signs by keys rotate --force, its record not seen.
	Forced bool `json:"forced,omitempty"`
}

// domainStatus is one domain in keys status.
type domainStatus struct {
	Domain    string           `json:"domain"`
	Selectors []selectorStatus `json:"selectors"`
	NextStep  string           `json:"next_step"`
	// LastCheck is the latest publication check of a pending rotation.
	LastCheck  time.Time       `json:"last_check,omitzero"`
	LastResult string          `json:"last_result,omitempty"`
	Rotations  []keys.Rotation `json:"rotations,omitempty"`
}

func runKeysStatus(cmd *cobra.Command, _ []string) error {
	cfg, err := loadConfig(statusFlags.config)
	if cfg == nil {
		return err
	}
	if cfg.Dir == "" {
		return fmt.Errorf("configuration %s has no dir: the rotation state lives there\n%w", statusFlags.config, err)
	}
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: configuration %s has problems (sealgate config check lists them); the states below are from the file as it is\n", statusFlags.config)
	}
	rs, err := keys.LoadRotations(keys.RotationFile(cfg.Dir))
	if err != nil {
		return err
	}
	st := keysStatus(cfg, rs, time.Now())
	w := cmd.OutOrStdout()
	if statusFlags.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Domains []domainStatus `json:"domains"`
		}{st})
	}
	printKeysStatus(w, st)
	return nil
}

// keysStatus is the state of every configured domain's selectors at now.
func keysStatus(cfg *config.Config, rs *keys.Rotations, now time.Time) []domainStatus {
	var out []domainStatus
	for _, dc := range cfg.Domains {
		nd, err := addr.ParseDomain(dc.Domain)
		if err != nil {
			continue
		}
		d := string(nd)
		ds := domainStatus{Domain: d}
		index := map[string]int{}
		set := func(s selectorStatus) {
			s.Record = keys.RecordName(s.Selector, d)
			if i, ok := index[strings.ToLower(s.Selector)]; ok {
				if s.Algorithm == "" {
					s.Algorithm = ds.Selectors[i].Algorithm
				}
				ds.Selectors[i] = s
				return
			}
			index[strings.ToLower(s.Selector)] = len(ds.Selectors)
			ds.Selectors = append(ds.Selectors, s)
		}
		for _, k := range dc.Keys {
			set(selectorStatus{Selector: k.Selector, Algorithm: keyAlgorithm(k.KeyFile, dc.MinRSABits), State: selectorActive, KeyFile: k.KeyFile})
		}
		var steps []string
		for _, r := range rs.Of(nd) {
			ds.Rotations = append(ds.Rotations, *r)
			newSt := selectorStatus{Selector: r.New, Algorithm: r.Alg, State: selectorActive, KeyFile: r.NewKeyFile}
			oldSt := selectorStatus{Selector: r.Old, State: selectorActive, KeyFile: r.OldKeyFile}
			state := r.State(now)
			switch state {
			case keys.RotationPending:
				newSt.State = keys.RotationPending
				ds.LastCheck, ds.LastResult = r.LastCheck, r.LastResult
				steps = append(steps, fmt.Sprintf("publish the TXT record of s=%s (sealgate keys dns --key %s --domain %s --selector %s prints it); "+
					"s=%s signs until sealgate sees it at the resolver and every authoritative server", r.New, r.NewKeyFile, d, r.New, cmp(r.Old, "the current key")))
			case keys.RotationRetiring:
				oldSt.State, oldSt.Until = "retiring-until "+r.RetireAfter.Format(time.RFC3339), r.RetireAfter
				steps = append(steps, fmt.Sprintf("keep the record %s published until %s (mail signed with s=%s may still be in transit)",
					keys.RecordName(r.Old, d), r.RetireAfter.Format(time.RFC3339), r.Old))
			case keys.RotationRemoveRecord:
				oldSt.State = keys.RotationRemoveRecord
				steps = append(steps, fmt.Sprintf("remove the TXT record %s from DNS (or revoke it: publish it with an empty p=); then remove s=%s from the configuration and delete %s",
					keys.RecordName(r.Old, d), r.Old, cmp(r.OldKeyFile, "its key file")))
			case keys.RotationDone:
				oldSt.State = selectorRemoved
				if r.Old != "" && configuredSelector(dc, r.Old) {
					steps = append(steps, fmt.Sprintf("s=%s no longer signs and its record is gone or revoked: remove it from the configuration and delete %s",
						r.Old, cmp(r.OldKeyFile, "its key file")))
				}
			}
			if state != keys.RotationPending && r.Forced {
				newSt.Forced = true
				steps = append(steps, fmt.Sprintf("s=%s signs by --force: check that its record is published (sealgate keys check --key %s --domain %s --selector %s)",
					r.New, r.NewKeyFile, d, r.New))
			}
			if r.Old != "" {
				set(oldSt)
			}
			set(newSt)
			if state != keys.RotationPending && !configuredSelector(dc, r.New) && state != keys.RotationRemoveRecord {
				steps = append(steps, fmt.Sprintf("optionally list s=%s (key_file %s) under this domain's keys in the configuration", r.New, r.NewKeyFile))
			}
		}
		ds.NextStep = "nothing to do"
		if len(steps) > 0 {
			ds.NextStep = strings.Join(steps, "; ")
		}
		out = append(out, ds)
	}
	return out
}

func configuredSelector(dc config.DomainConfig, s string) bool {
	for _, k := range dc.Keys {
		if strings.EqualFold(k.Selector, s) {
			return true
		}
	}
	return false
}

// keyAlgorithm names a key file's algorithm ("rsa2048", "ed25519"), or says why not.
func keyAlgorithm(path string, minRSABits int) string {
	k, err := keys.LoadWithOptions(path, keys.LoadOptions{MinRSABits: minRSABits})
	if err != nil {
		return "unreadable"
	}
	if pub, ok := k.Public().(*rsa.PublicKey); ok {
		return fmt.Sprintf("rsa%d", pub.N.BitLen())
	}
	return keys.KeyFamily(k.Public())
}

func printKeysStatus(w io.Writer, st []domainStatus) {
	for i, ds := range st {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s\n", ds.Domain)
		for _, s := range ds.Selectors {
			forced := ""
			if s.Forced {
				forced = " (forced)"
			}
			fmt.Fprintf(w, "  %-20s %-8s %s%s\n", s.Selector, s.Algorithm, s.State, forced)
		}
		if !ds.LastCheck.IsZero() {
			fmt.Fprintf(w, "  last check %s: %s\n", ds.LastCheck.Format(time.RFC3339), ds.LastResult)
		}
		fmt.Fprintf(w, "  next: %s\n", ds.NextStep)
	}
}
