package verify

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestParseDMARCRecord runs testdata/dmarc-records.txt.
func TestParseDMARCRecord(t *testing.T) {
	f, err := os.Open("testdata/dmarc-records.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	n := 0
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		cols := strings.SplitN(line, "\t", 3)
		if len(cols) != 3 {
			t.Fatalf("bad line %q", line)
		}
		n++
		spec := RFC("RFC " + cols[0])
		rec, err := ParseDMARCRecord(cols[2], spec)
		if cols[1] == "error" {
			if err == nil {
				t.Errorf("%s %q: parsed as %+v, want an error", spec, cols[2], rec)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %q: %v", spec, cols[2], err)
			continue
		}
		got := map[string]string{
			"p": rec.P, "sp": rec.SP, "np": rec.NP, "adkim": rec.ADKIM, "aspf": rec.ASPF,
			"pct": fmt.Sprint(rec.Pct), "psd": rec.PSD, "testing": fmt.Sprint(rec.Testing),
			"warnings": fmt.Sprint(len(rec.Warnings)), "rua": strings.Join(rec.RUA, " "),
		}
		for kv := range strings.SplitSeq(cols[1], ",") {
			k, v, _ := strings.Cut(kv, "=")
			if got[k] != v {
				t.Errorf("%s %q: %s=%q, want %q (warnings %q)", spec, cols[2], k, got[k], v, rec.Warnings)
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d cases read", n)
	}
}

// dmarcZone publishes the DMARC cases of TestDMARC. Every From domain exists (an A record)
// unless the case is about one that does not.
func dmarcZone() string {
	z := `
_dmarc.corp.example.        TXT "v=DMARC1; p=reject; rua=mailto:d@corp.example"
corp.example.               MX  10 mx.corp.example.
news.corp.example.          A   192.0.2.1
bounce.corp.example.        TXT "v=spf1 ip4:192.0.2.25 -all"
_dmarc.strict.example.      TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
strict.example.             A   192.0.2.1
news.strict.example.        A   192.0.2.1
_dmarc.example.co.uk.       TXT "v=DMARC1; p=reject; sp=quarantine"
example.co.uk.              A   192.0.2.1
mail.example.co.uk.         A   192.0.2.1
_dmarc.psd.                 TXT "v=DMARC1; p=reject; psd=y"
a.b.psd.                    A   192.0.2.1
_dmarc.ramp.example.        TXT "v=DMARC1; p=reject; pct=0"
ramp.example.               A   192.0.2.1
_dmarc.bank.example.        TXT "v=DMARC1; p=reject"
_dmarc.news.bank.example.   TXT "v=DMARC1; p=reject; psd=n"
bank.example.               A   192.0.2.1
news.bank.example.          A   192.0.2.1
_dmarc.testing.example.     TXT "v=DMARC1; p=reject; t=y"
testing.example.            A   192.0.2.1
_dmarc.np.example.          TXT "v=DMARC1; p=reject; sp=none; np=reject"
np.example.                 A   192.0.2.1
live.np.example.            A   192.0.2.1
_dmarc.broken.example.      TXT "v=DMARC1; p=bogus"
broken.example.             A   192.0.2.1
_dmarc.twice.example.       TXT "v=DMARC1; p=none"
_dmarc.twice.example.       TXT "v=DMARC1; p=reject"
twice.example.              A   192.0.2.1
slow.example.               A   192.0.2.1
norecord.example.           A   192.0.2.1
`
	for _, d := range []string{"corp.example", "other.example", "strict.example", "example.co.uk", "bank.example", "news.bank.example"} {
		z += dkimRecord(d)
	}
	return z
}

// TestDMARC evaluates DMARC both ways for each case: strict and relaxed alignment, DKIM that
// passes unaligned, organisational domains under a multi-label public suffix and under psd=
// records, np=, t=, pct=, and the cases where RFC 9989 and RFC 7489 disagree.
func TestDMARC(t *testing.T) {
	o := testOptions(t, dmarcZone(), "_dmarc.slow.example")
	type want struct{ result, disposition, org string }
	for _, tc := range []struct {
		name       string
		from, d    string // d is the DKIM signing domain, "" for an unsigned message
		mailFrom   string
		rfc9989    want
		rfc7489    want
		disagree   string
		reasonPart string
	}{
		{"relaxed DKIM alignment", "a@news.corp.example", "corp.example", "",
			want{"pass", "none", "corp.example"}, want{"pass", "none", "corp.example"}, "", "dkim of corp.example is aligned (relaxed)"},
		{"strict alignment refuses the parent domain", "a@news.strict.example", "strict.example", "",
			want{"fail", "reject", "strict.example"}, want{"fail", "reject", "strict.example"}, "", "dkim strict.example pass, aligned relaxed only (strict required)"},
		{"strict alignment, same domain", "a@strict.example", "strict.example", "",
			want{"pass", "none", "strict.example"}, want{"pass", "none", "strict.example"}, "", "aligned (strict)"},
		{"DKIM passes but is not aligned", "a@corp.example", "other.example", "",
			want{"fail", "reject", "corp.example"}, want{"fail", "reject", "corp.example"}, "", "dkim other.example pass, not aligned (relaxed required)"},
		{"multi-label public suffix, sp=", "a@mail.example.co.uk", "other.example", "",
			want{"fail", "quarantine", "example.co.uk"}, want{"fail", "quarantine", "example.co.uk"}, "", ""},
		{"multi-label public suffix, relaxed pass", "a@mail.example.co.uk", "example.co.uk", "",
			want{"pass", "none", "example.co.uk"}, want{"pass", "none", "example.co.uk"}, "", ""},
		{"psd=y record gives the policy under RFC 9989 only", "a@a.b.psd", "other.example", "",
			want{"fail", "reject", "b.psd"}, want{"none", "none", "b.psd"}, "RFC 9989 says fail, RFC 7489 says none", ""},
		{"pct=0 softens RFC 7489 only", "a@ramp.example", "", "",
			want{"fail", "reject", "ramp.example"}, want{"fail", "quarantine", "ramp.example"}, "RFC 9989 would reject, RFC 7489 would quarantine", ""},
		{"psd=n makes a subdomain its own organisation under RFC 9989", "a@news.bank.example", "bank.example", "",
			want{"fail", "reject", "news.bank.example"}, want{"pass", "none", "bank.example"}, "organisational domain news.bank.example by the tree walk, bank.example by the Public Suffix List", ""},
		{"t=y", "a@testing.example", "", "",
			want{"fail", "none", "testing.example"}, want{"fail", "reject", "testing.example"}, "RFC 9989 would deliver, RFC 7489 would reject", ""},
		{"np= for a From domain that does not exist", "a@ghost.np.example", "", "",
			want{"fail", "reject", "np.example"}, want{"fail", "none", "np.example"}, "RFC 9989 would reject, RFC 7489 would deliver", ""},
		{"sp= for a From subdomain that exists", "a@live.np.example", "", "",
			want{"fail", "none", "np.example"}, want{"fail", "none", "np.example"}, "", ""},
		{"malformed record", "a@broken.example", "", "",
			want{"permerror", "none", ""}, want{"permerror", "none", ""}, "", "p=bogus"},
		{"two records", "a@twice.example", "", "",
			want{"permerror", "none", ""}, want{"permerror", "none", ""}, "", "2 DMARC records"},
		{"no record", "a@norecord.example", "", "",
			want{"none", "none", "norecord.example"}, want{"none", "none", "norecord.example"}, "", "no DMARC record"},
		{"DNS failure", "a@slow.example", "", "",
			want{"temperror", "none", "slow.example"}, want{"temperror", "none", "slow.example"}, "", ""},
		{"SPF aligned relaxed", "a@corp.example", "", "b@bounce.corp.example",
			want{"pass", "none", "corp.example"}, want{"pass", "none", "corp.example"}, "", "spf of bounce.corp.example is aligned (relaxed)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := message(tc.from)
			if tc.d != "" {
				msg = signed(t, msg, tc.d)
			}
			env := Envelope{}
			if tc.mailFrom != "" {
				env = Envelope{IP: clientIP, HELO: "relay.corp.example", MailFrom: tc.mailFrom}
			}
			rep := run(t, env, msg, o)
			for _, c := range []struct {
				got  *DMARCResult
				want want
			}{{rep.DMARC9989, tc.rfc9989}, {rep.DMARC7489, tc.rfc7489}} {
				g := c.got
				if g.Result != c.want.result || g.Disposition != c.want.disposition || g.OrgDomain != c.want.org {
					t.Errorf("%s: %s/%s org %q (%s), want %s/%s org %q", g.RFC, g.Result, g.Disposition, g.OrgDomain, g.Reason, c.want.result, c.want.disposition, c.want.org)
				}
				if said := g.Explain() + " / " + g.Reason; tc.reasonPart != "" && !strings.Contains(said, tc.reasonPart) {
					t.Errorf("%s: %q does not say %q", g.RFC, said, tc.reasonPart)
				}
			}
			if tc.disagree == "" && rep.Disagreement != "" || !strings.Contains(rep.Disagreement, tc.disagree) {
				t.Errorf("disagreement %q, want %q", rep.Disagreement, tc.disagree)
			}
			if rep.DMARC9989.Queries > MaxTreeWalkQueries*3 {
				t.Errorf("%d _dmarc queries", rep.DMARC9989.Queries)
			}
		})
	}
}

// TestTreeWalkBound: a From domain of many labels is walked in at most MaxTreeWalkQueries
// queries (the name, then its seven right-most labels and shorter).
func TestTreeWalkBound(t *testing.T) {
	o := testOptions(t, "a.b.c.d.e.f.g.h.i.j.example. A 192.0.2.1\n_dmarc.example. TXT \"v=DMARC1; p=reject\"\n")
	rep := run(t, Envelope{}, message("x@a.b.c.d.e.f.g.h.i.j.example"), o)
	d := rep.DMARC9989
	if d.Queries != MaxTreeWalkQueries || d.OrgDomain != "example" || d.Disposition != "reject" || d.PolicyTag != "p" && d.PolicyTag != "sp" {
		t.Errorf("%d queries, org %q, %s=%s disposition %s", d.Queries, d.OrgDomain, d.PolicyTag, d.Policy, d.Disposition)
	}
}

// TestTreeWalkTemporaryFailure: a level of the RFC 9989 walk that does not answer makes the
// evaluation temperror even when a record was found at another level; RFC 7489, which asks
// only the From domain and its organisational domain, is not affected.
func TestTreeWalkTemporaryFailure(t *testing.T) {
	o := testOptions(t, "a.corp.example. A 192.0.2.1\n_dmarc.corp.example. TXT \"v=DMARC1; p=reject\"\n", "_dmarc.example")
	rep := run(t, Envelope{}, message("x@a.corp.example"), o)
	if rep.DMARC9989.Result != "temperror" || rep.DMARC7489.Result != "fail" || rep.DMARC7489.Disposition != "reject" {
		t.Errorf("9989 %s (%s), 7489 %s/%s", rep.DMARC9989.Result, rep.DMARC9989.Reason, rep.DMARC7489.Result, rep.DMARC7489.Disposition)
	}
	// The stricter known outcome wins: RFC 7489 rejects.
	if rep.Verdict.Action != "reject" {
		t.Errorf("verdict %+v", rep.Verdict)
	}
}
