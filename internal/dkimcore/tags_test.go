package dkimcore

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseTags(t *testing.T) {
	tags, err := ParseTags(" v=1; a = rsa-sha256 ;\r\n h=from:\r\n\tto; b=ab\r\n cd;")
	if err != nil {
		t.Fatal(err)
	}
	want := Tags{{"v", "1"}, {"a", "rsa-sha256"}, {"h", "from: to"}, {"b", "ab cd"}}
	if len(tags) != len(want) {
		t.Fatalf("got %q", tags)
	}
	for i := range want {
		if tags[i] != want[i] {
			t.Errorf("tag %d = %q, want %q", i, tags[i], want[i])
		}
	}
	// RFC 6376 §3.2: one ';' may end the list; an empty tag-spec elsewhere is an error.
	for _, good := range []string{"a=b;", "a=b; ", "a=b;\r\n ", "a=b; c=d;", ""} {
		if _, err := ParseTags(good); err != nil {
			t.Errorf("ParseTags(%q): %v", good, err)
		}
	}
	for _, bad := range []string{"v=1; v=2", "novalue", "1a=x", "a b=c", "a=b;;", "a=b;; c=d", "; a=b", ";", "a=b; ;", "a=b;\r\n ;"} {
		if _, err := ParseTags(bad); err == nil {
			t.Errorf("ParseTags(%q) accepted", bad)
		}
	}
}

// TestParseTagsManyTags: a list of many distinct tags parses, and a repeat at its end is
// still found (with the map that keeps the check linear).
func TestParseTagsManyTags(t *testing.T) {
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "t%d=%d; ", i, i)
	}
	tags, err := ParseTags(b.String())
	if err != nil || len(tags) != 5000 {
		t.Fatalf("%d tags, %v", len(tags), err)
	}
	if _, err := ParseTags(b.String() + "t17=again"); err == nil || !strings.Contains(err.Error(), `"t17" repeated`) {
		t.Errorf("repeat not found: %v", err)
	}
}

func FuzzParseTags(f *testing.F) {
	f.Add("v=1; a=rsa-sha256; d=example.com; s=sel; h=from:to; bh=abc=; b=def")
	f.Add("i=1; cv=none")
	f.Fuzz(func(t *testing.T, s string) {
		tags, err := ParseTags(s)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, tag := range tags {
			if seen[tag.Name] || !validTagName(tag.Name) {
				t.Fatalf("bad tag %q accepted from %q", tag.Name, s)
			}
			seen[tag.Name] = true
		}
	})
}

// TestParseSignatureKinds: the tags each kind of field requires and their defaults.
func TestParseSignatureKinds(t *testing.T) {
	const rest = "a=rsa-sha256; d=example.com; s=sel; bh=AAAA; b=AAAA"
	tests := []struct {
		field   string
		err     string
		canon   Canonicalization
		headers string
	}{
		{field: "DKIM-Signature: v=1; h=from:to; " + rest, canon: Simple, headers: "from|to"},
		{field: "DKIM-Signature: h=from; " + rest, err: "no v= tag"},
		{field: "DKIM-Signature: v=1; " + rest, err: "no h= tag"},
		{field: "DKIM-Signature: v=1; h=to; " + rest, err: "does not include From"},
		{field: "DKIM-Signature: v=1; h=from::to; " + rest, err: "empty field name"},
		{field: "DKIM-Signature: v=1; h=from; i=@other.example; " + rest, err: "not in d=example.com"},
		{field: "DKIM-Signature: v=1; h=from; l=10; " + rest, err: "l="},
		{field: "ARC-Message-Signature: i=1; h=from:to::date; " + rest, canon: Relaxed, headers: "from|to|date"},
		{field: "ARC-Message-Signature: i=1; h=; " + rest, canon: Relaxed, headers: ""},
		{field: "ARC-Message-Signature: i=1; h=from; c=simple/simple; " + rest, canon: Simple, headers: "from"},
		{field: "ARC-Message-Signature: h=from; " + rest, err: "no i= tag"},
		{field: "ARC-Message-Signature: i=1; " + rest, err: "no h= tag"},
		{field: "ARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.com; s=sel; b=AAAA", canon: Relaxed},
		{field: "ARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.com; s=sel;; b=AAAA", err: "empty tag-spec after s="},
	}
	for _, tt := range tests {
		sig, err := ParseSignature(Field(tt.field + "\r\n"))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.field, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.field, err)
			continue
		}
		if sig.HeaderCanon != tt.canon || sig.BodyCanon != tt.canon || strings.Join(sig.Headers, "|") != tt.headers {
			t.Errorf("%s: c=%s/%s h=%q", tt.field, sig.HeaderCanon, sig.BodyCanon, sig.Headers)
		}
	}
	if _, err := ParseSignature(Field("DKIM-Signature: v=1; h=from; l=10; " + rest + "\r\n")); !IsPolicy(err) {
		t.Errorf("l= is not a policy error: %v", err)
	}
}
