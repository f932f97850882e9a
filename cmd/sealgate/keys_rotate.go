package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"sealgate/internal/addr"
	"sealgate/internal/config"
	"sealgate/internal/resolver"
	"sealgate/keys"
	"sealgate/relay"
)

// keys rotate and keys status: DKIM key rotation, publish before sign (keys/rotation.go,
// README "Rotating keys"). The state file under dir is shared with the running relay
// (serve_rotation.go), which switches signing once the new record is seen; these
// commands change it under its lock and then ask the relay, through its control socket,
// to check at once.

var keysRotateCmd = &cobra.Command{
	Use:   "rotate --domain DOMAIN [--alg rsa|ed25519] [--selector S] [--force | --abort] | --check-now",
	Short: "Rotate a domain's DKIM key: publish the new record first, sign with it once it is seen",
	Long: `Start a key rotation: generate the next selector's key (mode 0600, under DIR/keys/),
print the TXT record to publish on standard output, and record the rotation as pending in
DIR/keys/rotation.json. The running relay keeps signing with the current key of that
algorithm until it sees the new record published and matching, through the configured
resolver and at every authoritative server of the zone that answers (checked every
key_rotation.check_interval, at a reload, and on --check-now); then it signs with the new
selector instead, and the old record must stay published for key_rotation.keep_old_record
(7 days by default). "sealgate keys status" then says when the old record can go.

Run it as the user sealgate runs as, so that the relay can read the new key and the state.
The selector defaults to rsaYYYYMMDD or edYYYYMMDD (today, UTC), with -2, -3... when taken.
--alg rsa makes an RSA-2048 key (rsa3072 for 3072 bits).

--check-now  checks the pending rotations at once (in the running relay, or here when none
             answers), and prints each verdict; exit 1 while one is not published.
--force      switches signing to the pending rotation's new key now, whether or not its
             record is published: receivers fail its signatures until it is. An override.
--abort      drops the pending rotation and deletes its unused key.`,
	Example: `  sealgate keys rotate --domain example.com
  sealgate keys rotate --domain example.com --alg ed25519
  sealgate keys rotate --check-now
  sealgate keys rotate --domain example.com --abort`,
	Args: cobra.NoArgs,
	RunE: runKeysRotate,
}

var rotateFlags struct {
	config, domain, alg, selector string
	force, abort, checkNow        bool
}

func init() {
	f := keysRotateCmd.Flags()
	f.StringVar(&rotateFlags.config, "config", "/etc/sealgate/sealgate.yaml", "configuration `FILE`")
	f.StringVar(&rotateFlags.domain, "domain", "", "signing `DOMAIN`, one of the configuration's domains")
	f.StringVar(&rotateFlags.alg, "alg", "rsa", "key `ALGORITHM`: rsa (RSA-2048), rsa3072 or ed25519")
	f.StringVar(&rotateFlags.selector, "selector", "", "the new `SELECTOR` (default rsaYYYYMMDD or edYYYYMMDD)")
	f.BoolVar(&rotateFlags.force, "force", false, "sign with the pending rotation's new key now, published or not")
	f.BoolVar(&rotateFlags.abort, "abort", false, "drop the pending rotation and delete its key")
	f.BoolVar(&rotateFlags.checkNow, "check-now", false, "check the pending rotations now")
	keysRotateCmd.MarkFlagsMutuallyExclusive("force", "abort", "check-now")
	keysCmd.AddCommand(keysRotateCmd)
}

