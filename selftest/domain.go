package selftest

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sealgate/verify"
	"strings"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
	"sealgate/keys"
)

// DomainOptions configures Domain.
type DomainOptions struct {
	// Resolver answers every DNS question (a zone file of planned records works too).
	Resolver resolver.Resolver
	// Keys are the DKIM keys configured for the domain (their d= is LocalKey.Domain).
	Keys []LocalKey
	// SigningDomain is the d= our signatures for the domain carry; "" means the domain.
	SigningDomain string
	// ReturnPathDomain is the MAIL FROM domain of its mail; "" means the domain.
	ReturnPathDomain string
	// Egress are the addresses and names mail leaves from.
	Egress []Egress
	// DNSBLZones are the blocklists the egress addresses are looked up in.
	DNSBLZones []string
	// Timeout bounds each DNS-based check; 0 means DefaultTimeout.
	Timeout time.Duration
}

// DomainReport is the outcome of Domain.
type DomainReport struct {
	Domain   string    `json:"domain"`
	Findings []Finding `json:"findings"`
	// Records are the zone-file lines to publish for whatever is missing or wrong.
	Records []string `json:"records,omitempty"`
	// Ready: no finding failed, and none is unknown.
	Ready bool `json:"ready"`
	// SPFTimedOut: no finding failed, but SPF could not be checked (its DNS timed out): the
	// report says "could not check SPF (DNS timed out)" rather than NOT READY.
	SPFTimedOut bool `json:"spf_timed_out,omitempty"`
}

// Domain checks the DNS of a domain sealgate sends for, as receivers will read it: every
// DKIM key published and matching, SPF passing for every egress within the limits of RFC
// 7208 §4.6.4, a DMARC record both RFCs parse with reports and alignment fitting how we
// sign, an MX for the return-path domain, HELO names and reverse DNS of the egress, and the
// egress addresses off the blocklists.
func Domain(ctx context.Context, domain string, o *DomainOptions) (*DomainReport, error) {
	if o == nil || o.Resolver == nil {
		return nil, errors.New("selftest: DomainOptions.Resolver is required")
	}
	d, err := addr.ParseDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("selftest: domain %q: %w", domain, err)
	}
	c := &domainCheck{o: o, dom: string(d), rep: &DomainReport{Domain: string(d)}}
	c.rp = strings.ToLower(strings.TrimSuffix(o.ReturnPathDomain, "."))
	if c.rp == "" {
		c.rp = c.dom
	}
	c.signing = strings.ToLower(strings.TrimSuffix(o.SigningDomain, "."))
	if c.signing == "" {
		c.signing = c.dom
	}
	c.dkim(ctx)
	c.spf(ctx)
	c.dmarc(ctx)
	c.mx(ctx)
	c.egress(ctx)
	c.rep.Ready = true
	failed := false
	for _, f := range c.rep.Findings {
		failed = failed || f.Status == StatusFail
		c.rep.SPFTimedOut = c.rep.SPFTimedOut || f.Status == StatusUnknown && strings.HasPrefix(f.Check, "spf")
		c.rep.Ready = c.rep.Ready && f.Status != StatusFail && f.Status != StatusUnknown
		if f.Record != "" && f.Status != StatusPass {
			c.rep.Records = append(c.rep.Records, f.Record)
		}
	}
	c.rep.SPFTimedOut = c.rep.SPFTimedOut && !failed
	return c.rep, nil
}

type domainCheck struct {
	o            *DomainOptions
	dom, rp      string
	signing      string
	rep          *DomainReport
	spfPublished bool
}

func (c *domainCheck) add(f Finding) { c.rep.Findings = append(c.rep.Findings, f) }

func (c *domainCheck) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	t := c.o.Timeout
	if t <= 0 {
		t = verify.DefaultTimeout
	}
	return context.WithTimeout(ctx, t)
}

