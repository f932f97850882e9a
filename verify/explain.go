package verify

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The explained lines of a report: what each SPF and DMARC result says to a domain owner,
// and how the two DMARC specifications disagree.

// Explain is the explained line of an SPF result for a client at ip: the domain, sender and
// reason, and the DNS lookups counted against the limits of RFC 7208 §4.6.4.
func (r *SPFResult) Explain(ip netip.Addr) string {
	s := fmt.Sprintf("%s for %s from %s", r.Domain, r.Sender, ip)
	if r.Domain == "" {
		s = r.Sender
	}
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s + fmt.Sprintf(" [%d of %d DNS lookups, %d of %d void]", r.Lookups, MaxSPFLookups, r.VoidLookups, MaxSPFVoidLookups)
}

// Explain is the explained line of a DMARC result: the specification, the author and
// organisational domains, the record that applied and the alignment of each identifier.
func (d *DMARCResult) Explain() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s", d.RFC)
	if d.AuthorDomain != "" {
		fmt.Fprintf(&b, ", From %s, organisational domain %s", d.AuthorDomain, d.OrgDomain)
	}
	if d.Record != nil {
		fmt.Fprintf(&b, ", record at _dmarc.%s (%s=%s)", d.PolicyDomain, d.PolicyTag, d.Policy)
	}
	if d.Reason != "" && d.Result != "fail" {
		// A failure is explained by the alignment of each identifier below.
		fmt.Fprintf(&b, ": %s", d.Reason)
	}
	var al []string
	for _, a := range d.Alignments {
		mode := "relaxed"
		switch a.Mode {
		case "s":
			mode = "strict"
		case "":
			mode = "relaxed: no record"
		}
		state := "not aligned"
		switch {
		case a.Strict:
			state = "aligned strict"
		case a.Relaxed:
			state = "aligned relaxed only"
		}
		line := fmt.Sprintf("%s %s pass, %s (%s required)", a.Method, a.Domain, state, mode)
		if a.Result != "pass" {
			line = fmt.Sprintf("%s %s %s (only a pass can align)", a.Method, a.Domain, a.Result)
		}
		if !slices.Contains(al, line) {
			al = append(al, line)
		}
	}
	if len(al) > 0 {
		fmt.Fprintf(&b, "; %s", strings.Join(al, "; "))
	}
	fmt.Fprintf(&b, "; disposition %s", d.Disposition)
	if d.DispositionNote != "" {
		fmt.Fprintf(&b, " (%s)", d.DispositionNote)
	}
	for _, n := range d.Notes {
		fmt.Fprintf(&b, "; %s", n)
	}
	for _, w := range recordWarnings(d) {
		fmt.Fprintf(&b, "; record: %s", w)
	}
	return b.String()
}

func recordWarnings(d *DMARCResult) []string {
	if d.Record == nil {
		return nil
	}
	return d.Record.Warnings
}

// disagreement says how the two DMARC evaluations differ, or "".
func disagreement(a, b *DMARCResult) string {
	var diffs []string
	if a.Result != b.Result {
		diffs = append(diffs, fmt.Sprintf("%s says %s, %s says %s", a.RFC, a.Result, b.RFC, b.Result))
	}
	if a.Disposition != b.Disposition {
		diffs = append(diffs, fmt.Sprintf("%s would %s, %s would %s", a.RFC, dispositionVerb(a.Disposition), b.RFC, dispositionVerb(b.Disposition)))
	}
	if a.OrgDomain != b.OrgDomain && a.OrgDomain != "" && b.OrgDomain != "" {
		diffs = append(diffs, fmt.Sprintf("organisational domain %s by the tree walk, %s by the Public Suffix List", a.OrgDomain, b.OrgDomain))
	}
	if b.Result == "fail" && b.Record != nil && b.Record.Pct < 100 && b.Policy != "none" {
		diffs = append(diffs, fmt.Sprintf("pct=%d samples only under %s; %s ignores pct and applies %s=%s to every failing message",
			b.Record.Pct, b.RFC, a.RFC, a.PolicyTag, a.Policy))
	}
	if len(diffs) == 0 {
		return ""
	}
	return strings.Join(diffs, "; ") + ": receivers run both, so a domain owner must pass both"
}

func dispositionVerb(d string) string {
	switch d {
	case "reject":
		return "reject"
	case "quarantine":
		return "quarantine"
	}
	return "deliver"
}
