package dmarcreport

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/encoding/htmlindex"

	"sealgate/internal/addr"
)

// Report is one aggregate report (RFC 7489 Appendix C, RFC 9990 §3) as stored.
type Report struct {
	// Org and ID are report_metadata's org_name and report_id: the dedup key.
	Org   string `json:"org"`
	ID    string `json:"id"`
	Email string `json:"email,omitempty"`
	// Begin and End are date_range, in UTC.
	Begin time.Time `json:"begin"`
	End   time.Time `json:"end"`
	// Format is "rfc7489", or "dmarcbis" for the dmarc-2.0 namespace (RFC 9990).
	Format  string          `json:"format"`
	Policy  PolicyPublished `json:"policy"`
	Records []Record        `json:"records"`
	// Source is where the report was imported from (file, message part), for the admin.
	Source string `json:"source,omitempty"`
}

// PolicyPublished is policy_published: the record the receiver found.
type PolicyPublished struct {
	Domain string `json:"domain"`
	ADKIM  string `json:"adkim,omitempty"`
	ASPF   string `json:"aspf,omitempty"`
	P      string `json:"p"`
	SP     string `json:"sp,omitempty"`
	NP     string `json:"np,omitempty"`
	// Pct is pct (RFC 7489 only), -1 when absent.
	Pct     int    `json:"pct"`
	Testing string `json:"testing,omitempty"` // RFC 9990 t=
}

// Record is one record: a row of messages from one source with one outcome.
type Record struct {
	SourceIP    string `json:"source_ip"`
	Count       int64  `json:"count"`
	Disposition string `json:"disposition"` // none, quarantine, reject (or pass, RFC 9990)
	// DKIM and SPF are policy_evaluated: the aligned verdicts, pass or fail.
	DKIM    string   `json:"dkim"`
	SPF     string   `json:"spf"`
	Reasons []Reason `json:"reasons,omitempty"`
	// HeaderFrom, EnvelopeFrom and EnvelopeTo are identifiers (the last two optional).
	HeaderFrom   string `json:"header_from"`
	EnvelopeFrom string `json:"envelope_from,omitempty"`
	EnvelopeTo   string `json:"envelope_to,omitempty"`
	// DKIMResults and SPFResults are auth_results: the raw results.
	DKIMResults []DKIMResult `json:"dkim_results,omitempty"`
	SPFResults  []SPFResult  `json:"spf_results,omitempty"`
}

// Reason is a policy override reason (RFC 7489 Appendix C PolicyOverrideType).
type Reason struct {
	Type    string `json:"type" xml:"type"`
	Comment string `json:"comment,omitempty" xml:"comment"`
}

// DKIMResult is one auth_results/dkim.
type DKIMResult struct {
	Domain   string `json:"domain" xml:"domain"`
	Selector string `json:"selector,omitempty" xml:"selector"`
	Result   string `json:"result" xml:"result"`
}

// SPFResult is one auth_results/spf.
type SPFResult struct {
	Domain string `json:"domain" xml:"domain"`
	Scope  string `json:"scope,omitempty" xml:"scope"`
	Result string `json:"result" xml:"result"`
}

// Pass reports whether the row passed DMARC: either aligned verdict is pass
// (RFC 7489 §6.6.2).
func (r Record) Pass() bool { return r.DKIM == "pass" || r.SPF == "pass" }

// nsDMARCbis is the namespace of RFC 9990 reports.
const nsDMARCbis = "urn:ietf:params:xml:ns:dmarc-2.0"

// The XML shapes. Tags carry no namespace, so elements match in any namespace (and in
// none): RFC 7489 reports have none, RFC 9990 ones have nsDMARCbis.
type xmlMetadata struct {
	OrgName   string `xml:"org_name"`
	Email     string `xml:"email"`
	ReportID  string `xml:"report_id"`
	DateRange struct {
		Begin string `xml:"begin"`
		End   string `xml:"end"`
	} `xml:"date_range"`
}

type xmlPolicy struct {
	Domain  string `xml:"domain"`
	ADKIM   string `xml:"adkim"`
	ASPF    string `xml:"aspf"`
	P       string `xml:"p"`
	SP      string `xml:"sp"`
	NP      string `xml:"np"`
	Pct     string `xml:"pct"`
	Testing string `xml:"testing"`
}

type xmlRecord struct {
	Row struct {
		SourceIP        string `xml:"source_ip"`
		Count           string `xml:"count"`
		PolicyEvaluated struct {
			Disposition string   `xml:"disposition"`
			DKIM        string   `xml:"dkim"`
			SPF         string   `xml:"spf"`
			Reasons     []Reason `xml:"reason"`
		} `xml:"policy_evaluated"`
	} `xml:"row"`
	Identifiers struct {
		HeaderFrom   string `xml:"header_from"`
		EnvelopeFrom string `xml:"envelope_from"`
		EnvelopeTo   string `xml:"envelope_to"`
	} `xml:"identifiers"`
	AuthResults struct {
		DKIM []DKIMResult `xml:"dkim"`
		SPF  []SPFResult  `xml:"spf"`
	} `xml:"auth_results"`
}

