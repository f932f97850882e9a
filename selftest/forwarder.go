package selftest

import (
	"bytes"
	"context"
	"fmt"
	"sealgate/verify"
	"strings"

	"sealgate/internal/addr"
	"sealgate/sign"
)

// Forwarder describes the forwarder (mailing list) identity a message was sent as, for the
// forwarder section of a MessageReport.
type Forwarder struct {
	// SignAs is the domain the forwarder signs as (d=).
	SignAs string
	// ListAddress is the address a rewritten From shows; empty for a plain forwarder.
	ListAddress string
	// FromRewrite is off, auto or always.
	FromRewrite string
}

// ForwarderView is what receivers see of a forwarded message: the author's domain and its
// DMARC result had From not been rewritten, the domain a receiver evaluates instead when it
// was, and the ARC chain that lets a receiver honouring ARC accept a DMARC failure (RFC 8617
// §7.2).
type ForwarderView struct {
	// Author is the original author's address: X-Original-From when From was rewritten,
	// else From. AuthorField names the field it was read from.
	Author       string `json:"author"`
	AuthorDomain string `json:"author_domain"`
	AuthorField  string `json:"author_field"`
	// AuthorDMARC9989 and AuthorDMARC7489 are DMARC for the author's domain against the
	// DKIM d= and SPF domains of the received message: what a receiver computes when From
	// is the author's.
	AuthorDMARC9989 *verify.DMARCResult `json:"author_dmarc_rfc9989"`
	AuthorDMARC7489 *verify.DMARCResult `json:"author_dmarc_rfc7489"`
	// AuthorPolicy is the author domain's policy by RFC 9989 ("p=reject at
	// _dmarc.example.org", "no DMARC record").
	AuthorPolicy string `json:"author_policy"`
	// FromRewrite is the forwarder's setting; Rewritten whether From was rewritten, and
	// RewriteWhy why or why not.
	FromRewrite string `json:"from_rewrite"`
	Rewritten   bool   `json:"rewritten"`
	RewriteWhy  string `json:"rewrite_why"`
	// SeenDomain is the From domain receivers evaluate DMARC for; SeenDMARCPass whether it
	// passes under both RFCs (the report's DMARC results).
	SeenDomain    string `json:"seen_domain,omitempty"`
	SeenDMARCPass bool   `json:"seen_dmarc_pass"`
	// ARC is the chain as an Authentication-Results entry ("arc=pass (i=1)
	// header.oldest-pass=0", "arc=fail (reason)", "arc=none").
	ARC     string `json:"arc"`
	ARCPass bool   `json:"arc_pass"`
	// Verdict says whether receivers that honour ARC would accept, and whether DMARC passes
	// for what they see.
	Verdict string `json:"verdict"`
}

// viewForwarded builds the forwarder section of one egress from the received message and
// its verifier report.
func viewForwarded(ctx context.Context, o *MessageOptions, msg []byte, r *verify.Report) *ForwarderView {
	fw := o.Forwarder
	v := &ForwarderView{FromRewrite: fw.FromRewrite, ARC: arcEntry(r.ARC), ARCPass: r.ARC.Result == "pass"}
	if len(r.From.Domains) == 1 && r.From.Problem == "" {
		v.SeenDomain = r.From.Domains[0]
	}
	v.SeenDMARCPass = r.DMARC9989 != nil && r.DMARC7489 != nil && anyAligned(r.DMARC9989) && anyAligned(r.DMARC7489)

	hdr, _, err := sign.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		v.Verdict = "the received message cannot be read: " + err.Error()
		return v
	}
	field, values := "From", hdr.Values("From")
	if orig := hdr.Values("X-Original-From"); len(orig) > 0 {
		field, values = "X-Original-From", orig
	}
	var author addr.Address
	if len(values) == 1 {
		if mbs, err := addr.ParseHeaderMailboxes(values[0]); err == nil && len(mbs) > 0 {
			author = mbs[0].Addr
		}
	}
	v.AuthorField = field
	v.Rewritten = field == "X-Original-From" && v.SeenDomain != "" && !strings.EqualFold(v.SeenDomain, string(author.Domain))
	if author.Domain == "" {
		v.Verdict = fmt.Sprintf("no single author address in %s: DMARC has no author domain to evaluate", field)
		return v
	}
	v.Author, v.AuthorDomain = author.String(), string(author.Domain)

	tctx, cancel := context.WithTimeout(ctx, timeoutOf(&o.Options))
	defer cancel()
	v.AuthorDMARC9989, v.AuthorDMARC7489 = verify.AuthorDMARC(tctx, o.Resolver, author.Domain, r)

	pol := verify.DMARCPolicy(tctx, o.Resolver, author.Domain)
	switch {
	case pol.Record != nil:
		v.AuthorPolicy = fmt.Sprintf("%s=%s at _dmarc.%s", pol.PolicyTag, pol.Policy, pol.PolicyDomain)
	case pol.Result == "none":
		v.AuthorPolicy = "no DMARC record"
	default:
		v.AuthorPolicy = fmt.Sprintf("%s: %s", pol.Result, pol.Reason)
	}
	v.RewriteWhy = rewriteWhy(v, pol)
	v.Verdict = forwarderVerdict(v, r)
	return v
}

