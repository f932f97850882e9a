package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"sealgate/arc"
	"sealgate/internal/addr"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/sign"
)

// DefaultTimeout bounds each DNS-based check (an SPF evaluation, a DMARC discovery, iprev,
// one DNSBL) when Options.Timeout is zero: the 20 seconds RFC 7208 §4.6.4 suggests for SPF.
const DefaultTimeout = 20 * time.Second

// Options configures Verify. Resolver is required.
type Options struct {
	// Resolver answers every DNS question.
	Resolver resolver.Resolver
	// AuthServID names the verifier in the Authentication-Results field (RFC 8601 §2.5);
	// "" means "localhost".
	AuthServID string
	// DNSBLZones are the DNS blocklists the client IP is looked up in (zen.spamhaus.org...);
	// none by default.
	DNSBLZones []string
	// Callback turns callback verification of the return path on. It connects to the
	// return-path domain's mail servers on CallbackPort ("" means 25) and says EHLO
	// CallbackHELO ("" means AuthServID), bounded by CallbackTimeout (0 means
	// DefaultCallbackTimeout).
	Callback        bool
	CallbackPort    string
	CallbackHELO    string
	CallbackTimeout time.Duration
	// Timeout bounds each DNS-based check; 0 means DefaultTimeout. A check that runs out of
	// time gives temperror.
	Timeout time.Duration
	// MinRSABits is the smallest RSA key DKIM and ARC accept (see sign.VerifyOptions).
	MinRSABits int
	// Now is the clock for DKIM x= expiry; nil means time.Now.
	Now func() time.Time
}

// Envelope is what the receiving MTA learnt before DATA. Empty fields were not given: the
// checks that need them report "not checked".
type Envelope struct {
	// IP is the connecting client's address; the zero Addr when not known.
	IP netip.Addr
	// HELO is the EHLO/HELO argument: a domain name or an address literal.
	HELO string
	// MailFrom is the MAIL FROM reverse-path without angle brackets; "<>" is the null
	// reverse-path, "" means none was given.
	MailFrom string
	// Submitter is the SUBMITTER parameter of MAIL FROM (RFC 4405), xtext-decoded.
	Submitter string
}

// Stage is the point of an SMTP session where a receiver runs a check.
type Stage string

// The stages, in session order.
const (
	StageConnect Stage = "connect"
	StageHELO    Stage = "helo"
	StageMail    Stage = "mail"
	StageRcpt    Stage = "rcpt"
	StageData    Stage = "data"
)

