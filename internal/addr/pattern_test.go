package addr

import (
	"strings"
	"testing"
)

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in, want string
		errPart  string
	}{
		{in: "bob@Example.COM", want: "bob@example.com"},
		{in: "*@Client.Example", want: "*@client.example"},
		{in: "*@*.client.example", want: "*@*.client.example"},
		{in: "*@bücher.example", want: "*@xn--bcher-kva.example"},
		{in: `"a b"@client.example`, want: `"a b"@client.example`},
		{in: "*", errPart: "every address"},
		{in: "*@*", errPart: "every address"},
		{in: "", errPart: "empty"},
		{in: "*@com", errPart: "top-level"},
		{in: "*@*.com", errPart: "top-level"},
		{in: "*@*.*.example.com", errPart: `"*" is allowed only`},
		{in: "bob*@example.com", errPart: `"*" is allowed only`},
		{in: "*bob@example.com", errPart: `"*" is allowed only`},
		{in: "*@exa*mple.com", errPart: `"*" is allowed only`},
		{in: "*@[192.0.2.1]", errPart: "address literal"},
		{in: "bob@[192.0.2.1]", errPart: "address literals"},
		{in: "@example.com", errPart: "invalid"},
		{in: "example.com", errPart: "missing @"},
		{in: "*@", errPart: "empty domain"},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.in)
		if tt.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errPart) || !strings.Contains(err.Error(), `"`+tt.in+`"`) {
				t.Errorf("ParsePattern(%q) = %v, %v; want error naming the pattern and containing %q", tt.in, p, err, tt.errPart)
			}
			continue
		}
		if err != nil || p.String() != tt.want {
			t.Errorf("ParsePattern(%q) = %q, %v; want %q", tt.in, p, err, tt.want)
		}
	}
}

func TestParsePatternPublicSuffix(t *testing.T) {
	tests := []struct {
		in    string
		parts []string // nil: the pattern is allowed
	}{
		{"*@co.uk", []string{`"co.uk" is a public suffix (ICANN section`, "a wildcard pattern may not cover it", `"*@example.co.uk"`}},
		{"*@*.co.uk", []string{`"co.uk" is a public suffix (ICANN section`, "may not cover every domain under it"}},
		{"*@CO.UK", []string{`"co.uk" is a public suffix (ICANN section`}},
		{"*@co.uk.", []string{`"co.uk" is a public suffix`}},
		{"*@github.io", []string{`"github.io" is a public suffix (private section`}},
		{"*@*.github.io", []string{`"github.io" is a public suffix (private section`}},
		{"*@*.com", []string{`"com" is a top-level domain`}},
		{"*@com", []string{`"com" is a top-level domain`}},
		// IDN suffixes, given as U-labels or A-labels (公司.香港: companies in Hong Kong).
		{"*@公司.香港", []string{`"xn--55qx5d.xn--j6w193g" (公司.香港) is a public suffix (ICANN section`, `"*@example.公司.香港"`}},
		{"*@*.xn--55qx5d.xn--j6w193g", []string{`(公司.香港) is a public suffix (ICANN section`}},
		{"*@*.ак.срб", []string{`"xn--80au.xn--90a3ac" (ак.срб) is a public suffix (ICANN section`}},
		// Wildcard rules of the list: "*.kawasaki.jp" (except city.kawasaki.jp), "*.sch.uk".
		{"*@foo.kawasaki.jp", []string{`"foo.kawasaki.jp" is a public suffix (ICANN section`}},
		{"*@*.kawasaki.jp", []string{`the domains directly under "kawasaki.jp" are public suffixes (ICANN section`, `wildcard rule "*.kawasaki.jp"`}},
		{"*@*.sch.uk", []string{`the domains directly under "sch.uk" are public suffixes`}},

		{"*@example.co.uk", nil},
		{"*@*.example.co.uk", nil},
		{"*@*.example.com", nil},
		{"*@example.test", nil}, // .test is not in the list; dev mode and the tests use it
		{"*@*.example.test", nil},
		{"*@alice.github.io", nil},
		{"*@city.kawasaki.jp", nil}, // exception rule "!city.kawasaki.jp"
		{"*@example.公司.香港", nil},
		// Exact addresses at a public suffix: only the registry receives mail there.
		{"postmaster@co.uk", nil},
		{"bob@github.io", nil},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.in)
		if tt.parts == nil {
			if err != nil {
				t.Errorf("ParsePattern(%q): %v", tt.in, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParsePattern(%q) = %v, want an error", tt.in, p)
			continue
		}
		for _, part := range append(tt.parts, `may_send_as pattern "`+tt.in+`"`) {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("ParsePattern(%q) error %q does not contain %q", tt.in, err, part)
			}
		}
	}
}
