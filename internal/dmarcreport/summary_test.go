package dmarcreport

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// importAll imports every fixture report once.
func importAll(t *testing.T, im *Importer) {
	t.Helper()
	for _, p := range []string{"testdata/google.xml", "testdata/microsoft.xml", "testdata/yahoo.xml", "testdata/dmarcbis.xml"} {
		for _, r := range im.ImportPath(p) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
}

// The fixtures' numbers per source, checked exactly: 192.0.2.10 is ours (send log), with
// one failing row whose causes are a broken rsa2026 result, an unpublished ed2026 and a
// MAIL FROM in another organisation; 203.0.113.5 forwards (DKIM pass, SPF fail,
// reason forwarded); 198.51.100.7 and 192.0.2.11 are unknown senders.
func TestSummaryNumbers(t *testing.T) {
	im := testImporter(t)
	importAll(t, im)
	logDir := filepath.Join(t.TempDir(), "sendlog")
	ourSends(t, logDir)
	reps, err := im.Store.Reports("example.test", fixtureNow.Add(-7*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(context.Background(), reps, SummaryOptions{Domain: "example.test", SendLogDir: logDir,
		Resolver: testResolver(t), Since: fixtureNow.Add(-7 * 24 * time.Hour), Until: fixtureNow})
	if err != nil {
		t.Fatal(err)
	}
	if s.Reports != 4 || s.Messages != 84 || s.Pass != 78 || s.Fail != 6 {
		t.Errorf("reports %d messages %d pass %d fail %d; want 4 84 78 6", s.Reports, s.Messages, s.Pass, s.Fail)
	}
	type want struct {
		ours                        bool
		kind, ptr                   string
		msgs, dkim, spf, pass, fail int64
		dkimRate, spfRate           float64
		reporters                   []string
	}
	tests := map[string]want{
		"192.0.2.10":   {true, KindOurs, "", 74, 72, 72, 72, 2, 0.973, 0.973, []string{"Enterprise Outlook", "Yahoo", "google.com", "mx.partner.example"}},
		"203.0.113.5":  {false, KindForwarder, "fwd.lists.forwarder.example", 5, 5, 0, 5, 0, 1, 0, []string{"google.com"}},
		"198.51.100.7": {false, KindUnknown, "mail.spammer.example", 4, 0, 0, 0, 4, 0, 0, []string{"Yahoo", "google.com"}},
		"192.0.2.11":   {false, KindUnknown, "", 1, 1, 1, 1, 0, 1, 1, []string{"Enterprise Outlook"}},
	}
	if len(s.Sources) != len(tests) || s.Sources[0].IP != "192.0.2.10" {
		t.Fatalf("sources %+v; want ours first, then 4 in all", s.Sources)
	}
	for ip, w := range tests {
		src := sourceByIP(s, ip)
		if src == nil {
			t.Errorf("no source %s", ip)
			continue
		}
		got := want{src.Ours, src.Kind, src.PTR, src.Messages, src.DKIMAligned, src.SPFAligned, src.Pass, src.Fail,
			src.DKIMPassRate, src.SPFPassRate, src.Reporters}
		if got.ours != w.ours || got.kind != w.kind || got.ptr != w.ptr || got.msgs != w.msgs || got.dkim != w.dkim ||
			got.spf != w.spf || got.pass != w.pass || got.fail != w.fail || got.dkimRate != w.dkimRate ||
			got.spfRate != w.spfRate || !slices.Equal(got.reporters, w.reporters) {
			t.Errorf("%s: got %+v\nwant %+v", ip, got, w)
		}
		if src.Dispositions["none"] != src.Messages {
			t.Errorf("%s: dispositions %v", ip, src.Dispositions)
		}
	}
	ours := sourceByIP(s, "192.0.2.10")
	var codes []string
	for _, c := range ours.Causes {
		codes = append(codes, c.Code+": "+c.Detail)
		if c.Messages != 2 {
			t.Errorf("cause %s counts %d messages, want 2", c.Code, c.Messages)
		}
	}
	wantCauses := []string{
		CauseSelectorNotPublished + ": ed2026._domainkey.example.test: no key record in DNS",
		CauseSelectorNotPublished + ": the receiver's DKIM result for our selector rsa2026 (d=example.test) is fail: check that rsa2026._domainkey.example.test publishes the key we sign with",
		CauseUnalignedMailFrom + ": MAIL FROM domain bounce.other.example does not align with header From example.test (aspf=r)",
	}
	if !slices.Equal(codes, wantCauses) {
		t.Errorf("causes:\n%q\nwant\n%q", codes, wantCauses)
	}
	if js, err := json.Marshal(s); err != nil || len(js) == 0 {
		t.Errorf("summary does not encode: %v", err)
	}
}

// A failing row of ours that the receiver says was forwarded, whose rsa2026 signature
// broke on the way, is forwarding without ARC, not a selector problem.
func TestSummaryForwardingWithoutARC(t *testing.T) {
	logDir := filepath.Join(t.TempDir(), "sendlog")
	l := NewSendLog(logDir)
	l.Record(Send{Time: fixtureDay.Add(time.Hour), SourceIP: "192.0.2.10", HeaderFrom: "example.test", DKIM: []string{"d=example.test s=rsa2026"}, RcptDomain: "uni.example"})
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	rep := Report{Org: "gmail", ID: "1", Begin: fixtureDay, End: fixtureDay.Add(24*time.Hour - time.Second),
		Policy: PolicyPublished{Domain: "example.test", P: "none", Pct: -1},
		Records: []Record{{SourceIP: "192.0.2.10", Count: 3, Disposition: "none", DKIM: "fail", SPF: "fail",
			HeaderFrom: "example.test", EnvelopeTo: "gmail.example",
			DKIMResults: []DKIMResult{{Domain: "example.test", Selector: "rsa2026", Result: "fail"}},
			SPFResults:  []SPFResult{{Domain: "example.test", Scope: "mfrom", Result: "fail"}}}}}
	s, err := Summarize(context.Background(), []Report{rep}, SummaryOptions{Domain: "example.test", SendLogDir: logDir, Resolver: testResolver(t)})
	if err != nil {
		t.Fatal(err)
	}
	src := sourceByIP(s, "192.0.2.10")
	if src == nil || !src.Ours || len(src.Causes) != 1 || src.Causes[0].Code != CauseForwardingWithoutARC || src.Causes[0].Messages != 3 {
		t.Errorf("source %+v; want ours with one cause %s", src, CauseForwardingWithoutARC)
	}
}

// The verdicts: our own failures block; foreign failures above the threshold block; under
// it the next rung of the ladder is advised, rua kept.
func TestReadiness(t *testing.T) {
	im := testImporter(t)
	importAll(t, im)
	logDir := filepath.Join(t.TempDir(), "sendlog")
	ourSends(t, logDir)
	reps, err := im.Store.Reports("example.test", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(context.Background(), reps, SummaryOptions{Domain: "example.test", SendLogDir: logDir, Resolver: testResolver(t)})
	if err != nil {
		t.Fatal(err)
	}
	v := Readiness(s, ReadinessOptions{})
	if v.Ready || v.RejectShare != 0.0714 || v.QuarantineShare != 0.0714 || v.OursFailing != 2 || v.Failing != 6 ||
		len(v.Responsible) != 2 || v.Responsible[0].IP != "198.51.100.7" || v.Responsible[0].Failing != 4 || v.Responsible[1].IP != "192.0.2.10" ||
		v.Current != "v=DMARC1; p=none" || v.Next != v.Current {
		t.Errorf("verdict %+v", v)
	}

	clean := func(p PolicyPublished, fail int64) *Summary {
		return &Summary{Domain: "example.test", Messages: 1000, Pass: 1000 - fail, Fail: fail, Policy: p,
			Sources: []Source{{IP: "192.0.2.10", Ours: true, Kind: KindOurs, Messages: 900, Pass: 900},
				{IP: "198.51.100.7", Kind: KindUnknown, Messages: 100, Pass: 100 - fail, Fail: fail}}}
	}
	tests := []struct {
		name   string
		policy PolicyPublished
		fail   int64
		ready  bool
		next   string
	}{
		{"none to quarantine 25", PolicyPublished{P: "none", Pct: 100}, 5, true, "v=DMARC1; p=quarantine; pct=25; rua=mailto:dmarc@example.test"},
		{"quarantine 25 to 100", PolicyPublished{P: "quarantine", Pct: 25, ADKIM: "s"}, 10, true, "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test; adkim=s"},
		{"quarantine to reject 25", PolicyPublished{P: "quarantine", Pct: -1}, 0, true, "v=DMARC1; p=reject; pct=25; rua=mailto:dmarc@example.test"},
		{"reject stays", PolicyPublished{P: "reject", Pct: 100}, 0, true, "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"},
		{"too many foreign failures", PolicyPublished{P: "none", Pct: 100}, 11, false, "v=DMARC1; p=none; rua=mailto:dmarc@example.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := Readiness(clean(tc.policy, tc.fail), ReadinessOptions{RUA: "mailto:dmarc@example.test"})
			if v.Ready != tc.ready || v.Next != tc.next {
				t.Errorf("ready %v next %q (%s); want %v %q", v.Ready, v.Next, v.Reason, tc.ready, tc.next)
			}
		})
	}
	if v := Readiness(&Summary{Domain: "example.test"}, ReadinessOptions{}); v.Ready {
		t.Errorf("no reports: ready %+v", v)
	}
}

// The send log adds each flush to the day's file, across SendLog values (a restart).
func TestSendLogFlushAccumulates(t *testing.T) {
	dir := t.TempDir()
	s := Send{Time: fixtureDay.Add(time.Hour), SourceIP: "192.0.2.10", HeaderFrom: "example.test", DKIM: []string{"d=example.test s=b", "d=example.test s=a"}, RcptDomain: "x.example"}
	for range 2 {
		l := NewSendLog(dir)
		l.Record(s)
		l.Record(s)
		other := s
		other.Time = fixtureDay.Add(25 * time.Hour)
		l.Record(other)
		if err := l.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	days, err := ReadSendLog(dir, fixtureDay, fixtureDay.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := days["2026-12-01"], days["2026-12-02"]
	if len(d1) != 1 || d1[0].Count != 4 || !slices.Equal(d1[0].DKIM, []string{"d=example.test s=a", "d=example.test s=b"}) || len(d2) != 1 || d2[0].Count != 2 {
		t.Errorf("days %+v; want 4 on 12-01, 2 on 12-02", days)
	}
}

// Prune drops old reports (totals stay) and old send log days, and a full store says how
// to make room.
func TestPrune(t *testing.T) {
	im := testImporter(t)
	im.Limits.MaxReports = 2
	im.Store.Limits.MaxReports = 2
	for _, p := range []string{"testdata/google.xml", "testdata/microsoft.xml", "testdata/yahoo.xml"} {
		im.ImportPath(p) // the third is refused: the store is full
	}
	if tot, _ := im.Store.Totals(); tot.Reports != 2 {
		t.Fatalf("store holds %d, want 2 (its limit)", tot.Reports)
	}
	if res := im.ImportPath("testdata/dmarcbis.xml"); res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "prune") {
		t.Errorf("full store: %+v; want an error saying to prune", res)
	}
	if n, err := im.Store.Prune(fixtureDay); err != nil || n != 0 {
		t.Errorf("prune before the reports: %d, %v; want 0", n, err)
	}
	if n, err := im.Store.Prune(fixtureNow); err != nil || n != 2 {
		t.Errorf("prune: %d, %v; want 2", n, err)
	}
	if reps, _ := im.Store.Reports("example.test", time.Time{}); len(reps) != 0 {
		t.Errorf("%d reports left", len(reps))
	}
	if tot, _ := im.Store.Totals(); tot.Reports != 2 {
		t.Errorf("totals after prune: %d reports ingested, want 2", tot.Reports)
	}

	dir := t.TempDir()
	ourSends(t, dir)
	if n, err := PruneSendLog(dir, fixtureDay.Add(24*time.Hour)); err != nil || n != 1 {
		t.Errorf("prune send log: %d, %v; want 1", n, err)
	}
}

// Every node's send log makes its sources ours; an IPv4-mapped source address is
// compared as the IPv4 address reports name.
func TestSummaryJoinsSeveralSendLogs(t *testing.T) {
	im := testImporter(t)
	importAll(t, im)
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	ourSends(t, a)
	l := NewSendLog(b)
	l.Record(Send{Time: fixtureDay.Add(time.Hour), SourceIP: "::ffff:192.0.2.11", HeaderFrom: "news.example.test", DKIM: []string{"d=example.test s=esp1"}, RcptDomain: "outlook.example"})
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	reps, err := im.Store.Reports("example.test", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dirs []string
		ours bool
	}{{nil, false}, {[]string{b}, true}} {
		s, err := Summarize(context.Background(), reps, SummaryOptions{Domain: "example.test", SendLogDir: a, SendLogDirs: tc.dirs})
		if err != nil {
			t.Fatal(err)
		}
		if src := sourceByIP(s, "192.0.2.11"); src == nil || src.Ours != tc.ours || !sourceByIP(s, "192.0.2.10").Ours {
			t.Errorf("send logs %v: 192.0.2.11 %+v; want ours %v", tc.dirs, src, tc.ours)
		}
	}
}