// Check is one explained line of a report.
type Check struct {
	Stage Stage `json:"stage"`
	// Name is the check: dnsbl, iprev, helo, spf, spf-helo, callback, submitter, dkim, arc,
	// from, from-domain, dmarc, pra.
	Name string `json:"name"`
	// Result is the check's result in its own terms (pass, fail, listed, not checked...).
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Verdict is what a receiver following the staged flow does with the message.
type Verdict struct {
	// Action is accept, tempfail, reject or quarantine.
	Action string `json:"action"`
	// Stage is where the receiver acts: mail for a MAIL FROM it cannot parse, rcpt for the
	// other refusals before DATA, data after it.
	Stage Stage `json:"stage"`
	// Reply is the SMTP reply a refusal would be given, such as "550 5.7.23 ...".
	Reply  string `json:"reply,omitempty"`
	Reason string `json:"reason"`
}

// DKIMResult is one DKIM-Signature's verification (see sign.Result).
type DKIMResult struct {
	Result     string `json:"result"`
	Reason     string `json:"reason,omitempty"`
	Domain     string `json:"domain,omitempty"`
	Selector   string `json:"selector,omitempty"`
	Algorithm  string `json:"algorithm,omitempty"`
	Identifier string `json:"identifier,omitempty"`
	B          string `json:"b,omitempty"`
	KeyBits    int    `json:"key_bits,omitempty"`
	Testing    bool   `json:"testing,omitempty"`

	res sign.Result
}

// ARCResult is the ARC chain validation (see arc.Result).
type ARCResult struct {
	Result     string `json:"result"`
	Reason     string `json:"reason,omitempty"`
	Instances  int    `json:"instances"`
	OldestPass int    `json:"oldest_pass"`
}

// FromResult describes the author (RFC 5322 From) of the message.
type FromResult struct {
	// Fields is the number of From fields (RFC 5322 §3.6 requires exactly one).
	Fields int `json:"fields"`
	// Domains are the distinct domains of its mailboxes.
	Domains []string `json:"domains,omitempty"`
	// Problem says why there is no single author domain.
	Problem string `json:"problem,omitempty"`
	// Exists is whether the (single) author domain exists (MX, A or AAAA, no NXDOMAIN);
	// nil when not known.
	Exists       *bool  `json:"exists,omitempty"`
	ExistsDetail string `json:"exists_detail,omitempty"`
}

// SubmitterResult is the early DMARC look at the SUBMITTER domain at RCPT time and, after
// DATA, the comparison with the header's PRA.
type SubmitterResult struct {
	Submitter string `json:"submitter"`
	Domain    string `json:"domain,omitempty"`
	// DMARC is the RFC 9989 evaluation of the PRA domain with only SPF known.
	DMARC *DMARCResult `json:"dmarc,omitempty"`
	// SPFAligned: SPF of the return path passes and is aligned with the PRA domain, so DMARC
	// passes whatever DKIM says.
	SPFAligned bool   `json:"spf_aligned"`
	Advice     string `json:"advice"`
	// HeaderPRA is the PRA of the header (RFC 4407); MatchesHeader whether it is Submitter.
	HeaderPRA     string `json:"header_pra,omitempty"`
	MatchesHeader bool   `json:"matches_header"`
}

// Report is the whole evaluation. Pointers are nil for checks not run.
type Report struct {
	AuthServID string `json:"authserv_id"`
	IP         string `json:"ip,omitempty"`
	HELO       string `json:"helo,omitempty"`
	MailFrom   string `json:"mail_from,omitempty"`
	Submitter  string `json:"submitter,omitempty"`

	DNSBL       []DNSBLResult    `json:"dnsbl,omitempty"`
	IPRev       *IPRevResult     `json:"iprev,omitempty"`
	HELOCheck   *HELOResult      `json:"helo_check,omitempty"`
	SPF         *SPFResult       `json:"spf,omitempty"`
	SPFHELO     *SPFResult       `json:"spf_helo,omitempty"`
	Callback    *CallbackResult  `json:"callback,omitempty"`
	SubmitterAt *SubmitterResult `json:"submitter_check,omitempty"`
	DKIM        []DKIMResult     `json:"dkim"`
	ARC         ARCResult        `json:"arc"`
	From        FromResult       `json:"from"`
	// DMARC9989 and DMARC7489 are DMARC by each specification; Disagreement says how they
	// differ, or is empty.
	DMARC9989    *DMARCResult `json:"dmarc_rfc9989"`
	DMARC7489    *DMARCResult `json:"dmarc_rfc7489"`
	Disagreement string       `json:"disagreement,omitempty"`

	// AuthenticationResults is the folded Authentication-Results field, CRLF-terminated.
	AuthenticationResults string  `json:"authentication_results"`
	Checks                []Check `json:"checks"`
	Verdict               Verdict `json:"verdict"`
}

// Verify reads a message (CRLF or bare-LF line ends) from msg and evaluates it as a strict
// receiver would have, given the envelope env. The error is for input that cannot be used
// (an unreadable message, a MAIL FROM without "@", an unparsable SUBMITTER, no resolver; a
// MAIL FROM with a malformed domain or no local part is evaluated, RFC 7208 §4.3); failed checks
// are results, not errors.
func Verify(ctx context.Context, env Envelope, msg io.Reader, o *Options) (*Report, error) {
	if o == nil || o.Resolver == nil {
		return nil, errors.New("verify: Options.Resolver is required")
	}
	hdr, body, err := sign.ReadMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("verify: read message: %w", err)
	}
	v := &verification{o: o, env: env, rep: &Report{AuthServID: o.AuthServID}, dmarc: dmarcDNS{r: o.Resolver}}
	if v.rep.AuthServID == "" {
		v.rep.AuthServID = "localhost"
	}
	if err := v.parseEnvelope(); err != nil {
		return nil, err
	}
	v.connect(ctx)
	v.helo(ctx)
	v.mail(ctx)
	v.rcpt(ctx)
	v.data(ctx, hdr, body)
	v.rep.Verdict = v.verdict()
	v.rep.AuthenticationResults = string(v.authResults())
	return v.rep, nil
}