func runKeysRotate(cmd *cobra.Command, _ []string) error {
	fl := rotateFlags
	if fl.checkNow {
		return rotateCheckNow(cmd, fl.config)
	}
	if fl.domain == "" {
		return errors.New(`--domain is required (or --check-now)`)
	}
	cfg, res, err := loadAndOpen(fl.config)
	if err != nil {
		return fmt.Errorf("configuration %s:\n%w", fl.config, err)
	}
	d, err := normaliseDomain(fl.domain)
	if err != nil {
		return err
	}
	entry := configuredDomain(cfg, d)
	if entry == nil {
		return fmt.Errorf("%s is not under domains in %s: add it there first", d, fl.config)
	}
	family := keys.Family(fl.alg)
	if family == "" {
		return fmt.Errorf("--alg %q: want rsa, rsa3072 or ed25519", fl.alg)
	}
	path := keys.RotationFile(cfg.Dir)
	unlock, err := keys.LockRotations(path)
	if err != nil {
		return err
	}
	defer unlock()
	rs, err := keys.LoadRotations(path)
	if err != nil {
		return err
	}
	w, ew := cmd.OutOrStdout(), cmd.ErrOrStderr()
	switch {
	case fl.force, fl.abort:
		r := rs.Pending(addr.Domain(d), family)
		if r == nil {
			return fmt.Errorf("%s has no pending %s rotation (sealgate keys status shows its state)", d, family)
		}
		if fl.abort {
			if err := os.Remove(r.NewKeyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("abort: %w", err)
			}
			sel, file := r.New, r.NewKeyFile
			rs.Remove(r)
			if err := rs.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(w, "aborted the rotation of %s to s=%s and deleted %s; remove its TXT record %s if you published it\n",
				d, sel, file, keys.RecordName(sel, d))
			return nil
		}
		r.Switch(time.Now(), cfg.KeyRotation.KeepOldRecord, true)
		if err := rs.Save(path); err != nil {
			return err
		}
		fmt.Fprintf(ew, "WARNING: s=%s of %s signs from now although its record was not seen published (last check: %s);\n"+
			"receivers fail its signatures until %s publishes this key.\n", r.New, d, cmp(r.LastResult, "none yet"), keys.RecordName(r.New, d))
		fmt.Fprintf(w, "forced: %s signs with s=%s instead of s=%s; keep the old record published until %s\n",
			d, r.New, cmp(r.Old, "(none)"), r.RetireAfter.Format(time.RFC3339))
		unlock()
		nudgeRelay(cmd.Context(), cfg.Dir, w)
		return nil
	}

	// A new rotation: the key it replaces is the one of its family that signs now.
	dk, _ := res.KeyRing.Lookup(addr.Domain(d))
	var old []string
	for _, k := range dk.Keys {
		if keys.KeyFamily(k.Signer.Public()) == family {
			old = append(old, k.Selector)
		}
	}
	if len(old) > 1 {
		return fmt.Errorf("%s signs with %d %s keys (%s); a rotation replaces one: remove the others from the configuration first", d, len(old), family, strings.Join(old, ", "))
	}
	if o := rs.Open(addr.Domain(d), family, time.Now()); o != nil {
		return fmt.Errorf("%s already has a %s rotation to s=%s (%s): wait for it to finish (sealgate keys status) or --abort it", d, family, o.New, o.State(time.Now()))
	}
	taken := rs.Selectors(addr.Domain(d))
	for _, k := range entry.Keys {
		taken = append(taken, strings.ToLower(k.Selector))
	}
	selector := fl.selector
	if selector == "" {
		selector = keys.DefaultSelector(family, time.Now(), taken)
	} else if selector, err = normaliseSelector(selector); err != nil {
		return err
	}
	for _, s := range taken {
		if strings.EqualFold(s, selector) {
			return fmt.Errorf("--selector %s is in use by %s already; choose another", selector, d)
		}
	}
	oldSel, oldFile := "", ""
	if len(old) == 1 {
		oldSel, oldFile = old[0], keyFileOf(entry, rs, d, old[0])
	}
	alg := fl.alg
	if alg == keys.FamilyRSA {
		alg = keys.RSA2048
	}
	r, key, err := keys.NewRotation(cfg.Dir, addr.Domain(d), alg, selector, oldSel, oldFile)
	if err != nil {
		return err
	}
	if err := rs.Start(r, time.Now()); err != nil {
		os.Remove(r.NewKeyFile)
		return err
	}
	if err := rs.Save(path); err != nil {
		os.Remove(r.NewKeyFile)
		return err
	}
	fmt.Fprintf(ew, "Wrote the %s key of s=%s to %s (mode 0600); the rotation is pending.\n"+
		"Publish this TXT record. sealgate keeps signing with %s until it sees the record at the\n"+
		"resolver and every authoritative server of the zone, then signs with s=%s.\n"+
		"Follow it with: sealgate keys status --config %s\n",
		alg, selector, r.NewKeyFile, cmp(oldSel, "the keys it has"), selector, fl.config)
	if err := printRecord(cmd, key.Public(), selector, d); err != nil {
		return err
	}
	unlock()
	nudgeRelay(cmd.Context(), cfg.Dir, io.Discard)
	return nil
}

// configuredDomain returns the domains entry of d, or nil.
func configuredDomain(cfg *config.Config, d string) *config.DomainConfig {
	for i := range cfg.Domains {
		if nd, err := addr.ParseDomain(cfg.Domains[i].Domain); err == nil && string(nd) == d {
			return &cfg.Domains[i]
		}
	}
	return nil
}

// keyFileOf returns the key file of selector s of domain d: configured, or a rotation's.
func keyFileOf(entry *config.DomainConfig, rs *keys.Rotations, d, s string) string {
	for _, k := range entry.Keys {
		if strings.EqualFold(k.Selector, s) {
			return k.KeyFile
		}
	}
	for _, r := range rs.Of(addr.Domain(d)) {
		if strings.EqualFold(r.New, s) {
			return r.NewKeyFile
		}
	}
	return ""
}

