package submit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"strings"

	"github.com/emersion/go-smtp"

	"sealgate/arc"
	"sealgate/internal/addr"
	"sealgate/internal/authres"
	"sealgate/internal/config"
	"sealgate/internal/dkimcore"
	"sealgate/sign"
	"sealgate/verify"
)

// Forwarder is what makes an identity a mailing list or forwarder: it relays mail whose
// author is someone else, so its messages are verified before anything changes them,
// signed with its own domain (never the author's) and ARC-sealed over the validated chain
// (RFC 8617), so a receiver can still see how the original authenticated. The steps are
// forwarderSteps (pipeline.go).
type Forwarder struct {
	// SignAs is the domain its mail is DKIM-signed as (d=).
	SignAs addr.Domain
	// ListAddress is the list's address, shown by a rewritten From; zero for a plain
	// forwarder.
	ListAddress addr.Address
	// ListName is the list's display name in a rewritten From ("Alice via Team").
	ListName string
	// FromRewrite is config.FromRewriteOff, FromRewriteAuto or FromRewriteAlways.
	FromRewrite string
	// SRS rewrites the envelope sender into SignAs (Pipeline.SRS).
	SRS bool
	// TrustedAuthServIDs are the authserv-ids whose Authentication-Results the forwarder's
	// messages carry from its own verification; they are copied into our AAR.
	TrustedAuthServIDs []string
}

// NewForwarder returns the Forwarder of rules checked by config (Open), or nil for an
// identity that is not a forwarder.
func NewForwarder(r config.ForwarderRules) (*Forwarder, error) {
	if !r.IsForwarder() {
		return nil, nil
	}
	d, err := addr.ParseDomain(r.SignAs)
	if err != nil {
		return nil, fmt.Errorf("sign_as: %w", err)
	}
	f := &Forwarder{SignAs: d, FromRewrite: r.Rewrite(), SRS: r.SRS, ListName: r.ListName,
		TrustedAuthServIDs: r.TrustedAuthservIDs}
	if r.ListAddress != "" {
		if f.ListAddress, err = addr.ParseAddress(r.ListAddress); err != nil {
			return nil, fmt.Errorf("list_address: %w", err)
		}
	}
	if f.ListName == "" {
		f.ListName = f.ListAddress.Local
	}
	if f.FromRewrite != config.FromRewriteOff && f.ListAddress.IsZero() {
		return nil, errors.New("from_rewrite needs list_address")
	}
	return f, nil
}

// forwarded is what the verify step found in a forwarded message as it came.
type forwarded struct {
	dkim  []sign.Result
	chain *arc.Result
	// trusted are the resinfos of the trusted authserv-ids' Authentication-Results, each
	// marked with a comment naming who verified.
	trusted []string
	// rewritten is set when the From was rewritten.
	rewritten bool
}

// verifyForwarded checks every DKIM signature and the ARC chain of the message as the
// forwarder passed it on, before any step changes the header.
func (p *Pipeline) verifyForwarded(ctx context.Context, m *message) error {
	f := &forwarded{}
	m.fwd = f
	f.dkim = sign.VerifyHeader(ctx, m.hdr, m.Bodies, &sign.VerifyOptions{Resolver: p.Resolver, Now: p.Now})
	f.chain = arc.Validate(ctx, m.hdr, m.Bodies, arc.ValidateOptions{Resolver: p.Resolver})
	for _, id := range m.Identity.Forwarder.TrustedAuthServIDs {
		for _, r := range authres.ResultsFor(m.hdr, id) {
			method, _, _ := strings.Cut(r, "=")
			if strings.EqualFold(strings.TrimSpace(method), "arc") {
				continue // the chain's status in our AAR is our own finding
			}
			f.trusted = append(f.trusted, markVerifier(r, id))
		}
	}
	dkim := make([]string, len(f.dkim))
	for i, r := range f.dkim {
		dkim[i] = string(r.Status) + " d=" + string(r.Domain)
	}
	m.log.Info("forwarded message verified", "dkim", strings.Join(dkim, ", "), "arc", string(f.chain.Status),
		"arc_instances", f.chain.Instances, "arc_reason", f.chain.Reason, "trusted_results", len(f.trusted))
	if f.chain.Status == arc.Fail && f.chain.Temporary {
		// A key could not be fetched: the chain may well pass later, and a set sealed now
		// would say otherwise for good.
		m.log.Warn("message deferred: ARC chain could not be validated for now", "reason", string(ReasonSealingFailed), "err", f.chain.Reason)
		return errTemporary(ReasonSealingFailed, "the message's ARC chain could not be validated")
	}
	return nil
}

