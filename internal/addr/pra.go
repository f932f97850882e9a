package addr

import "strings"

// HeaderField is what PRA needs of a header field: its name test and its
// unfolded value (dkimcore.Field has both).
type HeaderField interface {
	Is(name string) bool
	Value() string
}

// PRA returns the purported responsible address of a header (RFC 4407 §2), in
// its fields' order from the top: the mailbox a SUBMITTER parameter (RFC 4405)
// announces, and the name of the field it came from. ok is false when the
// header has none: the chosen field is malformed or holds other than one
// mailbox with a domain, or there are several Sender or From fields (RFC 4407
// §2 step 6: the message is ill-formed).
func PRA[F HeaderField](hdr []F) (pra Address, field string, ok bool) {
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
	one := func(e entry, name string) (Address, string, bool) {
		// Step 5: exactly one valid mailbox with a domain.
		mbs, err := ParseHeaderMailboxes(e.value)
		if err != nil || len(mbs) != 1 || mbs[0].Addr.Domain == "" {
			return Address{}, name, false
		}
		return mbs[0].Addr, name, true
	}
	resentFrom := nonEmpty("Resent-From")
	// Step 1: the first Resent-Sender, unless a Resent-From above it is
	// separated from it by a Received or Return-Path field (the Resent-Sender
	// then belongs to an older resend, and step 2 takes the Resent-From).
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
	// Step 2: the first Resent-From.
	if len(resentFrom) > 0 {
		return one(resentFrom[0], "Resent-From")
	}
	// Step 3: Sender, if there is exactly one.
	switch s := nonEmpty("Sender"); len(s) {
	case 0:
	case 1:
		return one(s[0], "Sender")
	default:
		return Address{}, "Sender", false
	}
	// Step 4: From, if there is exactly one.
	if f := nonEmpty("From"); len(f) == 1 {
		return one(f[0], "From")
	}
	return Address{}, "From", false
}
