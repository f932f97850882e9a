package dkimcore

import "testing"

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
	for _, bad := range []string{"v=1; v=2", "novalue", "1a=x", "a b=c"} {
		if _, err := ParseTags(bad); err == nil {
			t.Errorf("ParseTags(%q) accepted", bad)
		}
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