// verification carries one Verify call.
type verification struct {
	o        *Options
	env      Envelope
	rep      *Report
	haveIP   bool
	ip       netip.Addr
	rp       addr.Path // the reverse-path when MailFrom was given
	haveRP   bool
	rpRaw    string // MailFrom when it is not a valid reverse-path, with rpErr saying why
	rpErr    error
	pra      addr.Address
	havePRA  bool
	heloName addr.Domain // the HELO argument when it is a domain name
	dmarc    dmarcDNS
}

func (v *verification) check(stage Stage, name, result, format string, a ...any) {
	v.rep.Checks = append(v.rep.Checks, Check{Stage: stage, Name: name, Result: result, Detail: fmt.Sprintf(format, a...)})
}

func (v *verification) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	t := v.o.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return context.WithTimeout(ctx, t)
}

func (v *verification) parseEnvelope() error {
	e := v.env
	if e.IP.IsValid() {
		v.haveIP, v.ip = true, e.IP.Unmap()
		v.rep.IP = v.ip.String()
	}
	v.rep.HELO = e.HELO
	if e.HELO != "" {
		if d, err := addr.ParseDomain(e.HELO); err == nil {
			v.heloName = d
		}
	}
	if e.MailFrom != "" {
		raw := strings.TrimSuffix(strings.TrimPrefix(e.MailFrom, "<"), ">")
		p, err := addr.ParsePath(raw)
		if err != nil && strings.Contains(raw, "@") {
			// A mailbox with a malformed domain or no local part is evaluated all the
			// same: SPF's initial processing says what it gives (RFC 7208 §4.3), and a
			// receiver would refuse it at MAIL (the verdict says so).
			v.rpRaw, v.rpErr = raw, err
			v.rep.MailFrom = "<" + raw + ">"
			return nil
		}
		if err != nil {
			return fmt.Errorf("verify: MAIL FROM: %w", err)
		}
		v.rp, v.haveRP = p, true
		v.rep.MailFrom = "<" + p.String() + ">"
	}
	if e.Submitter != "" {
		a, err := addr.ParseAddress(e.Submitter)
		if err != nil || a.Domain == "" {
			return fmt.Errorf("verify: SUBMITTER %q is not a mailbox with a domain (RFC 4405 §4.2)", e.Submitter)
		}
		v.pra, v.havePRA = a, true
		v.rep.Submitter = a.String()
	}
	return nil
}

const noIP = "not checked: no client IP"

