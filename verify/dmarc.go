package verify

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
)

// RFC names the DMARC specification an evaluation follows.
type RFC string

// The two DMARC specifications receivers run in 2026.
const (
	// RFC9989: DNS tree walk for the policy and organisational domain, psd=, np=, t=, no pct.
	RFC9989 RFC = "RFC 9989"
	// RFC7489: Public Suffix List for the organisational domain, pct=.
	RFC7489 RFC = "RFC 7489"
)

// MaxTreeWalkQueries bounds the DNS queries of one RFC 9989 tree walk: the name itself, then
// at most seven shorter names (a name of eight or more labels is first cut to its seven
// right-most labels).
const MaxTreeWalkQueries = 8

// DMARCRecord is a parsed _dmarc TXT record (RFC 7489 §6.3, RFC 9989). Tags a specification
// does not know are ignored, and so are tags with bad values (see Warnings), except p= under
// RFC 7489, which is required.
type DMARCRecord struct {
	Raw string `json:"raw"`
	// P, SP and NP are the policies (none, quarantine, reject); "" when absent. NP is read
	// under RFC 9989 only.
	P  string `json:"p,omitempty"`
	SP string `json:"sp,omitempty"`
	NP string `json:"np,omitempty"`
	// ADKIM and ASPF are "r" (relaxed, the default) or "s" (strict).
	ADKIM string `json:"adkim"`
	ASPF  string `json:"aspf"`
	// Pct is pct= (RFC 7489 only; 100 when absent).
	Pct int `json:"pct"`
	// Testing is t=y (RFC 9989 only): the policy is not to be applied.
	Testing bool `json:"testing,omitempty"`
	// PSD is psd= (RFC 9989 only): "y", "n" or "u" (the default).
	PSD string   `json:"psd"`
	RUA []string `json:"rua,omitempty"`
	// Warnings name the tags that were ignored and why.
	Warnings []string `json:"warnings,omitempty"`
}

// IsDMARCRecord reports whether a TXT string is a DMARC record: v=DMARC1 first, followed by
// white space, ';' or the end (RFC 7489 §6.6.3; the version is case-sensitive).
func IsDMARCRecord(txt string) bool {
	rest, ok := strings.CutPrefix(strings.TrimLeft(txt, " \t"), "v")
	if !ok {
		return false
	}
	rest = strings.TrimLeft(rest, " \t")
	rest, ok = strings.CutPrefix(rest, "=")
	if !ok {
		return false
	}
	rest, ok = strings.CutPrefix(strings.TrimLeft(rest, " \t"), "DMARC1")
	return ok && (rest == "" || rest[0] == ';' || rest[0] == ' ' || rest[0] == '\t')
}

