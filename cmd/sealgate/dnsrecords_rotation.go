package main

import (
	"fmt"
	"io"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/config"
	"sealgate/keys"
	"sealgate/sign"
)

// rotationRecords writes, for dns records, the key records that key rotations add to the
// key ring's: a pending rotation's new record (to publish: it signs once seen) and a
// retiring rotation's old record (to keep until its date), so that a zone rebuilt from
// dns records neither misses the new key nor drops the old one too early.
func rotationRecords(w io.Writer, cfg *config.Config, d addr.Domain) {
	rs, err := keys.LoadRotations(keys.RotationFile(cfg.Dir))
	if err != nil {
		fmt.Fprintf(w, "; key rotations unknown: %v\n", err)
		return
	}
	now := time.Now()
	record := func(file, selector string) string {
		// Only the public half is used: an old key under the RSA minimum still prints.
		k, err := keys.LoadWithOptions(file, keys.LoadOptions{MinRSABits: sign.LowestMinRSABits})
		if err != nil {
			return fmt.Sprintf("; (cannot read the key of %s: %v)", selector, err)
		}
		return keys.DNSRecord(k.Public(), selector, string(d))
	}
	for _, r := range rs.Of(d) {
		switch r.State(now) {
		case keys.RotationPending:
			fmt.Fprintf(w, "; DKIM key, selector %s (key rotation pending: publish it; it signs once sealgate sees it)\n%s\n", r.New, record(r.NewKeyFile, r.New))
		case keys.RotationRetiring:
			fmt.Fprintf(w, "; DKIM key, selector %s (replaced by %s: keep it published until %s)\n%s\n", r.Old, r.New, r.RetireAfter.Format(time.RFC3339), record(r.OldKeyFile, r.Old))
		case keys.RotationRemoveRecord:
			fmt.Fprintf(w, "; selector %s was replaced by %s on %s: remove (or revoke) its record\n", r.Old, r.New, r.Switched.Format(time.RFC3339))
		}
	}
}
