package dmarcreport

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
)

// SummaryOptions say what Summarize covers.
type SummaryOptions struct {
	Domain addr.Domain
	// Since and Until bound the reports by their date range (Until zero: now).
	Since, Until time.Time
	// SendLogDir is the send log's directory (DIR/sendlog).
	SendLogDir string
	// SendLogDirs are further send logs, of the other nodes sending for the domain
	// (README "Running several nodes"): every node's mail is ours.
	SendLogDirs []string
	// Resolver answers PTR lookups of foreign sources and checks our selectors are
	// published; nil skips both.
	Resolver resolver.Resolver
}

// Summary is what the reports say about a domain's mail, per source.
type Summary struct {
	Domain   string    `json:"domain"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Reports  int       `json:"reports"`
	Messages int64     `json:"messages"`
	Pass     int64     `json:"pass"`
	Fail     int64     `json:"fail"`
	// Policy is the record the most recent report found published.
	Policy  PolicyPublished `json:"policy"`
	Sources []Source        `json:"sources"`
}

// Source is one sending address as the reports saw it.
type Source struct {
	IP string `json:"ip"`
	// Ours is set when the send log has mail from this IP with the rows' header From
	// domain in the reports' date ranges.
	Ours bool `json:"ours"`
	// Kind is "ours", "forwarder" (passes DKIM or ARC but not SPF: mail relayed by
	// someone else) or "unknown-sender".
	Kind string `json:"kind"`
	// PTR is the source's reverse DNS name (sources not ours), "" when none.
	PTR          string           `json:"ptr,omitempty"`
	Messages     int64            `json:"messages"`
	DKIMAligned  int64            `json:"dkim_aligned"`
	SPFAligned   int64            `json:"spf_aligned"`
	Pass         int64            `json:"pass"`
	Fail         int64            `json:"fail"`
	DKIMPassRate float64          `json:"dkim_pass_rate"`
	SPFPassRate  float64          `json:"spf_pass_rate"`
	Dispositions map[string]int64 `json:"dispositions"`
	// Causes are the likely causes of the failures of a source of ours.
	Causes    []Cause  `json:"causes,omitempty"`
	Reporters []string `json:"reporters"`
}

// Cause is a likely cause of failures of our own mail.
type Cause struct {
	// Code is CauseSelectorNotPublished, CauseUnalignedMailFrom or CauseForwardingWithoutARC.
	Code     string `json:"code"`
	Detail   string `json:"detail"`
	Messages int64  `json:"messages"`
}

// The Cause codes.
const (
	CauseSelectorNotPublished = "selector-not-published"
	CauseUnalignedMailFrom    = "unaligned-mail-from"
	CauseForwardingWithoutARC = "forwarding-without-arc"
)

// Kinds of Source.
const (
	KindOurs      = "ours"
	KindForwarder = "forwarder"
	KindUnknown   = "unknown-sender"
)

// sendIndex answers "did we send mail from IP with this header From domain on these
// days, with which signatures, to which recipient domains?".
type sendIndex map[string][]SendEntry // day -> entries

func (x sendIndex) match(ip, from string, begin, end time.Time) (sigs, rcptDomains []string, ok bool) {
	// A day of slack before the range: a message we sent just before midnight may be
	// received, and reported, the next day.
	for day := begin.Add(-24 * time.Hour).Truncate(24 * time.Hour); !day.After(end); day = day.Add(24 * time.Hour) {
		for _, e := range x[day.Format(time.DateOnly)] {
			if e.SourceIP == ip && e.HeaderFrom == from {
				ok = true
				for _, s := range e.DKIM {
					if !slices.Contains(sigs, s) {
						sigs = append(sigs, s)
					}
				}
				if !slices.Contains(rcptDomains, e.RcptDomain) {
					rcptDomains = append(rcptDomains, e.RcptDomain)
				}
			}
		}
	}
	return sigs, rcptDomains, ok
}

// Summarize joins the reports with the send log.
func Summarize(ctx context.Context, reports []Report, o SummaryOptions) (*Summary, error) {
	until := o.Until
	if until.IsZero() {
		until = time.Now()
	}
	s := &Summary{Domain: o.Domain.String(), Since: o.Since.UTC(), Until: until.UTC(), Sources: []Source{}}
	var from, to time.Time
	for _, r := range reports {
		if from.IsZero() || r.Begin.Before(from) {
			from = r.Begin
		}
		if r.End.After(to) {
			to = r.End
		}
	}
	idx := sendIndex{}
	for _, dir := range append([]string{o.SendLogDir}, o.SendLogDirs...) {
		if len(reports) == 0 || dir == "" {
			continue
		}
		days, err := ReadSendLog(dir, from.Add(-24*time.Hour), to)
		if err != nil {
			return nil, err
		}
		for day, es := range days {
			idx[day] = append(idx[day], es...)
		}
	}
	slices.SortFunc(reports, func(a, b Report) int { return a.End.Compare(b.End) })
	c := &checker{ctx: ctx, r: o.Resolver, selectors: map[string]string{}}
	type key struct {
		ip   string
		ours bool
	}
	sources := map[key]*Source{}
	forwarderLike := map[key]bool{}
	causes := map[key]map[string]*Cause{}
	for _, r := range reports {
		s.Reports++
		s.Policy = r.Policy
		for _, rec := range r.Records {
			sigs, rcpts, ours := idx.match(rec.SourceIP, rec.HeaderFrom, r.Begin, r.End)
			k := key{rec.SourceIP, ours}
			src := sources[k]
			if src == nil {
				src = &Source{IP: rec.SourceIP, Ours: ours, Dispositions: map[string]int64{}, Reporters: []string{}}
				sources[k] = src
			}
			if !slices.Contains(src.Reporters, r.Org) {
				src.Reporters = append(src.Reporters, r.Org)
			}
			n := rec.Count
			src.Messages += n
			s.Messages += n
			src.Dispositions[rec.Disposition] += n
			if rec.DKIM == "pass" {
				src.DKIMAligned += n
			}
			if rec.SPF == "pass" {
				src.SPFAligned += n
			}
			if rec.Pass() {
				src.Pass += n
				s.Pass += n
			} else {
				src.Fail += n
				s.Fail += n
			}
			if looksForwarded(rec) {
				forwarderLike[k] = true
			}
			if ours && !rec.Pass() {
				if causes[k] == nil {
					causes[k] = map[string]*Cause{}
				}
				for _, cs := range c.causes(r, rec, sigs, rcpts) {
					if old := causes[k][cs.Code+cs.Detail]; old != nil {
						old.Messages += n
					} else {
						cs.Messages = n
						causes[k][cs.Code+cs.Detail] = &cs
					}
				}
			}
		}
	}
	for k, src := range sources {
		src.DKIMPassRate, src.SPFPassRate = rate(src.DKIMAligned, src.Messages), rate(src.SPFAligned, src.Messages)
		switch {
		case src.Ours:
			src.Kind = KindOurs
		case forwarderLike[k]:
			src.Kind = KindForwarder
		default:
			src.Kind = KindUnknown
		}
		if !src.Ours {
			src.PTR = c.ptr(src.IP)
		}
		for _, cs := range causes[k] {
			src.Causes = append(src.Causes, *cs)
		}
		slices.SortFunc(src.Causes, func(a, b Cause) int {
			return cmp.Or(cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.Code, b.Code), cmp.Compare(a.Detail, b.Detail))
		})
		slices.Sort(src.Reporters)
		s.Sources = append(s.Sources, *src)
	}
	slices.SortFunc(s.Sources, func(a, b Source) int {
		if a.Ours != b.Ours {
			if a.Ours {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.IP, b.IP))
	})
	return s, nil
}

// rate is n/total rounded to four places, 0 without messages.
func rate(n, total int64) float64 {
	if total == 0 {
		return 0
	}
	return math.Round(float64(n)/float64(total)*10000) / 10000
}

// looksForwarded: a row that passes DKIM (aligned or not) but fails SPF is mail someone
// else relayed with its signature intact; an override reason of forwarding, or one
// naming ARC, says the receiver thought so too (RFC 7489 Appendix C PolicyOverrideType).
func looksForwarded(rec Record) bool {
	for _, rs := range rec.Reasons {
		switch rs.Type {
		case "forwarded", "trusted_forwarder", "mailing_list":
			return true
		case "local_policy", "other":
			if strings.Contains(strings.ToLower(rs.Comment), "arc") {
				return true
			}
		}
	}
	if rec.SPF == "pass" {
		return false
	}
	if rec.DKIM == "pass" {
		return true
	}
	for _, d := range rec.DKIMResults {
		if d.Result == "pass" {
			return true
		}
	}
	return false
}

// checker finds causes, asking DNS once per selector and address.
type checker struct {
	ctx       context.Context
	r         resolver.Resolver
	selectors map[string]string // "s._domainkey.d" -> problem ("" when published)
	ptrs      map[string]string
}

// causes are the likely causes of one failing row of ours; sigs are our signatures
// ("d=D s=S") and rcpts the recipient domains of the matching send log entries.
func (c *checker) causes(r Report, rec Record, sigs, rcpts []string) []Cause {
	var out []Cause
	forwarded := slices.ContainsFunc(rec.Reasons, func(rs Reason) bool { return rs.Type == "forwarded" || rs.Type == "mailing_list" })
	if to, err := addr.ParseDomain(rec.EnvelopeTo); err == nil && len(rcpts) > 0 && !slices.Contains(rcpts, to.String()) {
		forwarded = true // delivered to a domain we did not send to: it was forwarded there
	}
	if rec.DKIM == "fail" {
		for _, sig := range sigs {
			d, sel, ok := parseSig(sig)
			if !ok {
				continue
			}
			result := "absent"
			for _, dr := range rec.DKIMResults {
				if dr.Domain == d && (dr.Selector == sel || dr.Selector == "") {
					result = dr.Result
					if dr.Result == "pass" {
						break
					}
				}
			}
			if result == "pass" {
				continue // our signature passed but did not align: not a selector matter
			}
			name := sel + "._domainkey." + d
			if problem := c.selector(name); problem != "" {
				out = append(out, Cause{Code: CauseSelectorNotPublished, Detail: fmt.Sprintf("%s: %s", name, problem)})
				continue
			}
			if forwarded && result == "fail" {
				out = append(out, Cause{Code: CauseForwardingWithoutARC, Detail: fmt.Sprintf(
					"our signature d=%s s=%s broke on a forwarding hop and no ARC chain (or trusted forwarder) excused it", d, sel)})
				continue
			}
			out = append(out, Cause{Code: CauseSelectorNotPublished, Detail: fmt.Sprintf(
				"the receiver's DKIM result for our selector %s (d=%s) is %s: check that %s publishes the key we sign with", sel, d, result, name)})
		}
	}
	if rec.SPF == "fail" {
		from := addr.Domain(rec.HeaderFrom)
		for _, sr := range rec.SPFResults {
			if sr.Scope != "" && sr.Scope != "mfrom" {
				continue
			}
			sd, err := addr.ParseDomain(sr.Domain)
			if err != nil {
				continue
			}
			aligned := sd == from
			if r.Policy.ASPF != "s" {
				aligned = addr.OrgDomain(sd) == addr.OrgDomain(from)
			}
			if !aligned {
				out = append(out, Cause{Code: CauseUnalignedMailFrom, Detail: fmt.Sprintf(
					"MAIL FROM domain %s does not align with header From %s (aspf=%s)", sd, from, cmp.Or(r.Policy.ASPF, "r"))})
			}
		}
	}
	return out
}

func parseSig(s string) (d, sel string, ok bool) {
	for _, f := range strings.Fields(s) {
		switch {
		case strings.HasPrefix(f, "d="):
			d = strings.ToLower(f[2:])
		case strings.HasPrefix(f, "s="):
			sel = strings.ToLower(f[2:])
		}
	}
	return d, sel, d != "" && sel != ""
}

// selector says what is wrong with the key record at name, "" when it is published (or
// there is no resolver to ask).
func (c *checker) selector(name string) string {
	if c.r == nil {
		return ""
	}
	if p, ok := c.selectors[name]; ok {
		return p
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	txts, err := c.r.LookupTXT(ctx, name)
	problem := ""
	switch {
	case resolver.IsNotFound(err):
		problem = "no key record in DNS"
	case err != nil:
		problem = "" // a failed lookup proves nothing
	default:
		problem = "no key record in DNS (TXT without p=)"
		for _, t := range txts {
			// RFC 6376 §3.6.1: an empty p= is a revoked key.
			t = strings.ReplaceAll(strings.ReplaceAll(t, " ", ""), "\t", "")
			if strings.Contains(t, "p=") && !strings.Contains(t, "p=;") && !strings.HasSuffix(t, "p=") {
				problem = ""
			}
		}
	}
	c.selectors[name] = problem
	return problem
}

// ptr is the first PTR name of ip without its trailing dot, "" when none.
func (c *checker) ptr(ip string) string {
	if c.r == nil {
		return ""
	}
	if c.ptrs == nil {
		c.ptrs = map[string]string{}
	}
	if p, ok := c.ptrs[ip]; ok {
		return p
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	names, err := c.r.LookupAddr(ctx, ip)
	p := ""
	if err == nil && len(names) > 0 {
		p = strings.TrimSuffix(names[0], ".")
	}
	c.ptrs[ip] = p
	return p
}