// ParseDMARCRecord parses a DMARC record as spec reads it. It fails for a record that is not
// DMARC (v=DMARC1 not first) and for one without a usable policy: under RFC 7489 a p= that is
// missing or invalid, and under RFC 9989 an invalid one, unless the record has a valid rua=
// URI, in which case it acts as p=none (RFC 7489 §6.6.3). A missing p= is none under RFC 9989.
func ParseDMARCRecord(txt string, spec RFC) (*DMARCRecord, error) {
	if !IsDMARCRecord(txt) {
		return nil, fmt.Errorf("not a DMARC record: it must start with v=DMARC1")
	}
	rec := &DMARCRecord{Raw: txt, ADKIM: "r", ASPF: "r", Pct: 100, PSD: "u"}
	seen := map[string]bool{}
	badP := ""
	for i, part := range strings.Split(txt, ";") {
		part = strings.Trim(part, " \t\r\n")
		if i == 0 || part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		name = strings.ToLower(strings.Trim(name, " \t"))
		value = strings.Trim(value, " \t")
		if !ok || name == "" {
			rec.warn("%q is not a tag=value pair: ignored", part)
			continue
		}
		if seen[name] {
			rec.warn("%s= given twice: the second is ignored", name)
			continue
		}
		seen[name] = true
		lv := strings.ToLower(value)
		switch name {
		case "p":
			if isPolicy(lv) {
				rec.P = lv
			} else {
				badP = value
			}
		case "sp":
			if isPolicy(lv) {
				rec.SP = lv
			} else {
				rec.warn("sp=%s is not none, quarantine or reject: ignored", value)
			}
		case "np":
			if spec != RFC9989 {
				continue
			}
			if isPolicy(lv) {
				rec.NP = lv
			} else {
				rec.warn("np=%s is not none, quarantine or reject: ignored", value)
			}
		case "adkim", "aspf":
			if lv != "r" && lv != "s" {
				rec.warn("%s=%s is not r or s: relaxed is used", name, value)
				continue
			}
			if name == "adkim" {
				rec.ADKIM = lv
			} else {
				rec.ASPF = lv
			}
		case "pct":
			if spec != RFC7489 {
				continue
			}
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > 100 {
				rec.warn("pct=%s is not 0 to 100: 100 is used", value)
				continue
			}
			rec.Pct = n
		case "t":
			if spec != RFC9989 {
				continue
			}
			switch lv {
			case "y":
				rec.Testing = true
			case "n":
			default:
				rec.warn("t=%s is not y or n: n is used", value)
			}
		case "psd":
			if spec != RFC9989 {
				continue
			}
			if lv == "y" || lv == "n" || lv == "u" {
				rec.PSD = lv
			} else {
				rec.warn("psd=%s is not y, n or u: u is used", value)
			}
		case "rua":
			for u := range strings.SplitSeq(value, ",") {
				u = strings.Trim(u, " \t")
				if strings.HasPrefix(strings.ToLower(u), "mailto:") && strings.Contains(u, "@") {
					rec.RUA = append(rec.RUA, u)
				} else if u != "" {
					rec.warn("rua URI %q is not a mailto: address: ignored", u)
				}
			}
		}
	}
	switch {
	case rec.P != "":
	case badP == "" && spec == RFC9989:
		rec.P = "none"
	case len(rec.RUA) > 0:
		what := "missing"
		if badP != "" {
			what = fmt.Sprintf("p=%s is invalid", badP)
		}
		rec.warn("%s: acting as p=none because rua= is valid", what)
		rec.P = "none"
	case badP != "":
		return nil, fmt.Errorf("p=%s is not none, quarantine or reject, and there is no valid rua=", badP)
	default:
		return nil, fmt.Errorf("no p= tag, which %s requires (and no valid rua=)", spec)
	}
	return rec, nil
}

func isPolicy(v string) bool { return v == "none" || v == "quarantine" || v == "reject" }

func (r *DMARCRecord) warn(format string, a ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, a...))
}

// dmarcLookup is the outcome of one _dmarc query.
type dmarcLookup struct {
	Domain addr.Domain
	Record *DMARCRecord // nil when there is none usable
	// Note explains a record that was found but not used.
	Note string
	// Temp is a temporary DNS failure; Broken an unusable single record.
	Temp   error
	Broken bool
}

// dmarcDNS asks _dmarc records through one resolver, remembering answers so that the walks
// for the From, DKIM and SPF domains ask each name once.
type dmarcDNS struct {
	r       resolver.Resolver
	cache   map[string]*dmarcLookup
	queries int
}

