package selftest

import (
	"sealgate/verify"
	"strings"
	"testing"
)

// The forwarder section's reasons and verdicts for the cases the dev configuration does not
// reach: kept under p=none, kept because the author's signature survived, always, and a
// failed ARC chain.
func TestForwarderWhyAndVerdict(t *testing.T) {
	none := &verify.DMARCResult{Result: "none"}
	reject := &verify.DMARCResult{Result: "fail", Record: &verify.DMARCRecord{}, PolicyTag: "p", Policy: "reject", PolicyDomain: "author.example"}
	failing := &verify.DMARCResult{Result: "fail", Alignments: []verify.Alignment{{Method: "dkim", Domain: "lists.example", Result: "pass"}}}
	for _, c := range []struct {
		name    string
		v       ForwarderView
		pol     *verify.DMARCResult
		why     string
		report  verify.Report
		verdict string
	}{
		{name: "p=none", v: ForwarderView{FromRewrite: "auto", AuthorDomain: "author.example", AuthorPolicy: "no DMARC record", ARC: "arc=pass (i=2) header.oldest-pass=1", ARCPass: true,
			AuthorDMARC9989: none, AuthorDMARC7489: none},
			pol: none, why: "kept: author.example publishes no DMARC record, which asks for no quarantine or rejection",
			verdict: "receivers see the author's From author.example: DMARC gives none for it (policy no DMARC record; a strict receiver would accept); receivers that honour ARC would accept on the chain's word (arc=pass (i=2) header.oldest-pass=1)"},
		{name: "signature survived", v: ForwarderView{FromRewrite: "auto", AuthorDomain: "author.example", AuthorPolicy: "p=reject at _dmarc.author.example", SeenDMARCPass: true, ARC: "arc=none"},
			pol: reject, why: "kept: author.example publishes p=reject at _dmarc.author.example, but a DKIM signature aligned with it verified",
			verdict: "receivers see the author's From author.example: DMARC passes for it and arc=none, so they accept whether or not they honour ARC"},
		{name: "always", v: ForwarderView{FromRewrite: "always", Rewritten: true, AuthorDomain: "author.example", AuthorPolicy: "no DMARC record", SeenDomain: "lists.example",
			ARC: "arc=fail (AMS 1 does not verify)", AuthorDMARC9989: failing, AuthorDMARC7489: failing},
			pol: none, why: "rewritten: from_rewrite=always rewrites every message",
			verdict: "receivers see From lists.example: DMARC fails for it (arc=fail (AMS 1 does not verify)); receivers that honour ARC cannot help: arc=fail"},
	} {
		c.report.Verdict.Action = "accept"
		if got := rewriteWhy(&c.v, c.pol); !strings.HasPrefix(got, c.why) {
			t.Errorf("%s: why %q, want it to start %q", c.name, got, c.why)
		}
		if got := forwarderVerdict(&c.v, &c.report); !strings.HasPrefix(got, c.verdict) {
			t.Errorf("%s: verdict %q, want it to start %q", c.name, got, c.verdict)
		}
	}
	if got := arcEntry(verify.ARCResult{Result: "pass", Instances: 3, OldestPass: 2}); got != "arc=pass (i=3) header.oldest-pass=2" {
		t.Errorf("arcEntry %q", got)
	}
}