// markVerifier puts a comment naming the verifier after a resinfo's result ("dkim=pass
// (mx.lists.example) header.d=..."), so our AAR tells the forwarder's results from ours
// (RFC 8601 §2.2 allows comments there).
func markVerifier(resinfo, id string) string {
	eq := strings.IndexByte(resinfo, '=')
	if eq < 0 {
		return resinfo
	}
	end := eq + 1
	for end < len(resinfo) && !strings.ContainsRune(" \t(;", rune(resinfo[end])) {
		end++
	}
	return resinfo[:end] + " (" + strings.NewReplacer("(", "", ")", "", "\\", "").Replace(id) + ")" + resinfo[end:]
}

// rewriteFrom applies from_rewrite: the author's address moves to X-Original-From (and to
// Reply-To, unless the message has one), and From shows the list's address with the
// author's name, so the message passes DMARC for the list's domain (RFC 7489 §3.1) instead
// of failing it for the author's.
func (p *Pipeline) rewriteFrom(ctx context.Context, m *message) error {
	fw := m.Identity.Forwarder
	if fw.FromRewrite == config.FromRewriteOff {
		return nil
	}
	var from dkimcore.Field
	n := 0
	for _, f := range m.hdr {
		if f.Is("From") {
			from = f
			n++
		}
	}
	var mbs []addr.Mailbox
	var err error
	if n == 1 {
		mbs, err = addr.ParseHeaderMailboxes(from.Value())
	}
	if n != 1 || err != nil || len(mbs) == 0 {
		detail := fmt.Sprintf("the message has %d From fields", n)
		if err != nil {
			detail = "the From field cannot be parsed: " + err.Error()
		}
		m.log.Warn("message refused: From cannot be rewritten", "reason", string(ReasonFromDomainUnparsable), "detail", detail)
		return refusal(ReasonFromDomainUnparsable, 550, smtp.EnhancedCode{5, 6, 0},
			"From rewriting needs one From field with a mailbox: "+detail)
	}
	if fw.FromRewrite == config.FromRewriteAuto {
		why := p.rewriteNeeded(ctx, m, mbs)
		if why == "" {
			m.log.Info("From kept", "from_rewrite", fw.FromRewrite)
			return nil
		}
		m.log.Info("From rewritten", "from_rewrite", fw.FromRewrite, "why", why)
	} else {
		m.log.Info("From rewritten", "from_rewrite", fw.FromRewrite)
	}

	name := mbs[0].Name
	if name == "" {
		name = mbs[0].Addr.Local + " at " + mbs[0].Addr.Domain.Unicode()
	}
	orig := from.Value()
	hdr := make(dkimcore.Header, 0, len(m.hdr)+2)
	for _, f := range m.hdr {
		if f.Is("From") {
			f = dkimcore.Field("From: " + formatMailbox(name+" via "+fw.ListName, fw.ListAddress) + "\r\n")
		}
		hdr = append(hdr, f)
	}
	if !hdr.Has("Reply-To") {
		hdr = append(hdr, dkimcore.Field("Reply-To:"+orig+"\r\n"))
	}
	m.hdr = append(hdr, dkimcore.Field("X-Original-From:"+orig+"\r\n"))
	m.fromDomains = nil // From changed
	m.fwd.rewritten = true
	return nil
}

// rewriteNeeded says why from_rewrite auto rewrites, or "": an author domain publishes
// p=quarantine or p=reject (RFC 9989) and no DKIM signature aligned with it verified, so the
// message would fail DMARC at the receiver.
func (p *Pipeline) rewriteNeeded(ctx context.Context, m *message, mbs []addr.Mailbox) string {
	var seen []addr.Domain
	for _, mb := range mbs {
		d := mb.Addr.Domain
		if d == "" || containsDomain(seen, d) {
			continue
		}
		seen = append(seen, d)
		if alignedPass(m.fwd.dkim, d) {
			continue
		}
		if p.Resolver == nil {
			return fmt.Sprintf("no resolver to look up the DMARC policy of %s", d)
		}
		pol := verify.DMARCPolicy(ctx, p.Resolver, d)
		switch {
		case pol.Result == "temperror":
			// Better a rewritten From than a message the author's domain may reject.
			return fmt.Sprintf("the DMARC policy of %s could not be fetched (%s)", d, pol.Reason)
		case pol.Result == "fail" && (pol.Disposition == "quarantine" || pol.Disposition == "reject"):
			return fmt.Sprintf("%s publishes %s=%s and no DKIM signature aligned with it verifies", d, pol.PolicyTag, pol.Policy)
		}
	}
	return ""
}

func containsDomain(ds []addr.Domain, d addr.Domain) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

