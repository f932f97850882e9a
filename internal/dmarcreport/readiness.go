package dmarcreport

import (
	"fmt"
	"math"
	"strings"
)

// ReadinessOptions tune Readiness.
type ReadinessOptions struct {
	// MaxFailShare is the largest share of failing mail (0 to 1) at which the next step
	// of the ladder is advised (default DefaultMaxFailShare).
	MaxFailShare float64
	// RUA, when set, is written into the next record (rua=...).
	RUA string
}

// DefaultMaxFailShare is ReadinessOptions.MaxFailShare's default: 1% of the mail.
const DefaultMaxFailShare = 0.01

// Verdict is Readiness's answer.
type Verdict struct {
	Domain   string `json:"domain"`
	Messages int64  `json:"messages"`
	Failing  int64  `json:"failing"`
	// RejectShare is the share of the domain's mail p=reject would reject: every
	// message that failed DMARC (receivers' local overrides aside). QuarantineShare is
	// what p=quarantine would send to spam instead: the same messages.
	RejectShare     float64 `json:"reject_share"`
	QuarantineShare float64 `json:"quarantine_share"`
	// OursFailing is the failing mail from our own sources.
	OursFailing int64 `json:"ours_failing"`
	// Responsible are the sources with failing mail, most first.
	Responsible []Responsible `json:"responsible"`
	// Current is the policy the latest report found; Next the record to publish.
	Current string `json:"current"`
	Next    string `json:"next"`
	Ready   bool   `json:"ready"`
	// Reason says why the domain is (not) ready.
	Reason string `json:"reason"`
}

// Responsible is a source with failing mail.
type Responsible struct {
	IP      string  `json:"ip"`
	Kind    string  `json:"kind"`
	PTR     string  `json:"ptr,omitempty"`
	Failing int64   `json:"failing"`
	Share   float64 `json:"share"` // of all the domain's mail
	Causes  []Cause `json:"causes,omitempty"`
}

// The ladder to p=reject, one rung at a time (README "DMARC reports"): pct (RFC 7489
// §6.3) samples the failing mail the policy applies to. RFC 9989 receivers ignore pct
// and apply the policy to all of it, which is why each rung also needs the failures to
// stay under the threshold.
var ladder = []struct{ p, pct string }{
	{"none", ""},
	{"quarantine", "25"},
	{"quarantine", ""},
	{"reject", "25"},
	{"reject", ""},
}

func rung(p PolicyPublished) int {
	switch p.P {
	case "quarantine":
		if p.Pct >= 0 && p.Pct < 100 {
			return 1
		}
		return 2
	case "reject":
		if p.Pct >= 0 && p.Pct < 100 {
			return 3
		}
		return 4
	}
	return 0
}

func record(i int, p PolicyPublished, rua string) string {
	r := ladder[i]
	s := "v=DMARC1; p=" + r.p
	if r.pct != "" {
		s += "; pct=" + r.pct
	}
	if rua != "" {
		s += "; rua=" + rua
	}
	if p.ADKIM == "s" {
		s += "; adkim=s"
	}
	if p.ASPF == "s" {
		s += "; aspf=s"
	}
	return s
}

// Readiness says whether the domain of s may take the next step towards p=reject.
func Readiness(s *Summary, o ReadinessOptions) Verdict {
	max := o.MaxFailShare
	if max <= 0 {
		max = DefaultMaxFailShare
	}
	v := Verdict{Domain: s.Domain, Messages: s.Messages, Failing: s.Fail, Responsible: []Responsible{}}
	v.RejectShare = share(s.Fail, s.Messages)
	v.QuarantineShare = v.RejectShare
	for _, src := range s.Sources {
		if src.Fail == 0 {
			continue
		}
		if src.Ours {
			v.OursFailing += src.Fail
		}
		v.Responsible = append(v.Responsible, Responsible{IP: src.IP, Kind: src.Kind, PTR: src.PTR,
			Failing: src.Fail, Share: share(src.Fail, s.Messages), Causes: src.Causes})
	}
	sortResponsible(v.Responsible)
	cur := rung(s.Policy)
	v.Current = record(cur, s.Policy, o.RUA)
	if s.Policy.P == "" {
		v.Current = "(no report yet)"
	}
	next := min(cur+1, len(ladder)-1)
	switch {
	case s.Messages == 0:
		v.Next = v.Current
		v.Reason = fmt.Sprintf("no aggregate report rows for %s in the period: import reports first (publish rua= and wait a day)", s.Domain)
	case v.OursFailing > 0:
		v.Next = v.Current
		v.Reason = fmt.Sprintf("%d messages from our own sources fail DMARC: fix their causes before tightening the policy", v.OursFailing)
	case v.RejectShare > max:
		v.Next = v.Current
		v.Reason = fmt.Sprintf("%s of the mail fails DMARC, above the %s threshold: align or authorise the sources responsible first",
			percent(v.RejectShare), percent(max))
	case cur == len(ladder)-1:
		v.Ready, v.Next = true, v.Current
		v.Reason = "already at p=reject and failures are under the threshold"
	default:
		v.Ready = true
		v.Next = record(next, s.Policy, o.RUA)
		v.Reason = fmt.Sprintf("%s of the mail fails DMARC (threshold %s) and none of it is ours", percent(v.RejectShare), percent(max))
	}
	return v
}

func sortResponsible(rs []Responsible) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && (rs[j].Failing > rs[j-1].Failing || rs[j].Failing == rs[j-1].Failing && rs[j].IP < rs[j-1].IP); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

func share(n, total int64) float64 {
	if total == 0 {
		return 0
	}
	return math.Round(float64(n)/float64(total)*10000) / 10000
}

func percent(f float64) string {
	s := fmt.Sprintf("%.2f", f*100)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "%"
}