// keysCheckResult is the answer to the control command "keys-check".
type keysCheckResult struct {
	Checked  []keys.RotationVerdict `json:"checked"`
	Switched []string               `json:"switched,omitempty"` // "domain s=selector"
	Reloaded bool                   `json:"reloaded,omitempty"`
	Error    string                 `json:"error,omitempty"`
}

// nudgeRelay asks the running relay to check the rotations now (and so to apply a forced
// switch), saying on w what came of it.
func nudgeRelay(ctx context.Context, dir string, w io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var res keysCheckResult
	if err := relay.ControlCall(ctx, controlSocket(dir), "keys-check", nil, &res); err != nil {
		fmt.Fprintf(w, "no running relay answered (%v); it applies this at its next start or reload\n", err)
		return
	}
	if res.Error != "" {
		fmt.Fprintf(w, "the running relay could not apply it: %s\n", res.Error)
		return
	}
	fmt.Fprintln(w, "the running relay has applied it")
}

// rotateCheckNow runs one round of checks: in the running relay when it answers, here
// otherwise (the relay applies what changed at its next start or reload).
func rotateCheckNow(cmd *cobra.Command, configFile string) error {
	cfg, err := loadConfig(configFile)
	if cfg == nil || cfg.Dir == "" {
		return fmt.Errorf("configuration %s:\n%w", configFile, err)
	}
	w := cmd.OutOrStdout()
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
	defer cancel()
	var res keysCheckResult
	where := "the running relay"
	if cerr := relay.ControlCall(ctx, controlSocket(cfg.Dir), "keys-check", nil, &res); cerr != nil {
		if err != nil {
			return fmt.Errorf("configuration %s:\n%w", configFile, err)
		}
		where = "here (no running relay answered)"
		rc, err := rotationCheck(cfg, nil)
		if err != nil {
			return err
		}
		out, err := rc.Run(ctx, keys.RotationFile(cfg.Dir))
		if err != nil {
			return err
		}
		res = checkResult(out)
	}
	if len(res.Checked) == 0 {
		fmt.Fprintf(w, "checked %s: no pending rotation\n", where)
	}
	for _, v := range res.Checked {
		switch {
		case v.Error != "":
			fmt.Fprintf(w, "%s s=%s: cannot check: %s\n", v.Domain, v.Selector, v.Error)
		case v.Result.Published:
			fmt.Fprintf(w, "%s s=%s: published: %s\n", v.Domain, v.Selector, v.Result.Detail)
		default:
			fmt.Fprintf(w, "%s s=%s: NOT published: %s\n", v.Domain, v.Selector, v.Result.Detail)
		}
		if v.Result != nil {
			for _, s := range v.Result.Servers {
				verdict := string(s.Status)
				if s.Unreachable {
					verdict = "unreachable"
				}
				fmt.Fprintf(w, "  %-40s %s\n", s.Server, verdict)
			}
		}
	}
	for _, s := range res.Switched {
		fmt.Fprintf(w, "switched: %s signs now (checked %s)\n", s, where)
	}
	if res.Error != "" {
		return fmt.Errorf("the running relay could not apply the switch: %s", res.Error)
	}
	for _, v := range res.Checked {
		if v.Result == nil || !v.Result.Published {
			return exitStatus(1, errors.New("")) // the verdicts are on stdout
		}
	}
	return nil
}

// rotationCheck is one round of rotation checks as cfg says, through its resolver (a
// fresh one: reloads change it, and wrappers such as the metrics' cannot look up NS).
func rotationCheck(cfg *config.Config, log *slog.Logger) (*keys.RotationCheck, error) {
	r, err := resolver.New(resolver.Config{Server: cfg.DNS.Server, ZoneFile: cfg.DNS.ZoneFile, Timeout: cfg.DNS.Timeout})
	if err != nil {
		return nil, err
	}
	return &keys.RotationCheck{
		Publish: keys.PublishOptions{Resolver: r, SkipAuthoritative: cfg.DNS.ZoneFile != "",
			NSPort: cfg.KeyRotation.AuthoritativePort, Timeout: cfg.DNS.Timeout},
		Keep: cfg.KeyRotation.KeepOldRecord,
		Log:  log,
	}, nil
}

// checkResult is what a round did, as the control command answers it.
func checkResult(out *keys.RotationCheckResult) keysCheckResult {
	res := keysCheckResult{Checked: out.Checked}
	for _, r := range out.Switched {
		res.Switched = append(res.Switched, string(r.Domain)+" s="+r.New)
	}
	return res
}