func (d *dmarcDNS) lookup(ctx context.Context, dom addr.Domain, spec RFC) *dmarcLookup {
	key := string(spec) + " " + string(dom)
	if l, ok := d.cache[key]; ok {
		return l
	}
	if d.cache == nil {
		d.cache = map[string]*dmarcLookup{}
	}
	l := &dmarcLookup{Domain: dom}
	d.cache[key] = l
	d.queries++
	txts, err := d.r.LookupTXT(ctx, "_dmarc."+string(dom))
	switch {
	case resolver.IsNotFound(err):
		return l
	case err != nil:
		l.Temp = err
		return l
	}
	var recs []string
	for _, t := range txts {
		if IsDMARCRecord(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
	case 1:
		rec, err := ParseDMARCRecord(recs[0], spec)
		if err != nil {
			l.Note = fmt.Sprintf("_dmarc.%s: %v", dom, err)
			l.Broken = true
		} else {
			l.Record = rec
		}
	default:
		l.Note = fmt.Sprintf("_dmarc.%s has %d DMARC records: none is used", dom, len(recs))
		l.Broken = true
	}
	return l
}

// treeWalk is the RFC 9989 DNS tree walk from a domain: the lookups in order, longest name
// first.
func (d *dmarcDNS) treeWalk(ctx context.Context, dom addr.Domain) []*dmarcLookup {
	first := d.lookup(ctx, dom, RFC9989)
	steps := []*dmarcLookup{first}
	if first.Record != nil && first.Record.PSD == "n" {
		return steps
	}
	labels := strings.Split(string(dom), ".")
	if len(labels) >= MaxTreeWalkQueries {
		labels = labels[len(labels)-(MaxTreeWalkQueries-1):]
	} else {
		labels = labels[1:]
	}
	for len(labels) > 0 && len(steps) < MaxTreeWalkQueries {
		l := d.lookup(ctx, addr.Domain(strings.Join(labels, ".")), RFC9989)
		steps = append(steps, l)
		if l.Record != nil && (l.Record.PSD == "y" || l.Record.PSD == "n") {
			break
		}
		labels = labels[1:]
	}
	return steps
}

// orgDomain9989 returns the organisational domain of dom by the tree walk: the first name
// (longest first) whose record says psd=n; else the name one label below the first psd=y
// record (other than at dom itself); else the shortest name with a record; else dom itself.
// A temporary failure during the walk is returned as the error.
func (d *dmarcDNS) orgDomain9989(ctx context.Context, dom addr.Domain) (addr.Domain, []*dmarcLookup, error) {
	steps := d.treeWalk(ctx, dom)
	var temp error
	for _, s := range steps {
		if s.Temp != nil && temp == nil {
			temp = s.Temp
		}
	}
	for i, s := range steps {
		if s.Record == nil {
			continue
		}
		switch {
		case s.Record.PSD == "n":
			return s.Domain, steps, temp
		case s.Record.PSD == "y" && i > 0:
			return oneLabelBelow(dom, s.Domain), steps, temp
		}
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].Record != nil {
			return steps[i].Domain, steps, temp
		}
	}
	return dom, steps, temp
}

// oneLabelBelow returns the name of dom's ancestors (or dom) with one label more than
// parent.
func oneLabelBelow(dom, parent addr.Domain) addr.Domain {
	n := strings.Count(string(parent), ".") + 2
	labels := strings.Split(string(dom), ".")
	if n > len(labels) {
		return dom
	}
	return addr.Domain(strings.Join(labels[len(labels)-n:], "."))
}

// Alignment is how one authenticated identifier relates to the author domain (RFC 7489
// §3.1).
type Alignment struct {
	// Method is "dkim" or "spf".
	Method string `json:"method"`
	// Domain is the DKIM d= or the SPF domain.
	Domain string `json:"domain"`
	// Result is the identifier's own result (dkim or spf).
	Result string `json:"result"`
	// Strict: the domain equals the author domain. Relaxed: both have the same
	// organisational domain (as the RFC of the evaluation finds it); only worked out for an
	// identifier that passed.
	Strict  bool `json:"strict"`
	Relaxed bool `json:"relaxed"`
	// Mode is the record's adkim= or aspf= ("s" or "r"), or "" without a record.
	Mode string `json:"mode,omitempty"`
	// Aligned: the identifier passed and is aligned in Mode (relaxed without a record).
	Aligned bool `json:"aligned"`
}

// DMARCResult is the DMARC evaluation of a message by one specification.
type DMARCResult struct {
	RFC RFC `json:"rfc"`
	// Result is pass, fail, none, temperror or permerror (RFC 8601 §2.7.1).
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
	// AuthorDomain is the From domain.
	AuthorDomain string `json:"author_domain,omitempty"`
	// OrgDomain is the author domain's organisational domain.
	OrgDomain string `json:"org_domain,omitempty"`
	// PolicyDomain is where the record that applies was found; Record is that record.
	PolicyDomain string       `json:"policy_domain,omitempty"`
	Record       *DMARCRecord `json:"record,omitempty"`
	// PolicyTag is the tag whose policy applies: p, sp or np. Policy is its value.
	PolicyTag string `json:"policy_tag,omitempty"`
	Policy    string `json:"policy,omitempty"`
	// Disposition is what a receiver following this RFC does with the message: none,
	// quarantine or reject (a failure under t=y, or one sampled out by pct=, is softened).
	Disposition string `json:"disposition"`
	// DispositionNote explains a softened disposition.
	DispositionNote string      `json:"disposition_note,omitempty"`
	Alignments      []Alignment `json:"alignments,omitempty"`
	// Queries counts the _dmarc queries made for this evaluation (cached answers included).
	Queries int      `json:"queries"`
	Notes   []string `json:"notes,omitempty"`
}