// connect runs the checks a receiver makes when the client connects: DNSBLs and iprev.
func (v *verification) connect(ctx context.Context) {
	if !v.haveIP {
		v.check(StageConnect, "dnsbl", "not checked", "no client IP")
		v.check(StageConnect, "iprev", "not checked", "no client IP")
		return
	}
	if len(v.o.DNSBLZones) == 0 {
		v.check(StageConnect, "dnsbl", "not checked", "no DNSBL zone configured")
	}
	for _, z := range v.o.DNSBLZones {
		tctx, cancel := v.timeout(ctx)
		r := CheckDNSBL(tctx, v.o.Resolver, v.ip, z)
		cancel()
		v.rep.DNSBL = append(v.rep.DNSBL, r)
		detail := fmt.Sprintf("%s in %s", v.ip, z)
		switch {
		case r.Result == "listed" && r.Text != "":
			detail += fmt.Sprintf(": %s (%s)", strings.Join(r.Codes, ", "), r.Text)
		case r.Result == "listed":
			detail += ": " + strings.Join(r.Codes, ", ")
		case r.Reason != "":
			detail += ": " + r.Reason
		}
		v.check(StageConnect, "dnsbl", r.Result, "%s", detail)
	}
	tctx, cancel := v.timeout(ctx)
	v.rep.IPRev = CheckIPRev(tctx, v.o.Resolver, v.ip)
	cancel()
	v.check(StageConnect, "iprev", v.rep.IPRev.Result, "%s", v.rep.IPRev.Reason)
}

// helo checks the HELO/EHLO argument. RFC 5321 §4.1.4 forbids refusing mail only because
// it cannot be confirmed, so its result is reported, not acted on.
func (v *verification) helo(ctx context.Context) {
	if v.env.HELO == "" {
		v.check(StageHELO, "helo", "not checked", "no HELO name")
		return
	}
	if v.heloName != "" && strings.EqualFold(string(v.heloName), strings.TrimSuffix(v.rep.AuthServID, ".")) {
		v.rep.HELOCheck = &HELOResult{Result: "fail", Reason: fmt.Sprintf("the client gives our own name %s", v.heloName)}
		v.check(StageHELO, "helo", "fail", "%s", v.rep.HELOCheck.Reason)
		return
	}
	tctx, cancel := v.timeout(ctx)
	v.rep.HELOCheck = CheckHELO(tctx, v.o.Resolver, v.ip, v.env.HELO)
	cancel()
	v.check(StageHELO, "helo", v.rep.HELOCheck.Result, "%s", v.rep.HELOCheck.Reason)
}

// mail runs SPF for the MAIL FROM identity and the HELO identity (RFC 7208 §2.3, §2.4),
// both through CheckSPF, so its initial processing (RFC 7208 §4.3) decides what an address
// literal or a malformed domain gives.
func (v *verification) mail(ctx context.Context) {
	switch {
	case !v.haveRP && v.rpErr == nil:
		v.check(StageMail, "spf", "not checked", "no MAIL FROM")
	case !v.haveIP:
		v.check(StageMail, "spf", "not checked", "no client IP")
	case v.rp.Null:
		v.check(StageMail, "spf", "not checked", "null reverse-path: the HELO identity stands for it (RFC 7208 §2.4)")
	default:
		sender := v.rpRaw
		if v.haveRP {
			sender = v.rp.Addr.String()
		}
		tctx, cancel := v.timeout(ctx)
		v.rep.SPF = CheckSPF(tctx, v.o.Resolver, v.ip, v.env.HELO, sender)
		cancel()
		v.check(StageMail, "spf", v.rep.SPF.Result, "%s", v.rep.SPF.Explain(v.ip))
	}
	switch {
	case v.env.HELO == "":
		v.check(StageMail, "spf-helo", "not checked", "no HELO name")
	case !v.haveIP:
		v.check(StageMail, "spf-helo", "not checked", "no client IP")
	default:
		helo := v.env.HELO
		if v.heloName != "" {
			helo = string(v.heloName)
		}
		tctx, cancel := v.timeout(ctx)
		v.rep.SPFHELO = CheckSPF(tctx, v.o.Resolver, v.ip, helo, "")
		cancel()
		v.check(StageMail, "spf-helo", v.rep.SPFHELO.Result, "%s", v.rep.SPFHELO.Explain(v.ip))
	}
}

// spfIdentity is the SPF result DMARC aligns: the MAIL FROM one, or the HELO one for the
// null reverse-path (RFC 7489 §3.1.2).
func (v *verification) spfIdentity() *SPFResult {
	if v.haveRP && v.rp.Null {
		return v.rep.SPFHELO
	}
	return v.rep.SPF
}

