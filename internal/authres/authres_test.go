package authres

import (
	"strings"
	"testing"

	"sealgate/internal/dkimcore"
)

func TestParse(t *testing.T) {
	id, res, err := Parse(" (the relay) relay.example 1;\r\n dkim=pass (good sig) reason=\"key ok; fine\" header.d=example.com header.i=@example.com\r\n\theader.b=\"ab/c+d=\";" +
		" spf=none smtp.mailfrom=\"a b\"@example.com; auth=pass smtp.auth=ana@corp.example (TLS; via 587);\r\n arc/1=PASS (i=2) header.oldest-pass=0;")
	if err != nil {
		t.Fatal(err)
	}
	if id != "relay.example" {
		t.Errorf("authserv-id %q", id)
	}
	if len(res) != 4 {
		t.Fatalf("got %d results: %+v", len(res), res)
	}
	d := res[0]
	if d.Method != "dkim" || d.Value != "pass" || d.Reason != "key ok; fine" {
		t.Errorf("dkim result %+v", d)
	}
	if v, _ := d.Get("header", "d"); v != "example.com" {
		t.Errorf("header.d = %q", v)
	}
	if v, _ := d.Get("HEADER", "b"); v != "ab/c+d=" {
		t.Errorf("header.b = %q", v)
	}
	if v, _ := res[1].Get("smtp", "mailfrom"); v != `"a b"@example.com` {
		t.Errorf("smtp.mailfrom = %q", v)
	}
	if v, _ := res[2].Get("smtp", "auth"); v != "ana@corp.example" || res[2].Method != "auth" {
		t.Errorf("auth result %+v", res[2])
	}
	if a := res[3]; a.Method != "arc" || a.MethodVersion != "1" || a.Value != "pass" {
		t.Errorf("arc result %+v", a)
	}
	if v, _ := res[3].Get("header", "oldest-pass"); v != "0" {
		t.Errorf("oldest-pass %q", v)
	}

	for _, none := range []string{"example.org; none", "example.org;none ", "example.org (x) ; (y) none (z)", "example.org", `"example.org"; none`} {
		id, res, err := Parse(none)
		if err != nil || id != "example.org" || len(res) != 0 {
			t.Errorf("Parse(%q) = %q %v %v", none, id, res, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{
		"",
		"   ",
		"(unterminated example.org; none",
		"example.org; dkim",
		"example.org; dkim=",
		"example.org; =pass",
		"example.org; dkim=pass header.d",
		"example.org; dkim=pass header=x",
		"example.org; dkim=pass header.d=\"unterminated",
		"example.org; none; dkim=pass",
		"example.org; dkim=pass; none",
		"example.org; dkim/x=pass",
		"example.org x; dkim=pass",
		"example.org; dkim=pass header.d=a reason=late",
		"example.org " + strings.Repeat("(", 60) + strings.Repeat(")", 60) + "; none",
	} {
		if id, res, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted: %q %+v", bad, id, res)
		} else if _, ok := err.(*ParseError); !ok {
			t.Errorf("Parse(%q): error %T, want *ParseError", bad, err)
		}
	}
}

// TestSplitIgnoresQuotedSemicolons is what a split at every ';' gets wrong.
func TestSplitIgnoresQuotedSemicolons(t *testing.T) {
	got := SplitResinfo(`relay.example; dkim=fail reason="bad; sig" (see; here)  header.d=x;  spf=pass`)
	want := []string{"relay.example", `dkim=fail reason="bad; sig" (see; here) header.d=x`, "spf=pass"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestQuoteValue(t *testing.T) {
	for in, want := range map[string]string{
		"ana@corp.example":   "ana@corp.example",
		"@corp.example":      "@corp.example",
		"corp.example":       "corp.example",
		"u-0a1b2c":           "u-0a1b2c",
		"":                   `""`,
		"a b":                `"a b"`,
		`say "hi"\`:          `"say \"hi\"\\"`,
		"a;b":                `"a;b"`,
		"a(b)":               `"a(b)"`,
		"x/y+z=":             `"x/y+z="`,
		"ana@@corp.example":  `"ana@@corp.example"`,
		"a..b@corp.example":  `"a..b@corp.example"`,
		"ana@corp example":   `"ana@corp example"`,
		"ctl\r\nbcc: x":      `"ctl??bcc: x"`,
		"josé@corp.example":  `"josé@corp.example"`,
		"a?b":                `"a?b"`,
		"first.last+tag@x.y": "first.last+tag@x.y",
	} {
		if got := QuoteValue(in); got != want {
			t.Errorf("QuoteValue(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestFormatRoundTrip formats results, checks the folding and parses them back.
func TestFormatRoundTrip(t *testing.T) {
	results := []Result{
		{Method: "dkim", Value: "pass", Props: []Prop{
			{"header", "d", "a-rather-long-signing-domain.example.com"}, {"header", "s", "selector-2026-11"},
			{"header", "a", "rsa-sha256"}, {"header", "b", "AbCdEf/+12=="}, {"header", "i", "@a-rather-long-signing-domain.example.com"},
		}},
		{Method: "auth", Value: "pass", Props: []Prop{{"smtp", "auth", "ana maria@corp.example"}}},
		{Method: "dkim", Value: "fail", Reason: "body hash did not verify; changed in transit", Props: []Prop{{"header", "d", "x.example"}}},
	}
	f := format("relay.example", results...)
	if !f.Is(FieldName) || !strings.HasSuffix(string(f), "\r\n") {
		t.Fatalf("not a field: %q", f)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(f), "\r\n"), "\r\n") {
		if len(line) > maxLine {
			t.Errorf("line of %d columns: %q", len(line), line)
		}
	}
	if !strings.Contains(string(f), "\r\n ") {
		t.Errorf("no folding in %q", f)
	}
	id, got, err := Parse(f.Value())
	if err != nil {
		t.Fatalf("%v in %q", err, f)
	}
	if id != "relay.example" || len(got) != len(results) {
		t.Fatalf("round trip: %q %+v", id, got)
	}
	for i := range results {
		if got[i].String() != results[i].String() {
			t.Errorf("result %d: %s, want %s", i, got[i], results[i])
		}
	}
	if f := format("relay.example"); string(f) != "Authentication-Results: relay.example; none\r\n" {
		t.Errorf("no results: %q", f)
	}
	// A resinfo without white space cannot be folded: written whole rather than broken.
	long := strings.Repeat("x", 100)
	f = FormatField("ARC-Authentication-Results", "i=1; relay.example", []string{"a=pass smtp.x=" + long})
	if !strings.Contains(string(f), "smtp.x="+long) {
		t.Errorf("long value broken: %q", f)
	}
	// The ARC-Authentication-Results form stays as package arc has always written it.
	f = FormatField("ARC-Authentication-Results", "i=3; fwd.example", []string{"auth=pass smtp.auth=ana@corp.example", "arc=pass"})
	if want := "ARC-Authentication-Results: i=3; fwd.example;\r\n auth=pass smtp.auth=ana@corp.example;\r\n arc=pass\r\n"; string(f) != want {
		t.Errorf("AAR = %q, want %q", f, want)
	}
}

func header(t *testing.T, s string) dkimcore.Header {
	t.Helper()
	var h dkimcore.Header
	for _, line := range strings.SplitAfter(s, "\r\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			h[len(h)-1] = append(h[len(h)-1], line...)
			continue
		}
		h = append(h, dkimcore.Field(line))
	}
	return h
}

func TestStrip(t *testing.T) {
	hdr := header(t, "Authentication-Results: Relay.Example.; auth=pass smtp.auth=mallory\r\n"+
		"Authentication-Results: (forged) relay.example; dkim=pass\r\n"+
		"Authentication-Results: \"relay.example\"; dkim=pass\r\n"+
		"Authentication-Results: mx.relay.example; dkim=pass\r\n"+
		"Authentication-Results: other.example; dkim=fail\r\n"+
		"Authentication-Results: host.relay.example\r\n ; spf=pass\r\n"+
		"Authentication-Results: relay.example; this is (not parseable\r\n"+
		"ARC-Authentication-Results: i=1; relay.example; none\r\n"+
		"From: a@b.example\r\n")
	out, n := Strip(hdr, "relay.example", "host.relay.example")
	if n != 5 {
		t.Errorf("removed %d, want 5", n)
	}
	var kept []string
	for _, f := range out {
		kept = append(kept, strings.TrimSpace(f.Value()))
	}
	want := []string{"mx.relay.example; dkim=pass", "other.example; dkim=fail", "i=1; relay.example; none", "a@b.example"}
	if strings.Join(kept, "|") != strings.Join(want, "|") {
		t.Errorf("kept %q, want %q", kept, want)
	}
	if len(hdr) != 9 || !hdr[0].Is(FieldName) {
		t.Error("Strip modified its input")
	}
}

func TestResultsFor(t *testing.T) {
	hdr := header(t, "Authentication-Results: Relay.Example.; auth=pass (TLS) smtp.auth=ana@corp.example;\r\n spf=none smtp.mailfrom=corp.example\r\n"+
		"Authentication-Results: other.example; dkim=fail\r\n"+
		"Authentication-Results: relay.example; none\r\n"+
		"From: a@b.example\r\n")
	got := ResultsFor(hdr, "relay.example")
	want := []string{"auth=pass (TLS) smtp.auth=ana@corp.example", "spf=none smtp.mailfrom=corp.example"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ResultsFor = %q, want %q", got, want)
	}
	stripped, n := Strip(hdr, "relay.example")
	if n != 2 || len(stripped) != len(hdr)-2 || !stripped[0].Is(FieldName) {
		t.Errorf("Strip removed %d: %q", n, stripped)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("relay.example; dkim=pass header.d=example.com")
	f.Add("example.org; none")
	f.Fuzz(func(t *testing.T, v string) {
		id, results, err := Parse(v)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T", err)
			}
			return
		}
		if id == "" {
			t.Fatalf("accepted %q without an authserv-id", v)
		}
		// What we format from what we parsed parses back to the same results.
		again, results2, err := Parse(format(id, results...).Value())
		if err != nil {
			t.Fatalf("reparse of %q: %v (formatted %q)", v, err, format(id, results...))
		}
		if !SameAuthServID(again, id) && QuoteValue(id) == id {
			t.Fatalf("authserv-id %q became %q", id, again)
		}
		if len(results2) != len(results) {
			t.Fatalf("%d results became %d", len(results), len(results2))
		}
		for i := range results {
			if results[i].String() != results2[i].String() {
				t.Fatalf("result %q became %q", results[i], results2[i])
			}
		}
	})
}

// format returns an Authentication-Results field for authservID with results, folded as
// FormatField does.
func format(authservID string, results ...Result) dkimcore.Field {
	infos := make([]string, len(results))
	for i, r := range results {
		infos[i] = r.String()
	}
	return FormatField(FieldName, quoteReason(authservID), infos)
}