// ErrDoctype refuses a document with a DOCTYPE: entity declarations are how XXE and
// billion-laughs attacks start, and no report needs one.
var ErrDoctype = errors.New("the XML has a DOCTYPE declaration; reports never need one and it is refused (XXE)")

// parseXML parses one report document under lim. now bounds the date range (a report
// about the future is forged).
func parseXML(data []byte, lim Limits, now time.Time) (*Report, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	dec.Entity = nil // only the five predefined entities; anything else is an error
	dec.CharsetReader = xmlCharset
	var root *xml.StartElement
	for root == nil {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil, errors.New("no XML element found")
		}
		if err != nil {
			return nil, fmt.Errorf("XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			if d := strings.ToUpper(strings.TrimSpace(string(t))); strings.HasPrefix(d, "DOCTYPE") || strings.HasPrefix(d, "ENTITY") {
				return nil, ErrDoctype
			}
		case xml.StartElement:
			root = &t
		}
	}
	if root.Name.Local != "feedback" {
		return nil, fmt.Errorf("root element is <%s>, want <feedback> (an aggregate report, RFC 7489 Appendix C)", root.Name.Local)
	}
	rep := &Report{Format: "rfc7489", Policy: PolicyPublished{Pct: -1}}
	if root.Name.Space == nsDMARCbis {
		rep.Format = "dmarcbis"
	}
	var meta *xmlMetadata
	var pol *xmlPolicy
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("XML: %w", err)
		}
		if _, ok := tok.(xml.EndElement); ok {
			break // </feedback>
		}
		if d, ok := tok.(xml.Directive); ok && strings.Contains(strings.ToUpper(string(d)), "DOCTYPE") {
			return nil, ErrDoctype
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch se.Name.Local {
		case "version":
			var v string
			if err := dec.DecodeElement(&v, &se); err != nil {
				return nil, fmt.Errorf("XML <version>: %w", err)
			}
		case "report_metadata":
			meta = &xmlMetadata{}
			if err := dec.DecodeElement(meta, &se); err != nil {
				return nil, fmt.Errorf("XML <report_metadata>: %w", err)
			}
		case "policy_published":
			pol = &xmlPolicy{}
			if err := dec.DecodeElement(pol, &se); err != nil {
				return nil, fmt.Errorf("XML <policy_published>: %w", err)
			}
		case "record":
			if len(rep.Records) >= lim.maxRecords() {
				return nil, fmt.Errorf("more than %d records (limit max_records)", lim.maxRecords())
			}
			var xr xmlRecord
			if err := dec.DecodeElement(&xr, &se); err != nil {
				return nil, fmt.Errorf("XML <record> %d: %w", len(rep.Records)+1, err)
			}
			r, err := recordOf(xr)
			if err != nil {
				return nil, fmt.Errorf("record %d: %w", len(rep.Records)+1, err)
			}
			rep.Records = append(rep.Records, r)
		default:
			if err := dec.Skip(); err != nil {
				return nil, fmt.Errorf("XML <%s>: %w", se.Name.Local, err)
			}
		}
	}
	if meta == nil {
		return nil, errors.New("no <report_metadata>")
	}
	if pol == nil {
		return nil, errors.New("no <policy_published>")
	}
	if err := rep.setMetadata(meta, now); err != nil {
		return nil, err
	}
	if err := rep.setPolicy(pol); err != nil {
		return nil, err
	}
	if len(rep.Records) == 0 {
		return nil, errors.New("no <record>: a report has at least one (RFC 7489 Appendix C)")
	}
	for i, r := range rep.Records {
		hf, _ := addr.ParseDomain(r.HeaderFrom) // checked by recordOf
		if pd := addr.Domain(rep.Policy.Domain); hf != pd && !hf.IsSubdomainOf(pd) {
			return nil, fmt.Errorf("record %d: header_from %s is neither the policy domain %s nor under it", i+1, hf, pd)
		}
	}
	return rep, nil
}

func (rep *Report) setMetadata(m *xmlMetadata, now time.Time) error {
	rep.Org, rep.ID, rep.Email = strings.TrimSpace(m.OrgName), strings.TrimSpace(m.ReportID), strings.TrimSpace(m.Email)
	if rep.Org == "" || rep.ID == "" {
		return errors.New("report_metadata lacks org_name or report_id")
	}
	if len(rep.Org) > 255 || len(rep.ID) > 255 {
		return errors.New("report_metadata: org_name or report_id longer than 255 bytes")
	}
	var err error
	if rep.Begin, err = unixTime(m.DateRange.Begin); err != nil {
		return fmt.Errorf("date_range begin: %w", err)
	}
	if rep.End, err = unixTime(m.DateRange.End); err != nil {
		return fmt.Errorf("date_range end: %w", err)
	}
	switch {
	case rep.End.Before(rep.Begin):
		return fmt.Errorf("date_range ends (%s) before it begins (%s)", rep.End.Format(time.RFC3339), rep.Begin.Format(time.RFC3339))
	case rep.Begin.After(now.Add(24 * time.Hour)):
		return fmt.Errorf("date_range begins in the future (%s)", rep.Begin.Format(time.RFC3339))
	case rep.End.Sub(rep.Begin) > 31*24*time.Hour:
		return fmt.Errorf("date_range spans more than 31 days (%s to %s)", rep.Begin.Format(time.DateOnly), rep.End.Format(time.DateOnly))
	}
	return nil
}