// spfAlignment is the SPF identifier DMARC aligns, and whether it failed temporarily; nil
// when there is no SPF result or its domain is not a domain name (an address literal, a
// malformed MAIL FROM domain: RFC 7208 §4.3 gave none).
func (v *verification) spfAlignment() (*Alignment, bool) {
	s := v.spfIdentity()
	if s == nil {
		return nil, false
	}
	if _, err := addr.ParseDomain(s.Domain); err != nil {
		return nil, false
	}
	return &Alignment{Method: "spf", Domain: s.Domain, Result: s.Result}, s.Result == "temperror"
}

// rcpt runs the checks made once the recipient is known: callback verification and the
// early DMARC look at the SUBMITTER domain.
func (v *verification) rcpt(ctx context.Context) {
	switch {
	case !v.o.Callback:
		v.check(StageRcpt, "callback", "not checked", "callback verification is off")
	case v.rpErr != nil:
		v.check(StageRcpt, "callback", "not checked", "the MAIL FROM is not a valid address: %v", v.rpErr)
	case !v.haveRP:
		v.check(StageRcpt, "callback", "not checked", "no MAIL FROM")
	case v.rp.Null:
		v.check(StageRcpt, "callback", "not checked", "null reverse-path: nothing to call back")
	default:
		v.rep.Callback = callback(ctx, v.o, v.rp.Addr)
		v.check(StageRcpt, "callback", v.rep.Callback.Result, "%s", v.rep.Callback.Reason)
	}
	if !v.havePRA {
		return
	}
	sr := &SubmitterResult{Submitter: v.pra.String(), Domain: string(v.pra.Domain)}
	v.rep.SubmitterAt = sr
	in := dmarcInput{authors: []addr.Domain{v.pra.Domain}, exists: true}
	in.spf, in.spfTemp = v.spfAlignment()
	tctx, cancel := v.timeout(ctx)
	sr.DMARC = evaluateDMARC(tctx, &v.dmarc, in, RFC9989)
	cancel()
	for _, a := range sr.DMARC.Alignments {
		sr.SPFAligned = sr.SPFAligned || a.Aligned
	}
	switch {
	case sr.SPFAligned:
		sr.Advice = fmt.Sprintf("SPF of the return path passes aligned with %s: DMARC will pass whatever DKIM says", sr.Domain)
	case sr.DMARC.Record != nil:
		sr.Advice = fmt.Sprintf("%s has a DMARC policy (%s=%s at _dmarc.%s) and SPF does not give it an aligned pass: DMARC can still pass through DKIM at DATA, so a receiver should wait for DATA rather than refuse an SPF failure at RCPT", sr.Domain, sr.DMARC.PolicyTag, sr.DMARC.Policy, sr.DMARC.PolicyDomain)
	case sr.DMARC.Result == "temperror":
		sr.Advice = fmt.Sprintf("the DMARC record of %s could not be fetched: %s", sr.Domain, sr.DMARC.Reason)
	default:
		sr.Advice = fmt.Sprintf("%s publishes no DMARC record: SPF's own result decides at RCPT", sr.Domain)
	}
	res := "no policy"
	switch {
	case sr.SPFAligned:
		res = "spf aligned"
	case sr.DMARC.Record != nil:
		res = "wait for data"
	}
	v.check(StageRcpt, "submitter", res, "SUBMITTER=%s: %s", sr.Submitter, sr.Advice)
}