// alignedPass reports whether a verified signature aligns with d in relaxed mode (RFC 7489
// §3.1.1): the same organisational domain.
func alignedPass(results []sign.Result, d addr.Domain) bool {
	for _, r := range results {
		if r.Status == sign.StatusPass && (r.Domain == d || addr.OrgDomain(r.Domain) == addr.OrgDomain(d)) {
			return true
		}
	}
	return false
}

// formatMailbox writes a mailbox with a display name: a quoted-string for ASCII, RFC 2047
// encoded-words otherwise (RFC 5322 §3.4).
func formatMailbox(name string, a addr.Address) string {
	name = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, name)
	ascii := true
	for _, r := range name {
		ascii = ascii && r < 0x80
	}
	if !ascii {
		return mime.QEncoding.Encode("utf-8", name) + " <" + a.String() + ">"
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `" <` + a.String() + ">"
}

// rewriteSender rewrites a plain forwarder's envelope sender by SRS into its own domain, so
// SPF (RFC 7208) checks the forwarder's domain and a bounce can be mapped back (`sealgate
// srs reverse`). The null sender stays null.
func (p *Pipeline) rewriteSender(_ context.Context, m *message) error {
	fw := m.Identity.Forwarder
	if !fw.SRS || m.From == "" {
		return nil
	}
	if p.SRS == nil {
		m.log.Error("SRS is on for this forwarder but no srs secret is loaded", "reason", string(ReasonSigningFailed))
		return errTemporary(ReasonSigningFailed, "sender rewriting is not configured")
	}
	rewritten, err := p.SRS.Forward(m.From, string(fw.SignAs))
	if err != nil {
		m.log.Warn("message refused: envelope sender cannot be rewritten", "reason", string(ReasonSenderSyntax), "from", m.From, "err", err)
		return refusal(ReasonSenderSyntax, 550, smtp.EnhancedCode{5, 1, 7}, "The envelope sender cannot be rewritten by SRS: "+err.Error())
	}
	a, err := addr.ParseAddress(rewritten)
	if err != nil || !m.Identity.Permits(a) {
		m.log.Warn("message refused: SRS address not permitted", "reason", string(ReasonSenderNotPermitted), "srs", rewritten)
		return errNotPermitted(550, "MAIL FROM (after SRS)", a, m.Identity)
	}
	m.log.Info("envelope sender rewritten by SRS", "from", m.From, "srs", rewritten)
	m.From = rewritten
	return nil
}

// signAsForwarder adds one signature per key of the forwarder's own domain.
func (p *Pipeline) signAsForwarder(_ context.Context, m *message) error {
	d := m.Identity.Forwarder.SignAs
	dk, ok := p.KeyRing.Lookup(d)
	if !ok || len(dk.Keys) == 0 {
		m.log.Warn("message refused: no DKIM keys for the forwarder's domain", "reason", string(ReasonNoDKIMKeys), "domain", d)
		return errNotConfigured(d)
	}
	o := dk.Options()
	o.Time, o.Expiration = m.now, p.DKIMExpiration
	fields, err := sign.Sign(m.hdr, m.Bodies, o)
	if err != nil {
		m.log.Error("DKIM signing failed", "reason", string(ReasonSigningFailed), "domain", dk.Domain, "err", err)
		return errTemporary(ReasonSigningFailed, "signing failed")
	}
	m.hdr = append(fields, m.hdr...)
	m.signatures = len(fields)
	m.dkim = signatureIDs(o)
	p.metrics().Signed(dk.Domain.String())
	return nil
}

// sealForwarded seals with the chain status the verify step found, our results and the
// trusted ones in the AAR. A failed chain gets no new set (RFC 8617 §5.1.2 lets a sealer
// stop there; a cv=fail set would only repeat the failure under our name).
func (p *Pipeline) sealForwarded(ctx context.Context, m *message) error {
	if p.ARC == nil || !m.Identity.Seal {
		return nil
	}
	f := m.fwd
	if f.chain.Status == arc.Fail {
		m.log.Warn("not ARC-sealed: the incoming ARC chain failed validation, and no set is added to a failed chain",
			"arc_reason", f.chain.Reason, "arc_instances", f.chain.Instances)
		return nil
	}
	results := []string{p.authResult(m.Submission)}
	for _, r := range f.dkim {
		results = append(results, r.AuthResult().String())
	}
	results = append(results, f.chain.String())
	results = append(results, f.trusted...)
	chain, sealed, err := p.arcSeal(ctx, m, results, f.chain, slog.LevelWarn)
	if sealed {
		m.log.Info("sealed forwarded message", "cv", chain.Status, "instance", chain.Instances+1,
			"oldest_pass", chain.OldestPass, "from_rewritten", f.rewritten)
	}
	return err
}