func (c *domainCheck) dkim(ctx context.Context) {
	if len(c.o.Keys) == 0 {
		c.add(Finding{Check: "dkim", Status: StatusFail, Result: "no keys",
			Reason: fmt.Sprintf("no DKIM key is configured for %s", c.dom),
			Fix:    fmt.Sprintf("add %s to domains with a key (sealgate keys generate), then publish its record", c.dom)})
		return
	}
	for _, k := range c.o.Keys {
		tctx, cancel := c.ctx(ctx)
		res, err := keys.Check(tctx, c.o.Resolver, k.Signer, k.Selector, k.Domain)
		cancel()
		f := Finding{Check: "dkim", Status: StatusPass, Result: "published", Reason: keys.RecordName(k.Selector, k.Domain)}
		if res != nil {
			f.Result, f.Reason = string(res.Status), res.Detail
		}
		if rk, ok := k.Signer.Public().(*rsa.PublicKey); ok {
			bits := rk.N.BitLen()
			f.Reason += fmt.Sprintf(" (RSA %d bits)", bits)
			if bits < 2048 && f.Status == StatusPass {
				f.Status, f.Fix = StatusWarn, "RFC 8301 §3.2 asks for RSA keys of at least 2048 bits: rotate to a new selector with sealgate keys generate"
			}
		} else {
			f.Reason += " (Ed25519)"
		}
		switch {
		case err != nil:
			f.Status, f.Result, f.Reason = StatusFail, "dns-failure", err.Error()
		case res.Status == keys.StatusTesting:
			f.Status, f.Fix = StatusWarn, "remove t=y: receivers treat failing signatures under t=y as absent"
			f.Record = keys.DNSRecord(k.Signer.Public(), k.Selector, k.Domain)
		case !res.OK():
			f.Status, f.Fix = StatusFail, "publish this record"
			f.Record = keys.DNSRecord(k.Signer.Public(), k.Selector, k.Domain)
		}
		c.add(f)
	}
}

func (c *domainCheck) spf(ctx context.Context) {
	tctx, cancel := c.ctx(ctx)
	rec, err := spfRecordOf(tctx, c.o.Resolver, c.rp)
	cancel()
	switch {
	case err != nil && isTimeout(err):
		c.add(Finding{Check: "spf", Status: StatusUnknown, Result: "temperror", Reason: fmt.Sprintf("the SPF record of %s could not be read: DNS timed out: %v", c.rp, err),
			Fix: fmt.Sprintf("the DNS of %s did not answer in time: check its name servers, then run the selftest again", c.rp)})
		return
	case err != nil:
		c.add(Finding{Check: "spf", Status: StatusFail, Result: "temperror", Reason: fmt.Sprintf("the SPF record of %s could not be read: %v", c.rp, err)})
		return
	case rec == "":
		if len(c.o.Egress) == 0 {
			c.add(Finding{Check: "spf", Status: StatusFail, Result: "none", Reason: fmt.Sprintf("%s has no SPF record", c.rp),
				Fix: "publish an SPF record naming the addresses mail leaves from"})
			return
		}
	default:
		c.spfPublished = true
		f := Finding{Check: "spf-syntax", Status: StatusPass, Result: "ok", Reason: rec}
		if msg := verify.CheckSPFSyntax(rec); msg != "" {
			f.Status, f.Result, f.Reason = StatusFail, "permerror", fmt.Sprintf("%s: %s", rec, msg)
			f.Fix = fmt.Sprintf("repair the SPF record of %s", c.rp)
		}
		c.add(f)
	}
	var missing []netip.Addr
	for _, eg := range c.o.Egress {
		tctx, cancel := c.ctx(ctx)
		r := verify.CheckSPF(tctx, c.o.Resolver, eg.IP, eg.HELO, "postmaster@"+c.rp)
		cancel()
		f := Finding{Check: "spf", Status: StatusPass, Result: r.Result, Reason: r.Explain(eg.IP)}
		switch r.Result {
		case "pass":
			if r.Lookups > verify.MaxSPFLookups-2 {
				f.Status, f.Fix = StatusWarn, fmt.Sprintf("%d of %d DNS lookups: one more include breaks SPF; flatten an include", r.Lookups, verify.MaxSPFLookups)
			}
		case "permerror":
			f.Status, f.Fix = StatusFail, fmt.Sprintf("repair the SPF record of %s (at most %d lookups and %d void lookups)", c.rp, verify.MaxSPFLookups, verify.MaxSPFVoidLookups)
		case "temperror":
			f.Status = StatusFail
			if r.TimedOut {
				f.Status = StatusUnknown
				f.Fix = fmt.Sprintf("the DNS of %s did not answer in time: check its name servers, then run the selftest again", c.rp)
			}
		default:
			f.Status = StatusFail
			missing = append(missing, eg.IP)
			tctx, cancel := c.ctx(ctx)
			f.Fix, _ = spfFix(tctx, c.o.Resolver, c.rp, eg.IP)
			cancel()
		}
		c.add(f)
	}
	if len(missing) > 0 {
		// One record that adds every missing address.
		tctx, cancel := c.ctx(ctx)
		defer cancel()
		cur, _ := spfRecordOf(tctx, c.o.Resolver, c.rp)
		if cur == "" {
			cur = "v=spf1 -all"
		}
		for _, ip := range missing {
			cur = insertSPF(cur, ipMechanism(ip))
		}
		c.rep.Findings[len(c.rep.Findings)-1].Record = zoneTXT(c.rp, cur)
	}
}