// data runs the checks on the message: DKIM, ARC, the From domain, DMARC both ways, and the
// PRA against SUBMITTER.
func (v *verification) data(ctx context.Context, hdr dkimcore.Header, body []byte) {
	bodies := dkimcore.HashBody(body, append(sign.BodyCanonicalizations(hdr), arc.RequiredCanonicalizations(hdr)...)...)
	tctx, cancel := v.timeout(ctx)
	results := sign.VerifyHeader(tctx, hdr, bodies, &sign.VerifyOptions{Resolver: v.o.Resolver, MinRSABits: v.o.MinRSABits, Now: v.o.Now})
	cancel()
	v.rep.DKIM = []DKIMResult{}
	if len(results) == 0 {
		v.check(StageData, "dkim", "none", "no DKIM-Signature")
	}
	for _, r := range results {
		d := DKIMResult{Result: string(r.Status), Reason: r.Reason, Domain: string(r.Domain), Selector: r.Selector,
			Algorithm: r.Algorithm, Identifier: r.Identifier, B: r.B, KeyBits: r.KeyBits, Testing: r.Testing, res: r}
		v.rep.DKIM = append(v.rep.DKIM, d)
		detail := fmt.Sprintf("d=%s s=%s %s", d.Domain, d.Selector, d.Algorithm)
		if d.KeyBits > 0 {
			detail += fmt.Sprintf(", %d-bit key", d.KeyBits)
		}
		if d.Testing {
			detail += ", t=y: the domain is testing DKIM"
		}
		if d.Reason != "" {
			detail += ": " + d.Reason
		}
		v.check(StageData, "dkim", d.Result, "%s", detail)
	}

	tctx, cancel = v.timeout(ctx)
	ar := arc.Validate(tctx, hdr, bodies, arc.ValidateOptions{Resolver: v.o.Resolver, MinRSABits: v.o.MinRSABits})
	cancel()
	v.rep.ARC = ARCResult{Result: string(ar.Status), Reason: ar.Reason, Instances: ar.Instances, OldestPass: ar.OldestPass}
	switch ar.Status {
	case arc.Pass:
		v.check(StageData, "arc", "pass", "%d set(s), oldest passing instance %d", ar.Instances, ar.OldestPass)
	case arc.Fail:
		v.check(StageData, "arc", "fail", "%s", ar.Reason)
	default:
		v.check(StageData, "arc", "none", "no ARC set")
	}

	in := v.fromDomains(ctx, hdr)
	for _, d := range v.rep.DKIM {
		if d.Domain != "" {
			in.dkim = append(in.dkim, Alignment{Method: "dkim", Domain: d.Domain, Result: d.Result})
		}
		in.dkimTemp = in.dkimTemp || d.Result == "temperror"
	}
	in.spf, in.spfTemp = v.spfAlignment()
	tctx, cancel = v.timeout(ctx)
	v.rep.DMARC9989 = evaluateDMARC(tctx, &v.dmarc, in, RFC9989)
	cancel()
	tctx, cancel = v.timeout(ctx)
	v.rep.DMARC7489 = evaluateDMARC(tctx, &v.dmarc, in, RFC7489)
	cancel()
	for _, d := range []*DMARCResult{v.rep.DMARC9989, v.rep.DMARC7489} {
		v.check(StageData, "dmarc", d.Result, "%s", d.Explain())
	}
	v.rep.Disagreement = disagreement(v.rep.DMARC9989, v.rep.DMARC7489)
	if v.rep.Disagreement != "" {
		v.check(StageData, "dmarc", "disagree", "%s", v.rep.Disagreement)
	}

	if v.havePRA {
		sr := v.rep.SubmitterAt
		if p, field, ok := addr.PRA(hdr); ok {
			sr.HeaderPRA = p.String()
			sr.MatchesHeader = p.Equal(v.pra)
			if sr.MatchesHeader {
				v.check(StageData, "pra", "pass", "the header's PRA (%s) is the SUBMITTER %s", field, sr.HeaderPRA)
			} else {
				v.check(StageData, "pra", "fail", "the header's PRA is %s (%s), not the SUBMITTER %s: a receiver using SUBMITTER treats this as a failure (RFC 4405 §4.2)", sr.HeaderPRA, field, sr.Submitter)
			}
		} else {
			v.check(StageData, "pra", "fail", "the header has no PRA (RFC 4407 §2): no single valid mailbox in %s", field)
		}
	}
}