func (rep *Report) setPolicy(p *xmlPolicy) error {
	d, err := addr.ParseDomain(strings.TrimSpace(p.Domain))
	if err != nil {
		return fmt.Errorf("policy_published domain %q: %w", p.Domain, err)
	}
	rep.Policy = PolicyPublished{Domain: d.String(), ADKIM: word(p.ADKIM), ASPF: word(p.ASPF), P: word(p.P),
		SP: word(p.SP), NP: word(p.NP), Testing: word(p.Testing), Pct: -1}
	if s := strings.TrimSpace(p.Pct); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 100 {
			return fmt.Errorf("policy_published pct %q: want 0 to 100", s)
		}
		rep.Policy.Pct = n
	}
	for _, v := range []string{rep.Policy.P, rep.Policy.SP, rep.Policy.NP} {
		if v != "" && v != "none" && v != "quarantine" && v != "reject" {
			return fmt.Errorf("policy_published: policy %q, want none, quarantine or reject", v)
		}
	}
	return nil
}

func recordOf(x xmlRecord) (Record, error) {
	ip, err := netip.ParseAddr(strings.TrimSpace(x.Row.SourceIP))
	if err != nil {
		return Record{}, fmt.Errorf("source_ip %q is not an IP address", x.Row.SourceIP)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(x.Row.Count), 10, 64)
	if err != nil || n < 0 || n > 1e9 {
		return Record{}, fmt.Errorf("count %q: want a whole number from 0 to 10^9", x.Row.Count)
	}
	pe := x.Row.PolicyEvaluated
	r := Record{SourceIP: ip.Unmap().String(), Count: n, Disposition: word(pe.Disposition), DKIM: word(pe.DKIM), SPF: word(pe.SPF)}
	switch r.Disposition {
	case "none", "quarantine", "reject", "pass":
	default:
		return Record{}, fmt.Errorf("disposition %q, want none, quarantine or reject", pe.Disposition)
	}
	for _, v := range []string{r.DKIM, r.SPF} {
		if v != "pass" && v != "fail" {
			return Record{}, fmt.Errorf("policy_evaluated dkim/spf %q, want pass or fail", v)
		}
	}
	for _, rs := range pe.Reasons {
		r.Reasons = append(r.Reasons, Reason{Type: word(rs.Type), Comment: strings.TrimSpace(rs.Comment)})
	}
	hf, err := addr.ParseDomain(strings.TrimSpace(x.Identifiers.HeaderFrom))
	if err != nil {
		return Record{}, fmt.Errorf("header_from %q: %w", x.Identifiers.HeaderFrom, err)
	}
	r.HeaderFrom = hf.String()
	r.EnvelopeFrom = strings.ToLower(strings.TrimSpace(x.Identifiers.EnvelopeFrom))
	r.EnvelopeTo = strings.ToLower(strings.TrimSpace(x.Identifiers.EnvelopeTo))
	for _, d := range x.AuthResults.DKIM {
		r.DKIMResults = append(r.DKIMResults, DKIMResult{Domain: lowerDomain(d.Domain), Selector: strings.ToLower(strings.TrimSpace(d.Selector)), Result: word(d.Result)})
	}
	for _, s := range x.AuthResults.SPF {
		r.SPFResults = append(r.SPFResults, SPFResult{Domain: lowerDomain(s.Domain), Scope: word(s.Scope), Result: word(s.Result)})
	}
	return r, nil
}

// xmlCharset decodes a report declared in another encoding than UTF-8 (some reporters
// write ISO-8859-1), by its WHATWG label.
func xmlCharset(label string, input io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(label)
	if name, _ := htmlindex.Name(enc); err != nil || name == "replacement" || name == "x-user-defined" {
		return nil, fmt.Errorf("unsupported encoding %q", label)
	}
	return enc.NewDecoder().Reader(input), nil
}

func unixTime(s string) (time.Time, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return time.Time{}, fmt.Errorf("%q is not a Unix time", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

func word(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// lowerDomain normalises a domain of auth_results; one that does not parse is kept as
// written (lower case), since it is only compared, never trusted.
func lowerDomain(s string) string {
	if d, err := addr.ParseDomain(strings.TrimSpace(s)); err == nil {
		return d.String()
	}
	return word(s)
}