// insertSPF adds mech before the record's all mechanism or redirect=, or at its end.
func insertSPF(rec, mech string) string {
	terms := strings.Fields(rec)
	at := len(terms)
	for i, t := range terms {
		lt := strings.ToLower(strings.TrimLeft(t, "+-~?"))
		if lt == "all" || strings.HasPrefix(lt, "redirect=") {
			at = i
			break
		}
	}
	return strings.Join(append(terms[:at], append([]string{mech}, terms[at:]...)...), " ")
}

// dmarcRecords returns the DMARC records at _dmarc.<dom>.
func (c *domainCheck) dmarcRecords(ctx context.Context, dom string) ([]string, error) {
	tctx, cancel := c.ctx(ctx)
	defer cancel()
	txts, err := c.o.Resolver.LookupTXT(tctx, "_dmarc."+dom)
	if err != nil && !resolver.IsNotFound(err) {
		return nil, err
	}
	var recs []string
	for _, t := range txts {
		if verify.IsDMARCRecord(t) {
			recs = append(recs, t)
		}
	}
	return recs, nil
}

func (c *domainCheck) dmarc(ctx context.Context) {
	name := "_dmarc." + c.dom
	recs, err := c.dmarcRecords(ctx, c.dom)
	if err != nil {
		c.add(Finding{Check: "dmarc", Status: StatusFail, Result: "temperror", Reason: err.Error()})
		return
	}
	sub := false // the record is the organisational domain's, applying with sp=
	if org := string(addr.OrgDomain(addr.Domain(c.dom))); len(recs) == 0 && org != c.dom {
		if orgRecs, err := c.dmarcRecords(ctx, org); err == nil && len(orgRecs) > 0 {
			recs, name, sub = orgRecs, "_dmarc."+org, true
			c.add(Finding{Check: "dmarc", Status: StatusPass, Result: "inherited",
				Reason: fmt.Sprintf("no record at _dmarc.%s: the organisational domain's record at %s applies (its sp=, else p=)", c.dom, name)})
		}
	}
	switch {
	case len(recs) == 0:
		c.add(Finding{Check: "dmarc", Status: StatusFail, Result: "none", Reason: fmt.Sprintf("no DMARC record at %s or at its organisational domain", name),
			Fix: "publish a DMARC record: start at p=none with reports, move to p=reject when they show only your mail", Record: dmarcStarter(c.dom)})
		return
	case len(recs) > 1:
		c.add(Finding{Check: "dmarc", Status: StatusFail, Result: "permerror", Reason: fmt.Sprintf("%d DMARC records at %s: receivers use none (RFC 7489 §6.6.3)", len(recs), name),
			Fix: "keep exactly one"})
		return
	}
	raw := recs[0]
	var rec *verify.DMARCRecord
	for _, spec := range []verify.RFC{verify.RFC9989, verify.RFC7489} {
		r, err := verify.ParseDMARCRecord(raw, spec)
		f := Finding{Check: "dmarc", Status: StatusPass, Result: "parses", Reason: fmt.Sprintf("%s: %s", spec, raw)}
		switch {
		case err != nil:
			f.Status, f.Result, f.Reason = StatusFail, "permerror", fmt.Sprintf("%s: %v", spec, err)
			f.Fix, f.Record = "publish a record with p=", dmarcStarter(c.dom)
		case len(r.Warnings) > 0:
			f.Status, f.Reason = StatusWarn, f.Reason+": "+strings.Join(r.Warnings, "; ")
		}
		c.add(f)
		if r != nil && spec == verify.RFC7489 {
			rec = r
		}
	}
	if rec == nil {
		return
	}
	policy, tag := rec.P, "p"
	if sub && rec.SP != "" {
		policy, tag = rec.SP, "sp"
	}
	if policy == "none" {
		c.add(Finding{Check: "dmarc-policy", Status: StatusWarn, Result: tag + "=none",
			Reason: tag + "=none asks receivers to deliver mail that fails DMARC: it only monitors",
			Fix:    "move to quarantine, then reject, once the reports show only your own mail"})
	}
	if !sub && rec.SP == "none" && rec.P != "none" {
		c.add(Finding{Check: "dmarc-policy", Status: StatusWarn, Result: "sp=none", Reason: "sp=none leaves the subdomains unprotected"})
	}
	if rec.ADKIM == "s" && c.signing != c.dom {
		c.add(Finding{Check: "dmarc-alignment", Status: StatusFail, Result: "adkim=s",
			Reason: fmt.Sprintf("adkim=s needs d=%s, but the relay signs with d=%s", c.dom, c.signing),
			Fix:    fmt.Sprintf("set adkim=r, or configure keys for %s itself", c.dom)})
	}
	if rec.ASPF == "s" && c.rp != c.dom {
		c.add(Finding{Check: "dmarc-alignment", Status: StatusWarn, Result: "aspf=s",
			Reason: fmt.Sprintf("aspf=s: SPF of the return path %s never aligns with %s; DMARC rests on DKIM alone", c.rp, c.dom)})
	}
	if len(rec.RUA) == 0 {
		c.add(Finding{Check: "dmarc-rua", Status: StatusWarn, Result: "no rua",
			Reason: "no rua=: you get no aggregate reports, so you cannot see who sends as the domain",
			Fix:    "add rua=mailto:dmarc-reports@" + c.dom})
	}
	for _, uri := range rec.RUA {
		c.rua(ctx, uri)
	}
}

