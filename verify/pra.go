package verify

import (
	"sealgate/internal/addr"
	"sealgate/internal/dkimcore"
)

// PRA returns the purported responsible address of a header (RFC 4407 §2), the mailbox a
// SUBMITTER parameter (RFC 4405) announces, and the field it came from. ok is false when the
// header has none (RFC 4407 §2 step 6: the message is ill-formed for Sender ID). It is the
// relay's own algorithm (addr.PRA), so the verifier judges SUBMITTER by the rule that sets it.
func PRA(hdr dkimcore.Header) (pra addr.Address, field string, ok bool) {
	return addr.PRA(hdr)
}