// dmarcInput is what DMARC needs from the other checks.
type dmarcInput struct {
	authors   []addr.Domain // the From domains, deduplicated; empty for none
	authorErr string        // why there is no author domain
	exists    bool          // the author domain exists (RFC 9989 np=)
	dkim      []Alignment   // Method, Domain, Result filled
	spf       *Alignment    // nil without an SPF result
	dkimTemp  bool
	spfTemp   bool
}

// evaluateDMARC evaluates DMARC by spec. Several author domains: RFC 9989 does not apply
// DMARC; RFC 7489 §6.6.1 lets a receiver evaluate each and apply the strictest, which is done.
func evaluateDMARC(ctx context.Context, d *dmarcDNS, in dmarcInput, spec RFC) *DMARCResult {
	if len(in.authors) == 0 {
		return &DMARCResult{RFC: spec, Result: "permerror", Disposition: "none",
			Reason: "no author domain: " + in.authorErr}
	}
	if len(in.authors) > 1 {
		if spec == RFC9989 {
			return &DMARCResult{RFC: spec, Result: "none", Disposition: "none",
				Reason: fmt.Sprintf("the From field names %d domains (%s): DMARC does not apply to such a message", len(in.authors), joinDomains(in.authors))}
		}
		var worst *DMARCResult
		for _, a := range in.authors {
			one := in
			one.authors = []addr.Domain{a}
			r := evaluateOne(ctx, d, one, spec)
			if worst == nil || severity(r) > severity(worst) {
				worst = r
			}
		}
		worst.Notes = append(worst.Notes, fmt.Sprintf("the From field names %d domains (%s): the strictest result is applied (RFC 7489 §6.6.1)", len(in.authors), joinDomains(in.authors)))
		return worst
	}
	return evaluateOne(ctx, d, in, spec)
}

func joinDomains(ds []addr.Domain) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = string(d)
	}
	return strings.Join(s, ", ")
}

// severity orders results for "the strictest": by disposition, then failure over pass.
func severity(r *DMARCResult) int {
	n := map[string]int{"none": 0, "quarantine": 10, "reject": 20}[r.Disposition]
	if r.Result != "pass" && r.Result != "none" {
		n++
	}
	return n
}