// fromDomains reads the author domains (RFC 5322 §3.6.2) and checks that a single author
// domain exists.
func (v *verification) fromDomains(ctx context.Context, hdr dkimcore.Header) dmarcInput {
	var in dmarcInput
	f := &v.rep.From
	values := hdr.Values("From")
	f.Fields = len(values)
	seen := map[addr.Domain]bool{}
	for _, val := range values {
		mbs, err := addr.ParseHeaderMailboxes(val)
		if err != nil {
			f.Problem = fmt.Sprintf("the From field has no valid mailbox: %v", err)
			continue
		}
		for _, m := range mbs {
			if m.Addr.Domain == "" {
				f.Problem = fmt.Sprintf("the From address %s has no domain", m.Addr)
				continue
			}
			if !seen[m.Addr.Domain] {
				seen[m.Addr.Domain] = true
				in.authors = append(in.authors, m.Addr.Domain)
				f.Domains = append(f.Domains, string(m.Addr.Domain))
			}
		}
	}
	switch {
	case f.Fields == 0:
		f.Problem = "no From field (RFC 5322 §3.6 requires exactly one)"
	case f.Fields > 1:
		f.Problem = fmt.Sprintf("%d From fields (RFC 5322 §3.6 allows exactly one)", f.Fields)
	}
	if f.Problem != "" {
		// No single author: DMARC has no domain to evaluate (RFC 7489 §6.6.1).
		in.authors = nil
	}
	in.authorErr = f.Problem
	switch {
	case f.Problem != "":
		v.check(StageData, "from", "invalid", "%s", f.Problem)
	case len(in.authors) > 1:
		v.check(StageData, "from", "several", "one From field with %d domains: %s", len(in.authors), strings.Join(f.Domains, ", "))
	default:
		v.check(StageData, "from", "ok", "author domain %s", in.authors[0])
	}
	in.exists = true
	if len(in.authors) == 1 {
		tctx, cancel := v.timeout(ctx)
		exists, detail, err := DomainExists(tctx, v.o.Resolver, in.authors[0])
		cancel()
		switch {
		case err != nil:
			f.ExistsDetail = err.Error()
			v.check(StageData, "from-domain", "temperror", "existence of %s could not be checked: %v", in.authors[0], err)
		default:
			f.Exists, f.ExistsDetail, in.exists = &exists, detail, exists
			res := "exists"
			if !exists {
				res = "does not exist"
			}
			v.check(StageData, "from-domain", res, "%s", detail)
		}
	}
	return in
}

