package selftest

import (
	"strings"

	"sealgate/internal/addr"
	"sealgate/internal/dkimcore"
)

// PRA returns the purported responsible address of a header (RFC 4407 §2), the mailbox a
// SUBMITTER parameter (RFC 4405) announces, and the field it came from. ok is false when the
// header has none (RFC 4407 §2 step 6: the message is ill-formed for Sender ID).
func PRA(hdr dkimcore.Header) (pra addr.Address, field string, ok bool) {
	type entry struct {
		i     int
		value string
	}
	nonEmpty := func(name string) []entry {
		var out []entry
		for i, f := range hdr {
			if f.Is(name) && strings.TrimSpace(f.Value()) != "" {
				out = append(out, entry{i, f.Value()})
			}
		}
		return out
	}
	one := func(e entry, name string) (addr.Address, string, bool) {
		// Step 5: exactly one valid mailbox with a domain.
		mbs, err := addr.ParseHeaderMailboxes(e.value)
		if err != nil || len(mbs) != 1 || mbs[0].Addr.Domain == "" {
			return addr.Address{}, name, false
		}
		return mbs[0].Addr, name, true
	}
	resentFrom := nonEmpty("Resent-From")
	// Step 1: the first Resent-Sender, unless a Resent-From above it is separated from it
	// by a Received or Return-Path field (it then belongs to an older resend).
	if rs := nonEmpty("Resent-Sender"); len(rs) > 0 {
		older := false
		for _, rf := range resentFrom {
			if rf.i >= rs[0].i {
				break
			}
			for _, f := range hdr[rf.i+1 : rs[0].i] {
				if f.Is("Received") || f.Is("Return-Path") {
					older = true
				}
			}
		}
		if !older {
			return one(rs[0], "Resent-Sender")
		}
	}
	// Step 2.
	if len(resentFrom) > 0 {
		return one(resentFrom[0], "Resent-From")
	}
	// Step 3.
	switch s := nonEmpty("Sender"); len(s) {
	case 0:
	case 1:
		return one(s[0], "Sender")
	default:
		return addr.Address{}, "Sender", false
	}
	// Step 4.
	if f := nonEmpty("From"); len(f) == 1 {
		return one(f[0], "From")
	}
	return addr.Address{}, "From", false
}