func evaluateOne(ctx context.Context, d *dmarcDNS, in dmarcInput, spec RFC) *DMARCResult {
	author := in.authors[0]
	before := d.queries
	res := &DMARCResult{RFC: spec, AuthorDomain: string(author), Disposition: "none"}
	defer func() { res.Queries = d.queries - before }()

	var (
		policy *dmarcLookup
		org    addr.Domain
		tag    string
		temp   error
		orgOf  func(addr.Domain) addr.Domain
	)
	if spec == RFC9989 {
		var steps []*dmarcLookup
		org, steps, temp = d.orgDomain9989(ctx, author)
		orgOf = func(x addr.Domain) addr.Domain {
			o, _, _ := d.orgDomain9989(ctx, x)
			return o
		}
		for _, s := range steps {
			if s.Note != "" {
				res.Notes = append(res.Notes, s.Note)
			}
		}
		// The record at the author domain; else the organisational domain's; else a
		// psd=y record met on the walk.
		switch {
		case steps[0].Record != nil:
			policy, tag = steps[0], "p"
		default:
			for _, s := range steps {
				if s.Record != nil && s.Domain == org {
					policy = s
				}
			}
			if policy == nil {
				for _, s := range steps {
					if s.Record != nil && s.Record.PSD == "y" {
						policy = s
						break
					}
				}
			}
			if policy != nil {
				tag = "sp"
				if !in.exists {
					tag = "np"
				}
			}
		}
		if policy == nil && steps[0].Broken {
			res.Result, res.Reason = "permerror", steps[0].Note
			return res
		}
		if temp != nil {
			// A level of the walk went unanswered: the policy and the organisational
			// domain found without it may be the wrong ones.
			res.OrgDomain = string(org)
			res.Result, res.Reason = "temperror", "the DNS tree walk could not be completed: "+temp.Error()
			return res
		}
	} else {
		org = addr.OrgDomain(author)
		orgOf = addr.OrgDomain
		first := d.lookup(ctx, author, RFC7489)
		temp = first.Temp
		switch {
		case first.Record != nil:
			policy, tag = first, "p"
		case first.Broken:
			res.Result, res.Reason = "permerror", first.Note
			return res
		case first.Temp == nil && org != author:
			o := d.lookup(ctx, org, RFC7489)
			temp = o.Temp
			if o.Note != "" {
				res.Notes = append(res.Notes, o.Note)
			}
			if o.Record != nil {
				policy, tag = o, "sp"
			}
		}
	}
	res.OrgDomain = string(org)

	// Alignment (RFC 7489 §3.1; the same rules in RFC 9989).
	adkim, aspf := "r", "r"
	if policy != nil {
		adkim, aspf = policy.Record.ADKIM, policy.Record.ASPF
	}
	pass := false
	align := func(a Alignment, mode string) Alignment {
		dom, err := addr.ParseDomain(a.Domain)
		if err == nil {
			a.Strict = dom == author
			// Only a passing identifier can align; the others are not worth the lookups
			// of a tree walk each (a message may carry many signatures).
			a.Relaxed = a.Strict || a.Result == "pass" && orgOf(dom) == org
		}
		if policy != nil {
			a.Mode = mode
		}
		a.Aligned = a.Result == "pass" && (a.Strict || mode == "r" && a.Relaxed)
		pass = pass || a.Aligned
		return a
	}
	for _, a := range in.dkim {
		res.Alignments = append(res.Alignments, align(a, adkim))
	}
	if in.spf != nil {
		res.Alignments = append(res.Alignments, align(*in.spf, aspf))
	}

	if policy == nil {
		if temp != nil {
			res.Result, res.Reason = "temperror", "the DMARC record could not be fetched: "+temp.Error()
			return res
		}
		res.Result, res.Reason = "none", fmt.Sprintf("no DMARC record for %s or its organisational domain %s", author, org)
		return res
	}
	rec := policy.Record
	res.PolicyDomain, res.Record, res.PolicyTag = string(policy.Domain), rec, tag
	res.Policy = rec.P
	switch {
	case tag == "np" && rec.NP != "":
		res.Policy = rec.NP
	case (tag == "np" || tag == "sp") && rec.SP != "":
		res.Policy = rec.SP
		res.PolicyTag = "sp"
	default:
		res.PolicyTag = "p"
	}
	if pass {
		res.Result = "pass"
		for _, a := range res.Alignments {
			if a.Aligned {
				res.Reason = fmt.Sprintf("%s of %s is aligned (%s)", a.Method, a.Domain, a.ModeName())
				break
			}
		}
		return res
	}
	if in.dkimTemp || in.spfTemp {
		res.Result, res.Reason = "temperror", "nothing aligned passed and a DKIM or SPF lookup failed temporarily"
		return res
	}
	res.Result = "fail"
	res.Reason = failReason(res.Alignments, author)
	res.Disposition = res.Policy
	switch {
	case spec == RFC9989 && rec.Testing && res.Policy != "none":
		res.Disposition = "none"
		res.DispositionNote = fmt.Sprintf("t=y: the domain is testing, %s=%s is not applied", res.PolicyTag, res.Policy)
	case spec == RFC7489 && rec.Pct < 100 && res.Policy != "none":
		weaker := map[string]string{"reject": "quarantine", "quarantine": "none"}[res.Policy]
		res.DispositionNote = fmt.Sprintf("pct=%d: %s for %d%% of failing messages, %s for the rest", rec.Pct, res.Policy, rec.Pct, weaker)
		if rec.Pct == 0 {
			res.Disposition = weaker
		}
	}
	return res
}

// ModeName names the alignment an identifier achieved: strict or relaxed.
func (a Alignment) ModeName() string {
	if a.Strict {
		return "strict"
	}
	return "relaxed"
}

func failReason(as []Alignment, author addr.Domain) string {
	if len(as) == 0 {
		return "no DKIM signature and no SPF result"
	}
	var why []string
	for _, a := range as {
		switch {
		case a.Result != "pass":
			why = append(why, fmt.Sprintf("%s %s=%s", a.Domain, a.Method, a.Result))
		case a.Relaxed && a.Mode == "s":
			why = append(why, fmt.Sprintf("%s %s passes but is not %s (strict %s alignment)", a.Domain, a.Method, author, map[string]string{"dkim": "adkim", "spf": "aspf"}[a.Method]))
		default:
			why = append(why, fmt.Sprintf("%s %s passes but is not aligned with %s", a.Domain, a.Method, author))
		}
	}
	slices.Sort(why)
	return "nothing aligned passed: " + strings.Join(slices.Compact(why), "; ")
}
