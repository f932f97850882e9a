package verify

import (
	"context"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
)

// DMARCPolicy looks up the DMARC policy that applies to mail from author by RFC 9989 (the
// DNS tree walk), as a receiver would apply it to a message that does not pass DMARC: the
// result is fail with Policy and Disposition set (quarantine or reject when the domain asks
// for it; Disposition is none under t=y), none without a record, or temperror or permerror.
// A forwarder uses it to decide whether the author's domain needs its From rewritten.
func DMARCPolicy(ctx context.Context, r resolver.Resolver, author addr.Domain) *DMARCResult {
	d := &dmarcDNS{r: r}
	return evaluateOne(ctx, d, dmarcInput{authors: []addr.Domain{author}, exists: true}, RFC9989)
}
