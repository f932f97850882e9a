package tlsrpt

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Report is an aggregate report of RFC 8460 §4 for one policy domain and one day.
type Report struct {
	OrganizationName string        `json:"organization-name"`
	DateRange        DateRange     `json:"date-range"`
	ContactInfo      string        `json:"contact-info,omitempty"`
	ReportID         string        `json:"report-id"`
	Policies         []PolicyEntry `json:"policies"`
}

// DateRange is the report's period (RFC 3339 date-times, §4.4).
type DateRange struct {
	Start string `json:"start-datetime"`
	End   string `json:"end-datetime"`
}

// PolicyEntry is one policy of a report with its counts.
type PolicyEntry struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// Summary counts a policy's sessions.
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failure    int64 `json:"total-failure-session-count"`
}

// FailureDetail is one kind of failure with its count.
type FailureDetail struct {
	Failure
	Count int64 `json:"failed-session-count"`
}

// ReportOptions say who reports.
type ReportOptions struct {
	// OrganizationName is the reporting organisation (required by §4.4); ContactInfo how to
	// reach it (optional).
	OrganizationName string
	ContactInfo      string
	// Domain, when set, limits the reports to that policy domain.
	Domain string
}

// Reports returns the reports of d, one per policy domain, sorted by domain; none for a day
// without sessions.
func (d *Day) Reports(o ReportOptions) ([]Report, error) {
	day, err := time.Parse(DayFormat, d.Date)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: day %q: %w", d.Date, err)
	}
	byDomain := map[string][]PolicyEntry{}
	want := strings.TrimSuffix(strings.ToLower(o.Domain), ".")
	for _, pc := range d.Policies {
		dom := pc.Policy.Domain
		if want != "" && dom != want {
			continue
		}
		e := PolicyEntry{Policy: pc.Policy, Summary: Summary{Successful: pc.Successes, Failure: pc.Failed}}
		for _, f := range pc.Failures {
			e.FailureDetails = append(e.FailureDetails, FailureDetail{Failure: f.Failure, Count: f.Count})
		}
		sort.SliceStable(e.FailureDetails, func(i, j int) bool { return e.FailureDetails[i].Count > e.FailureDetails[j].Count })
		byDomain[dom] = append(byDomain[dom], e)
	}
	domains := make([]string, 0, len(byDomain))
	for dom := range byDomain {
		domains = append(domains, dom)
	}
	sort.Strings(domains)
	start := day.UTC()
	end := start.Add(24*time.Hour - time.Second)
	var out []Report
	for _, dom := range domains {
		out = append(out, Report{
			OrganizationName: o.OrganizationName,
			DateRange:        DateRange{Start: start.Format(time.RFC3339), End: end.Format(time.RFC3339)},
			ContactInfo:      o.ContactInfo,
			// Unique per reporter, day and domain (§4.4: "a unique identifier").
			ReportID: fmt.Sprintf("%s_%s@%s", d.Date, dom, o.OrganizationName),
			Policies: byDomain[dom],
		})
	}
	return out, nil
}

// FileName is the name RFC 8460 §5.3 gives report r from reporter (its domain):
// "sender!policy-domain!begin-timestamp!end-timestamp.json", timestamps in seconds since 1970.
func FileName(reporter string, r Report) string {
	begin, _ := time.Parse(time.RFC3339, r.DateRange.Start)
	end, _ := time.Parse(time.RFC3339, r.DateRange.End)
	dom := ""
	if len(r.Policies) > 0 {
		dom = r.Policies[0].Policy.Domain
	}
	clean := func(s string) string { return strings.NewReplacer("!", "", "/", "", "\\", "").Replace(s) }
	return fmt.Sprintf("%s!%s!%d!%d.json", clean(reporter), clean(dom), begin.Unix(), end.Unix())
}