// verdict is what a receiver following the staged flow does: the first refusal at RCPT
// (DNSBL listing, SPF fail unless SUBMITTER shows DMARC may still pass, undeliverable return
// path, temporary SPF failure), else the stricter DMARC disposition at DATA, else a
// malformed author.
func (v *verification) verdict() Verdict {
	for _, r := range v.rep.DNSBL {
		if r.Result == "listed" {
			return Verdict{Action: "reject", Stage: StageRcpt,
				Reply:  fmt.Sprintf("554 5.7.1 Service unavailable; client host [%s] blocked using %s", v.ip, r.Zone),
				Reason: fmt.Sprintf("%s is listed in %s", v.ip, r.Zone)}
		}
	}
	if v.rpErr != nil {
		return Verdict{Action: "reject", Stage: StageMail,
			Reply:  fmt.Sprintf("501 5.1.7 Bad sender address syntax: <%s>", v.rpRaw),
			Reason: fmt.Sprintf("the MAIL FROM is not a valid reverse-path (RFC 5321 §4.1.2): %v", v.rpErr)}
	}
	// The MAIL FROM identity, or for the null reverse-path the HELO one (RFC 7208 §2.4).
	if s := v.spfIdentity(); s != nil {
		waits := v.rep.SubmitterAt != nil && v.rep.SubmitterAt.DMARC != nil && v.rep.SubmitterAt.DMARC.Record != nil
		switch {
		case s.Result == "fail" && !waits:
			return Verdict{Action: "reject", Stage: StageRcpt,
				Reply:  fmt.Sprintf("550 5.7.23 SPF of %s does not permit %s", s.Domain, v.ip),
				Reason: fmt.Sprintf("SPF fail for %s (RFC 7208 §8.4)", s.Domain)}
		case s.Result == "temperror" && s.TimedOut:
			return Verdict{Action: "tempfail", Stage: StageRcpt,
				Reply:  fmt.Sprintf("451 4.4.3 SPF of %s could not be evaluated (DNS timed out): try again later", s.Domain),
				Reason: "SPF temperror: a DNS query timed out (RFC 7208 §8.6)"}
		case s.Result == "temperror":
			return Verdict{Action: "tempfail", Stage: StageRcpt,
				Reply:  fmt.Sprintf("451 4.4.3 SPF of %s could not be evaluated: try again later", s.Domain),
				Reason: "SPF temperror (RFC 7208 §8.6)"}
		}
	}
	if c := v.rep.Callback; c != nil && c.Result == "fail" {
		return Verdict{Action: "reject", Stage: StageRcpt,
			Reply:  fmt.Sprintf("550 5.1.7 Sender address rejected: <%s> is undeliverable", v.rp.Addr),
			Reason: "callback verification: " + c.Reason}
	}
	f := v.rep.From
	if f.Fields != 1 {
		return Verdict{Action: "reject", Stage: StageData, Reply: "550 5.7.1 " + f.Problem, Reason: f.Problem}
	}
	if f.Problem != "" {
		return Verdict{Action: "reject", Stage: StageData, Reply: "550 5.7.1 " + f.Problem, Reason: f.Problem + ": DMARC cannot be evaluated"}
	}
	worst := v.rep.DMARC9989
	if rank(v.rep.DMARC7489.Disposition) > rank(worst.Disposition) {
		worst = v.rep.DMARC7489
	}
	switch worst.Disposition {
	case "reject":
		return Verdict{Action: "reject", Stage: StageData,
			Reply:  fmt.Sprintf("550 5.7.1 Email rejected per DMARC policy for %s", worst.AuthorDomain),
			Reason: fmt.Sprintf("DMARC fails (%s) and %s=reject applies (%s)", worst.Reason, worst.PolicyTag, worst.RFC)}
	case "quarantine":
		return Verdict{Action: "quarantine", Stage: StageData,
			Reason: fmt.Sprintf("DMARC fails (%s) and %s=quarantine applies (%s)", worst.Reason, worst.PolicyTag, worst.RFC)}
	}
	for _, d := range []*DMARCResult{v.rep.DMARC9989, v.rep.DMARC7489} {
		if d.Result == "temperror" {
			// A receiver may defer or go on (RFC 7489 §6.6.3); a strict one defers.
			return Verdict{Action: "tempfail", Stage: StageData,
				Reply:  fmt.Sprintf("451 4.7.5 DMARC of %s could not be evaluated: try again later", d.AuthorDomain),
				Reason: fmt.Sprintf("DMARC temperror (%s): %s", d.RFC, d.Reason)}
		}
	}
	if f.Exists != nil && !*f.Exists {
		return Verdict{Action: "reject", Stage: StageData,
			Reply:  fmt.Sprintf("550 5.7.1 the From domain %s does not exist", f.Domains[0]),
			Reason: f.ExistsDetail}
	}
	reason := "no check asks for a refusal"
	if worst.Result == "pass" {
		reason = "DMARC passes: " + worst.Reason
	}
	return Verdict{Action: "accept", Stage: StageData, Reason: reason}
}

func rank(disposition string) int {
	return map[string]int{"quarantine": 1, "reject": 2}[disposition]
}
