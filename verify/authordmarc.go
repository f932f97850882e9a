package verify

import (
	"context"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
)

// AuthorDMARC evaluates DMARC by both specifications for author, an author domain other than
// the one rep found in From (a forwarder's X-Original-From, say), with the DKIM and SPF
// results of rep: would the message pass DMARC had its From not been rewritten.
func AuthorDMARC(ctx context.Context, r resolver.Resolver, author addr.Domain, rep *Report) (rfc9989, rfc7489 *DMARCResult) {
	in := dmarcInput{authors: []addr.Domain{author}, exists: true}
	if exists, _, err := DomainExists(ctx, r, author); err == nil {
		in.exists = exists
	}
	for _, d := range rep.DKIM {
		if d.Domain != "" {
			in.dkim = append(in.dkim, Alignment{Method: "dkim", Domain: d.Domain, Result: d.Result})
		}
		in.dkimTemp = in.dkimTemp || d.Result == "temperror"
	}
	// The SPF identity: the MAIL FROM domain, or the HELO name for a null sender (RFC 7489
	// §3.1.2), as Verify used it.
	spf := rep.SPF
	if rep.MailFrom == "<>" {
		spf = rep.SPFHELO
	}
	if spf != nil && spf.Domain != "" {
		in.spf = &Alignment{Method: "spf", Domain: spf.Domain, Result: spf.Result}
		in.spfTemp = spf.Result == "temperror"
	}
	d := &dmarcDNS{r: r}
	return evaluateDMARC(ctx, d, in, RFC9989), evaluateDMARC(ctx, d, in, RFC7489)
}
