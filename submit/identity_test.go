package submit

import (
	"testing"

	"sealgate/internal/addr"
	"sealgate/internal/config"
)

// MustParsePatterns parses may_send_as patterns for the tests of this package and panics
// on error.
func MustParsePatterns(ss ...string) []addr.Pattern {
	ps, err := addr.ParsePatterns(ss)
	if err != nil {
		panic(err)
	}
	return ps
}

func mustAddr(t *testing.T, s string) addr.Address {
	t.Helper()
	a, err := addr.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
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

func TestIdentityFromRules(t *testing.T) {
	no := false
	id, err := IdentityFromRules("acme", KindClientNetwork, config.SenderRules{
		MaySendAs: []string{"*@acme.example", "*@bücher.example"}, Seal: &no, RatePerMinute: 10,
		MaxRecipients: 5, AllowNullSender: true, AllowUnsigned: true,
	})
	if err != nil || id.Kind != KindClientNetwork || id.Name != "acme" || id.Seal || id.RatePerMinute != 10 || id.MaxRecipients != 5 ||
		!id.AllowNullSender || !id.AllowUnsigned || id.AllowedString() != "*@acme.example, *@xn--bcher-kva.example" {
		t.Errorf("network identity: %+v %v", id, err)
	}
	id, err = IdentityFromRules("gw", KindClientCert, config.SenderRules{MaySendAs: []string{"news@acme.example"}})
	if err != nil || id.Kind != KindClientCert || !id.Seal || id.AllowNullSender || id.AllowUnsigned {
		t.Errorf("certificate identity with defaults: %+v %v", id, err)
	}
	if _, err := IdentityFromRules("bad", KindClientCert, config.SenderRules{MaySendAs: []string{"*@co.uk"}}); err == nil {
		t.Error("public-suffix pattern accepted")
	}
}
