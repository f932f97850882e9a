package submit

import (
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