// rewriteWhy says why From was rewritten or kept, by the forwarder's setting and the author
// domain's policy.
func rewriteWhy(v *ForwarderView, pol *verify.DMARCResult) string {
	enforcing := pol.Record != nil && (pol.Policy == "quarantine" || pol.Policy == "reject")
	switch {
	case v.Rewritten && v.FromRewrite == "always":
		return fmt.Sprintf("rewritten: from_rewrite=always rewrites every message (%s publishes %s)", v.AuthorDomain, v.AuthorPolicy)
	case v.Rewritten && enforcing && authorPasses(v):
		return fmt.Sprintf("rewritten: %s publishes %s and no DKIM signature aligned with it verified as the forwarder received the message; the forwarder's own identifiers align with it in relaxed mode, so DMARC would have passed without the rewrite", v.AuthorDomain, v.AuthorPolicy)
	case v.Rewritten && enforcing:
		return fmt.Sprintf("rewritten: %s publishes %s and no DKIM signature aligned with it verified as the forwarder received the message, so the message would fail DMARC for %s", v.AuthorDomain, v.AuthorPolicy, v.AuthorDomain)
	case v.Rewritten && pol.Result == "temperror":
		return fmt.Sprintf("rewritten: the DMARC policy of %s could not be fetched (%s)", v.AuthorDomain, pol.Reason)
	case v.Rewritten:
		return fmt.Sprintf("rewritten by from_rewrite=%s (%s publishes %s)", v.FromRewrite, v.AuthorDomain, v.AuthorPolicy)
	case v.FromRewrite == "off" || v.FromRewrite == "":
		return fmt.Sprintf("kept: from_rewrite=off (%s publishes %s)", v.AuthorDomain, v.AuthorPolicy)
	case !enforcing:
		return fmt.Sprintf("kept: %s publishes %s, which asks for no quarantine or rejection", v.AuthorDomain, v.AuthorPolicy)
	default:
		return fmt.Sprintf("kept: %s publishes %s, but a DKIM signature aligned with it verified when the forwarder received the message", v.AuthorDomain, v.AuthorPolicy)
	}
}

// forwarderVerdict sums up what receivers see: DMARC for the From domain they evaluate, and
// whether a receiver honouring ARC would accept a DMARC failure on the chain's word.
func forwarderVerdict(v *ForwarderView, r *verify.Report) string {
	author := "fails"
	if authorPasses(v) {
		author = "passes"
	}
	arcWord := "and " + v.ARC
	switch {
	case v.Rewritten && v.SeenDMARCPass:
		return fmt.Sprintf("receivers see From %s: DMARC passes for it, so they accept whether or not they honour ARC (%s); without the rewrite DMARC %s for the author's domain %s", v.SeenDomain, v.ARC, author, v.AuthorDomain)
	case v.Rewritten:
		return fmt.Sprintf("receivers see From %s: DMARC fails for it (%s); %s", v.SeenDomain, v.ARC, arcAcceptance(v))
	case v.SeenDMARCPass:
		return fmt.Sprintf("receivers see the author's From %s: DMARC passes for it %s, so they accept whether or not they honour ARC", v.AuthorDomain, arcWord)
	default:
		res := "fails"
		if v.AuthorDMARC9989 != nil && v.AuthorDMARC9989.Result != "fail" {
			res = "gives " + v.AuthorDMARC9989.Result
		}
		return fmt.Sprintf("receivers see the author's From %s: DMARC %s for it (policy %s; a strict receiver would %s); %s", v.AuthorDomain, res, v.AuthorPolicy, r.Verdict.Action, arcAcceptance(v))
	}
}

// authorPasses: DMARC for the author's domain passes under both RFCs.
func authorPasses(v *ForwarderView) bool {
	return v.AuthorDMARC9989 != nil && v.AuthorDMARC7489 != nil && anyAligned(v.AuthorDMARC9989) && anyAligned(v.AuthorDMARC7489)
}

func arcAcceptance(v *ForwarderView) string {
	if v.ARCPass {
		return fmt.Sprintf("receivers that honour ARC would accept on the chain's word (%s); the others apply the policy", v.ARC)
	}
	return fmt.Sprintf("receivers that honour ARC cannot help: %s", v.ARC)
}

// arcEntry formats the chain as an Authentication-Results method entry (as arc.Result
// does).
func arcEntry(a verify.ARCResult) string {
	switch a.Result {
	case "pass":
		return fmt.Sprintf("arc=pass (i=%d) header.oldest-pass=%d", a.Instances, a.OldestPass)
	case "fail":
		return "arc=fail (" + a.Reason + ")"
	default:
		return "arc=none"
	}
}

// writeForwarder writes the forwarder section of one egress.
func writeForwarder(b *strings.Builder, v *ForwarderView) {
	b.WriteString("  forwarder:\n")
	if v.Author != "" {
		fmt.Fprintf(b, "    author:       %s (%s, from %s)\n", v.Author, v.AuthorDomain, v.AuthorField)
	}
	if v.RewriteWhy != "" {
		fmt.Fprintf(b, "    from rewrite: %s: %s\n", v.FromRewrite, v.RewriteWhy)
	}
	for _, d := range []*verify.DMARCResult{v.AuthorDMARC9989, v.AuthorDMARC7489} {
		if d != nil {
			fmt.Fprintf(b, "    author dmarc: dmarc=%s for %s without rewriting (%s)\n", d.Result, v.AuthorDomain, d.Explain())
		}
	}
	if v.Rewritten {
		res := "fail"
		if v.SeenDMARCPass {
			res = "pass"
		}
		fmt.Fprintf(b, "    seen dmarc:   receivers evaluate the list's domain %s instead: dmarc=%s (see the dmarc lines above)\n", v.SeenDomain, res)
	}
	fmt.Fprintf(b, "    arc:          %s\n", v.ARC)
	fmt.Fprintf(b, "    verdict:      %s\n", v.Verdict)
}
