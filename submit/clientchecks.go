package submit

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"sealgate/internal/authres"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/sign"
	"sealgate/verify"
)

// clientCheckTimeout bounds the DNS of the recorded checks of one message: SPF, iprev and
// the keys of the client's signatures. A check that runs out of time is recorded as
// temperror; the message is accepted all the same.
const clientCheckTimeout = 5 * time.Second

// clientChecks is what the "verify client signatures" step found.
type clientChecks struct {
	// dkim holds the result of each DKIM-Signature the client made, in header order.
	dkim []sign.Result
	// signed lists the header fields (lower-case) that a signature that verified covers.
	signed map[string]bool
	// results are the resinfos for our AAR (RFC 8601 §2.7): spf, iprev, dkim.
	results []string
}

// checkResolver is the resolver of the recorded checks: CheckResolver, else Resolver.
func (p *Pipeline) checkResolver() resolver.Resolver {
	if p.CheckResolver != nil {
		return p.CheckResolver
	}
	return p.Resolver
}

// verifyClient records how the client handed the message over, for identities with
// RecordChecks: the dkim= result of each DKIM-Signature it made (sign.VerifyHeader, on the
// body hashes computed while DATA streamed), and for a client network or certificate spf=
// of the envelope sender (or of HELO, for the null reverse-path; RFC 7208 §2.4) for the
// client's address, and iprev= of that address (RFC 8601 §3). They go into our AAR. The step
// never refuses: a failed check is recorded, not acted on.
func (p *Pipeline) verifyClient(ctx context.Context, m *message) error {
	if !m.Identity.RecordChecks || p.checkResolver() == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, clientCheckTimeout)
	defer cancel()
	cc := &clientChecks{signed: map[string]bool{}}
	r := p.checkResolver()
	ip, haveIP := netip.AddrFromSlice(m.ClientIP)
	if haveIP && (m.Identity.Kind == KindClientNetwork || m.Identity.Kind == KindClientCert) {
		ip = ip.Unmap()
		spf := verify.CheckSPF(ctx, r, ip, m.HELO, m.From)
		res := authres.Result{Method: "spf", Value: spf.Result}
		if m.From == "" {
			res.Props = []authres.Prop{{Type: "smtp", Property: "helo", Value: m.HELO}}
		} else {
			res.Props = []authres.Prop{{Type: "smtp", Property: "mailfrom", Value: m.From}}
		}
		cc.results = append(cc.results, res.String())
		rev := verify.CheckIPRev(ctx, r, ip)
		cc.results = append(cc.results, authres.Result{Method: "iprev", Value: rev.Result,
			Props: []authres.Prop{{Type: "policy", Property: "iprev", Value: ip.String()}}}.String())
		m.log.Debug("client checks", "spf", spf.Result, "spf_reason", spf.Reason, "iprev", rev.Result)
	}
	if m.hdr.Has("DKIM-Signature") {
		cc.dkim = sign.VerifyHeader(ctx, m.hdr, m.Bodies, &sign.VerifyOptions{Resolver: r, Now: p.Now})
		var sigs []dkimcore.Field
		for _, f := range m.hdr {
			if f.Is("DKIM-Signature") {
				sigs = append(sigs, f)
			}
		}
		for i, res := range cc.dkim {
			cc.results = append(cc.results, res.AuthResult().String())
			if res.Status != sign.StatusPass || i >= len(sigs) {
				continue
			}
			if sig, err := dkimcore.ParseSignature(sigs[i]); err == nil {
				for _, h := range sig.Headers {
					cc.signed[strings.ToLower(strings.TrimSpace(h))] = true
				}
			}
		}
		for _, res := range cc.dkim {
			m.log.Info("client DKIM signature", "d", res.Domain, "s", res.Selector, "result", string(res.Status), "reason", res.Reason)
		}
	}
	m.client = cc
	return nil
}

// mayAdd reports whether the trace step may add a field: not when a signature of the client
// that verified covers it, since it signed the field's absence (RFC 6376 §5.4) and adding
// it would break that signature.
func (m *message) mayAdd(field string) bool {
	return m.client == nil || !m.client.signed[strings.ToLower(field)]
}

// recordedResults are the resinfos of the recorded checks for our AAR.
func (m *message) recordedResults() []string {
	if m.client == nil {
		return nil
	}
	return m.client.results
}