// rua checks that a report address in another domain accepts reports for ours (RFC 7489
// §7.1): a v=DMARC1 record at <domain>._report._dmarc.<rua domain>.
func (c *domainCheck) rua(ctx context.Context, uri string) {
	u := strings.TrimSpace(uri)
	if i := strings.IndexByte(u, '!'); i >= 0 {
		u = u[:i] // a size limit
	}
	mb, ok := strings.CutPrefix(strings.ToLower(u), "mailto:")
	at := strings.LastIndexByte(mb, '@')
	if !ok || at < 0 {
		c.add(Finding{Check: "dmarc-rua", Status: StatusWarn, Result: "not mailto", Reason: uri + ": only mailto: report addresses are checked"})
		return
	}
	rd := mb[at+1:]
	if addr.OrgDomain(addr.Domain(rd)) == addr.OrgDomain(addr.Domain(c.dom)) {
		c.add(Finding{Check: "dmarc-rua", Status: StatusPass, Result: "ok", Reason: uri})
		return
	}
	name := c.dom + "._report._dmarc." + rd
	tctx, cancel := c.ctx(ctx)
	txts, err := c.o.Resolver.LookupTXT(tctx, name)
	cancel()
	found := false
	for _, t := range txts {
		found = found || verify.IsDMARCRecord(t)
	}
	f := Finding{Check: "dmarc-rua", Status: StatusPass, Result: "authorised", Reason: fmt.Sprintf("%s: %s publishes %s", uri, rd, name)}
	switch {
	case err != nil && !resolver.IsNotFound(err):
		f.Status, f.Result, f.Reason = StatusWarn, "temperror", err.Error()
	case !found:
		f.Status, f.Result = StatusFail, "not authorised"
		f.Reason = fmt.Sprintf("%s is in another domain, which does not publish %s: receivers send it no reports (RFC 7489 §7.1)", uri, name)
		f.Fix = fmt.Sprintf("have %s publish this record", rd)
		f.Record = zoneTXT(name, "v=DMARC1")
	}
	c.add(f)
}

