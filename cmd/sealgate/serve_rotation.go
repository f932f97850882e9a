package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"sealgate/keys"
	"sealgate/relay"
)

// The running relay's part of key rotation (README "Rotating keys"): a round of checks
// (keys.RotationCheck) at start, every key_rotation.check_interval, after each reload and
// on "sealgate keys rotate --check-now" (the control command "keys-check"). When a round
// switches a rotation, or the state file says a switch the key ring does not show yet (a
// --force, a check made by the command while the relay did not answer), the relay
// reloads: the new key ring comes with a new pipeline, swapped in at once, so a message
// is signed wholly with the keys of before or of after the switch (submit.Server.Reload).

// watchRotations runs the rounds until ctx ends.
func (p *process) watchRotations(ctx context.Context) {
	for {
		p.checkRotations(ctx)
		interval := p.config().KeyRotation.CheckInterval
		if interval <= 0 {
			interval = keys.DefaultCheckInterval
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-p.rotateNow:
			t.Stop()
		}
	}
}

// checkRotations runs one round, then reloads if the key ring must change.
func (p *process) checkRotations(ctx context.Context) keysCheckResult {
	p.rotMu.Lock()
	defer p.rotMu.Unlock()
	cfg := p.config()
	path := keys.RotationFile(cfg.Dir)
	var res keysCheckResult
	rc, err := rotationCheck(cfg, p.log)
	if err != nil {
		p.log.Warn("key rotation: no resolver to check with", "err", err)
		res.Error = err.Error()
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := rc.Run(ctx, path)
	if err != nil {
		p.log.Warn("key rotation: check failed", "state", path, "err", err)
		res.Error = err.Error()
		return res
	}
	res = checkResult(out)
	behind := p.ringBehind(path)
	if len(behind) == 0 {
		return res
	}
	for _, r := range behind {
		if r.Forced {
			p.log.Warn("key rotation: forced switch (sealgate keys rotate --force): signing with a key whose record was not seen published",
				"domain", r.Domain, "selector", r.New, "old_selector", r.Old)
		}
	}
	if _, err := p.reload("key rotation"); err != nil {
		res.Error = "reload: " + err.Error()
		return res
	}
	res.Reloaded = true
	return res
}

// ringBehind returns the switched rotations of the state file that the running key ring
// does not show yet: their new key missing, or their old key still signing.
func (p *process) ringBehind(path string) []keys.Rotation {
	rs, err := keys.LoadRotations(path)
	if err != nil {
		return nil // reported by the round
	}
	ring := p.pipeline.Load().KeyRing
	var out []keys.Rotation
	for _, d := range ring.Domains() {
		rots := rs.Of(d)
		if len(rots) == 0 {
			continue
		}
		dk, _ := ring.Lookup(d)
		var have []string
		for _, k := range dk.Keys {
			have = append(have, strings.ToLower(k.Selector))
		}
		// The last switched rotation of each family decides.
		for _, r := range rots {
			if r.Switched.IsZero() || replacedLater(rots, r) {
				continue
			}
			if !slices.Contains(have, strings.ToLower(r.New)) || r.Old != "" && slices.Contains(have, strings.ToLower(r.Old)) {
				out = append(out, *r)
			}
		}
	}
	return out
}

// replacedLater reports whether a later switched rotation replaced r's new key.
func replacedLater(rots []*keys.Rotation, r *keys.Rotation) bool {
	for _, o := range rots {
		if o != r && !o.Switched.IsZero() && strings.EqualFold(o.Old, r.New) {
			return true
		}
	}
	return false
}

// rotationCounts counts the rotations of the state file by state, for the metrics.
func (p *process) rotationCounts() map[string]int {
	n := map[string]int{}
	rs, err := keys.LoadRotations(keys.RotationFile(p.config().Dir))
	if err != nil {
		return n
	}
	now := time.Now()
	for i := range rs.Rotations {
		n[rs.Rotations[i].State(now)]++
	}
	return n
}

// handleRotations registers the control command "keys-check" (keys rotate --check-now,
// and after --force or a new rotation), and the metrics of the rotations.
func (p *process) handleRotations(c *relay.ControlServer) {
	c.Handle("keys-check", func(ctx context.Context, _ json.RawMessage) (any, error) {
		return p.checkRotations(ctx), nil
	})
}
