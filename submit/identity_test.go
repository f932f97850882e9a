package submit

import (
	"path/filepath"
	"strings"
	"testing"

	"sealgate/internal/addr"
)

func mustAddr(t *testing.T, s string) addr.Address {
	t.Helper()
	a, err := addr.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

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

func TestPermits(t *testing.T) {
	id := NewIdentity("alice", KindLogin, MustParsePatterns(
		"*@client.example", "*@*.sub.example", "bob@other.example", "*@bücher.example", `"x y"@quoted.example`))
	tests := []struct {
		a    string
		want bool
	}{
		{"anyone@client.example", true},
		{"Anyone@CLIENT.example", true},
		{"x@a.client.example", false}, // *@domain does not cover subdomains
		{"x@badclient.example", false},
		{"x@client.example.evil.example", false},
		{"x@a.sub.example", true},
		{"x@b.a.sub.example", true},
		{"x@sub.example", false}, // *@*.domain does not cover the apex
		{"x@asub.example", false},
		{"bob@other.example", true},
		{"BOB@Other.Example", true},
		{"bob2@other.example", false},
		{"bob+tag@other.example", false},
		{"b.ob@other.example", false},
		{"x@bücher.example", true},
		{"x@xn--bcher-kva.example", true},
		{"x@bucher.example", false},
		{`"x y"@quoted.example`, true},
		{`"X Y"@quoted.example`, true},
		{"xy@quoted.example", false},
		{`"bob@other.example"@client.example`, true}, // an address of client.example
		{`"x@client.example"@evil.example`, false},   // not an address of client.example
		{"client.example!x@evil.example", false},     // bang path: local part text
		{"x%client.example@evil.example", false},     // percent hack: local part text
		{"x@[192.0.2.1]", false},
	}
	for _, tt := range tests {
		if got := id.Permits(mustAddr(t, tt.a)); got != tt.want {
			t.Errorf("Permits(%q) = %v, want %v", tt.a, got, tt.want)
		}
	}
	if got := id.AllowedString(); got != `*@client.example, *@*.sub.example, bob@other.example, *@xn--bcher-kva.example, "x y"@quoted.example` {
		t.Errorf("AllowedString() = %q", got)
	}
	var none *Identity
	if none.Permits(mustAddr(t, "x@client.example")) || none.AllowedString() != "nothing" {
		t.Error("nil identity permits")
	}
	if (&Identity{Name: "n", Kind: KindClientNetwork}).Permits(mustAddr(t, "x@client.example")) {
		t.Error("identity without patterns permits")
	}
	if !NewIdentity("x", KindLogin, nil).Seal {
		t.Error("Seal not on by default")
	}
	for k, want := range map[IdentityKind]string{KindLogin: "login", KindClientCert: "client certificate", KindClientNetwork: "client network"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q", k, k.String())
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

// A public-suffix pattern is reported with its key path by configuration checks
// ("sealgate config check") and with its line by the users file.
func TestPublicSuffixPatternReported(t *testing.T) {
	dir := goodConfigDir(t)
	hash, _ := HashPassword("pw")
	cfg := strings.Replace(goodConfig, `may_send_as: ["*@acme.example", "*@bücher.example"]`,
		`may_send_as: ["*@acme.example", "*@*.co.uk", "*@github.io"]`, 1)
	writeFiles(t, dir, map[string]string{
		"sealgate.yaml": cfg,
		"users":         "alice " + hash + " *@corp.example\nbob " + hash + " *@*.co.uk\n",
	})
	_, err := LoadConfig(filepath.Join(dir, "sealgate.yaml"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`client_networks[0].may_send_as[1]: may_send_as pattern "*@*.co.uk": "co.uk" is a public suffix (ICANN section`,
		`client_networks[0].may_send_as[2]: may_send_as pattern "*@github.io": "github.io" is a public suffix (private section`,
		filepath.Join(dir, "users") + `:2: login "bob": may_send_as pattern "*@*.co.uk": "co.uk" is a public suffix`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q", want)
		}
	}
	if strings.Contains(err.Error(), "may_send_as[0]") || strings.Contains(err.Error(), ":1:") {
		t.Errorf("good pattern or line reported:\n%v", err)
	}
	if t.Failed() {
		t.Logf("all problems:\n%v", err)
	}
}
