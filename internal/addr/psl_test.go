package addr

import "testing"

func TestPublicSuffixAndOrgDomain(t *testing.T) {
	tests := []struct {
		d       Domain
		suffix  bool
		section string
		org     Domain
	}{
		{"com", true, "ICANN", "com"},
		{"co.uk", true, "ICANN", "co.uk"},
		{"github.io", true, "private", "github.io"},
		{"example.com", false, "", "example.com"},
		{"news.client.example.co.uk", false, "", "example.co.uk"},
		{"alice.github.io", false, "", "alice.github.io"},
		{"www.alice.github.io", false, "", "alice.github.io"},
		{"foo.kawasaki.jp", true, "ICANN", "foo.kawasaki.jp"}, // wildcard rule *.kawasaki.jp
		{"city.kawasaki.jp", false, "", "city.kawasaki.jp"},   // exception rule !city.kawasaki.jp
		{"relay.example.test", false, "", "example.test"},     // not in the list: default rule "*"
		{"xn--55qx5d.xn--j6w193g", true, "ICANN", "xn--55qx5d.xn--j6w193g"},
		{"a.b.xn--55qx5d.xn--j6w193g", false, "", "b.xn--55qx5d.xn--j6w193g"},
		{"", false, "", ""},
	}
	for _, tt := range tests {
		if got := IsPublicSuffix(tt.d); got != tt.suffix {
			t.Errorf("IsPublicSuffix(%q) = %v, want %v", tt.d, got, tt.suffix)
		}
		section, ok := PublicSuffixSection(tt.d)
		if ok != tt.suffix || section != tt.section {
			t.Errorf("PublicSuffixSection(%q) = %q, %v; want %q, %v", tt.d, section, ok, tt.section, tt.suffix)
		}
		if got := OrgDomain(tt.d); got != tt.org {
			t.Errorf("OrgDomain(%q) = %q, want %q", tt.d, got, tt.org)
		}
	}
}

func TestDomainParent(t *testing.T) {
	for d, want := range map[Domain]Domain{
		"news.client.example": "client.example",
		"client.example":      "example",
		"example":             "",
		"":                    "",
	} {
		if got := d.Parent(); got != want {
			t.Errorf("%q.Parent() = %q, want %q", d, got, want)
		}
	}
}

func TestPatternDomain(t *testing.T) {
	for _, tt := range []struct {
		in     string
		domain Domain
		sub    bool
	}{
		{"bob@Example.COM", "example.com", false},
		{"*@client.example", "client.example", false},
		{"*@*.client.example", "client.example", true},
		{"*@*.bücher.example", "xn--bcher-kva.example", true},
	} {
		p, err := ParsePattern(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if p.Domain() != tt.domain || p.Subdomains() != tt.sub {
			t.Errorf("%q: Domain() = %q, Subdomains() = %v; want %q, %v", tt.in, p.Domain(), p.Subdomains(), tt.domain, tt.sub)
		}
	}
	if (Pattern{}).Domain() != "" || (Pattern{}).Matches(Address{Local: "x", Domain: "example.com"}) {
		t.Error("zero Pattern has a domain or matches")
	}
}