func (c *domainCheck) mx(ctx context.Context) {
	tctx, cancel := c.ctx(ctx)
	mxs, err := c.o.Resolver.LookupMX(tctx, c.rp)
	cancel()
	f := Finding{Check: "mx", Status: StatusPass, Result: "ok"}
	switch {
	case resolver.IsNotFound(err):
		f.Status, f.Result = StatusFail, "none"
		f.Reason = fmt.Sprintf("the return-path domain %s has no MX record: bounces cannot come back, and receivers may refuse the sender", c.rp)
		f.Fix = fmt.Sprintf("publish an MX record for %s naming the host that takes its bounces", c.rp)
	case err != nil:
		f.Status, f.Result, f.Reason = StatusFail, "temperror", err.Error()
	case len(mxs) == 1 && mxs[0].Host == ".":
		f.Status, f.Result = StatusWarn, "null MX"
		f.Reason = fmt.Sprintf("%s publishes a null MX (RFC 7505): bounces are not wanted, and RFC 7505 §4.2 lets receivers refuse it as a sender", c.rp)
	default:
		var hosts []string
		for _, m := range mxs {
			hosts = append(hosts, strings.TrimSuffix(m.Host, "."))
		}
		f.Reason = fmt.Sprintf("%s: MX %s", c.rp, strings.Join(hosts, ", "))
	}
	c.add(f)
}

func (c *domainCheck) egress(ctx context.Context) {
	if len(c.o.Egress) == 0 {
		c.add(Finding{Check: "egress", Status: StatusWarn, Result: "none", Reason: "no egress address known: SPF, HELO and DNSBLs were not checked"})
	}
	for _, eg := range c.o.Egress {
		tctx, cancel := c.ctx(ctx)
		h := verify.CheckHELO(tctx, c.o.Resolver, eg.IP, eg.HELO)
		cancel()
		f := Finding{Check: "helo", Status: StatusPass, Result: h.Result, Reason: h.Reason}
		if h.Result != "pass" {
			f.Status, f.Fix, f.Record = StatusFail, fmt.Sprintf("make %s resolve to %s", eg.HELO, eg.IP), addressRecord(eg.HELO, eg.IP)
		}
		c.add(f)
		tctx, cancel = c.ctx(ctx)
		ir := verify.CheckIPRev(tctx, c.o.Resolver, eg.IP)
		cancel()
		f = Finding{Check: "iprev", Status: StatusPass, Result: ir.Result, Reason: ir.Reason}
		if ir.Result != "pass" {
			f.Status = StatusFail
			f.Fix = fmt.Sprintf("have the owner of %s (your provider) publish a PTR record naming %s", eg.IP, eg.HELO)
			f.Record = reverseName(eg.IP) + ". IN PTR " + strings.TrimSuffix(eg.HELO, ".") + "."
		}
		c.add(f)
		for _, z := range c.o.DNSBLZones {
			tctx, cancel := c.ctx(ctx)
			r := verify.CheckDNSBL(tctx, c.o.Resolver, eg.IP, z)
			cancel()
			f := Finding{Check: "dnsbl", Status: StatusPass, Result: r.Result, Reason: fmt.Sprintf("%s in %s", eg.IP, z)}
			switch r.Result {
			case "listed":
				f.Status, f.Reason = StatusFail, f.Reason+": "+strings.Join(r.Codes, ", ")+" "+r.Text
				f.Fix = fmt.Sprintf("ask %s to delist %s after finding why it was listed", z, eg.IP)
			case "not listed":
			default:
				f.Status, f.Reason = StatusWarn, f.Reason+": "+r.Reason
			}
			c.add(f)
		}
	}
}

// WriteText writes the report for people, then the zone-file lines to publish.
func (d *DomainReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "domain %s\n", d.Domain)
	writeFindings(&b, d.Findings)
	if len(d.Records) > 0 {
		b.WriteString("\n; publish (zone-file lines):\n")
		for _, r := range d.Records {
			b.WriteString(r + "\n")
		}
	}
	switch {
	case d.Ready:
		b.WriteString("\nREADY\n")
	case d.SPFTimedOut:
		b.WriteString("\nNOT CHECKED: " + spfTimedOutVerdict + "\n")
	default:
		b.WriteString("\nNOT READY\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
