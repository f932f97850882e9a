package addr

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDomain(t *testing.T) {
	tests := []struct {
		in   string
		want Domain
		err  bool
	}{
		{in: "Example.COM", want: "example.com"},
		{in: "example.com.", want: "example.com"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "BÜCHER.example", err: true}, // not IDNA 2008 as written: upper-case U-label
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "ｅｘａｍｐｌｅ．com", err: true}, // fullwidth: UTS #46 would map it, IDNA 2008 does not
		{in: "a-b.example", want: "a-b.example"},
		{in: "localhost", want: "localhost"},
		{in: "", err: true},
		{in: ".", err: true},
		{in: "a..example", err: true},
		{in: ".example", err: true},
		{in: "example..", err: true},
		{in: "[192.0.2.1]", err: true},
		{in: "192.0.2.1", err: true},
		{in: "2001:db8::1", err: true},
		{in: "1.2.3.4.5", err: true},
		{in: "-a.example", err: true},
		{in: "a_b.example", err: true},
		{in: "a b.example", err: true},
		{in: "a@b.example", err: true},
		{in: "xn--zz.example", err: true}, // invalid punycode
		{in: strings.Repeat("a", 64) + ".example", err: true},
		{in: strings.Repeat("a", 63) + ".example", want: Domain(strings.Repeat("a", 63) + ".example")},
		{in: strings.Repeat("abcdefghi.", 25) + "example", err: true}, // 257 chars
	}
	for _, tt := range tests {
		got, err := ParseDomain(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseDomain(%q) = %q, want error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestDomainMethods(t *testing.T) {
	d := Domain("xn--bcher-kva.example")
	if got := d.Unicode(); got != "bücher.example" {
		t.Errorf("Unicode() = %q", got)
	}
	sub := []struct {
		d, parent Domain
		want      bool
	}{
		{"a.example.com", "example.com", true},
		{"x.a.example.com", "example.com", true},
		{"example.com", "example.com", false},
		{"badexample.com", "example.com", false},
		{"com", "example.com", false},
		{"a.example.com", "", false},
	}
	for _, tt := range sub {
		if got := tt.d.IsSubdomainOf(tt.parent); got != tt.want {
			t.Errorf("%q.IsSubdomainOf(%q) = %v", tt.d, tt.parent, got)
		}
	}
	if !IsAddressLiteral("[192.0.2.1]") || IsAddressLiteral("example.com") {
		t.Error("IsAddressLiteral")
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in      string
		local   string
		domain  Domain
		literal string
		quoted  bool
		str     string
		err     bool
	}{
		{in: "Bob@Example.COM", local: "Bob", domain: "example.com", str: "Bob@example.com"},
		{in: "bob@bücher.example", local: "bob", domain: "xn--bcher-kva.example", str: "bob@xn--bcher-kva.example"},
		{in: `"bob"@example.com`, local: "bob", domain: "example.com", str: "bob@example.com"},
		{in: `"ops@partner.example"@relay.example`, local: "ops@partner.example", domain: "relay.example", quoted: true, str: `"ops@partner.example"@relay.example`},
		{in: `"a\"b\\c"@x.example`, local: `a"b\c`, domain: "x.example", quoted: true, str: `"a\"b\\c"@x.example`},
		{in: `"a b"@x.example`, local: "a b", domain: "x.example", quoted: true},
		{in: "ops%partner.example@relay.example", local: "ops%partner.example", domain: "relay.example"},
		{in: "partner.example!ops@relay.example", local: "partner.example!ops", domain: "relay.example"},
		{in: "ops@[192.0.2.99]", local: "ops", literal: "[192.0.2.99]", str: "ops@[192.0.2.99]"},
		{in: "ops@[ipv6:2001:DB8::1]", local: "ops", literal: "[IPv6:2001:db8::1]"},
		{in: "jörg@example.com", local: "jörg", domain: "example.com"},
		{in: strings.Repeat("a", 64) + "@x.example", local: strings.Repeat("a", 64), domain: "x.example"},
		{in: strings.Repeat("a", 65) + "@x.example", err: true},
		{in: "a@" + strings.Repeat("abcdefghi.", 25) + "example", err: true},
		{in: "a.@x.example", err: true},
		{in: ".a@x.example", err: true},
		{in: "a..b@x.example", err: true},
		{in: "a b@x.example", err: true},
		{in: "a@b@x.example", err: true},
		{in: "@x.example", err: true},
		{in: `""@x.example`, err: true},
		{in: `"a@x.example`, err: true},
		{in: "a@x.example.", err: true},
		{in: "a@", err: true},
		{in: "a", err: true},
		{in: "a@[999.0.0.1]", err: true},
		{in: "a@[tag:x]", err: true},
		{in: "a@x_y.example", err: true},
		{in: "a\x00b@x.example", err: true},
	}
	for _, tt := range tests {
		a, err := ParseAddress(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseAddress(%q) = %+v, want error", tt.in, a)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", tt.in, err)
			continue
		}
		if a.Local != tt.local || a.Domain != tt.domain || a.AddressLiteral != tt.literal || a.Quoted != tt.quoted {
			t.Errorf("ParseAddress(%q) = %+v", tt.in, a)
		}
		if tt.str != "" && a.String() != tt.str {
			t.Errorf("ParseAddress(%q).String() = %q, want %q", tt.in, a.String(), tt.str)
		}
		b, err := ParseAddress(a.String())
		if err != nil || !b.Equal(a) {
			t.Errorf("round trip of %q: %+v, %v", a.String(), b, err)
		}
	}
}

func TestAddressEqual(t *testing.T) {
	must := func(s string) Address {
		a, err := ParseAddress(s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		a, b string
		want bool
	}{
		{"Bob@Example.com", "bob@example.COM", true},
		{`"bob"@example.com`, "bob@example.com", true},
		{"bob@bücher.example", "BOB@xn--bcher-kva.example", true},
		{"bob+x@example.com", "bob@example.com", false},
		{"b.ob@example.com", "bob@example.com", false},
		{"JÖRG@example.com", "jörg@example.com", false}, // ASCII folding only
		{"bob@a.example.com", "bob@example.com", false},
		{"bob@[192.0.2.1]", "bob@[192.0.2.1]", true},
	}
	for _, tt := range tests {
		if got := must(tt.a).Equal(must(tt.b)); got != tt.want {
			t.Errorf("%q Equal %q = %v", tt.a, tt.b, got)
		}
	}
}

func TestParsePath(t *testing.T) {
	tests := []struct {
		in      string
		null    bool
		local   string
		domain  Domain
		literal string
		quoted  bool
		route   string
		err     bool
	}{
		{in: "", null: true},
		{in: "<>", null: true},
		{in: "alice@Client.Example", local: "alice", domain: "client.example"},
		{in: "@a.example,@b.example:user@dom.example", local: "user", domain: "dom.example", route: "@a.example,@b.example"},
		{in: "@relay.corp.example:ops@partner.example", local: "ops", domain: "partner.example", route: "@relay.corp.example"},
		// go-smtp has already removed the quotes of <"ops@partner.example"@relay.corp.example>.
		{in: "ops@partner.example@relay.corp.example", local: "ops@partner.example", domain: "relay.corp.example", quoted: true},
		{in: "ops%partner.example@relay.corp.example", local: "ops%partner.example", domain: "relay.corp.example"},
		{in: "partner.example!ops@relay.corp.example", local: "partner.example!ops", domain: "relay.corp.example"},
		{in: "ops@[192.0.2.99]", local: "ops", literal: "[192.0.2.99]"},
		{in: "a@b@[192.0.2.99]", local: "a@b", literal: "[192.0.2.99]", quoted: true},
		{in: "a b@x.example", local: "a b", domain: "x.example", quoted: true},
		{in: "OPS@PARTNER.EXAMPLE", local: "OPS", domain: "partner.example"},
		{in: "ops@partner.example.", err: true},
		{in: "ops", err: true},
		{in: "@x.example", err: true},
		{in: "@a.example:", err: true},
		{in: "@a.example:b:c@d.example", local: "b:c", domain: "d.example", route: "@a.example", quoted: true},
		{in: "@,@:a@b.example", err: true},
		{in: "ops@", err: true},
		{in: "ops@[1.2.3]", err: true},
		{in: "a\tb@x.example", err: true},
		{in: strings.Repeat("a", 60) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + ".example", err: true},
	}
	for _, tt := range tests {
		p, err := ParsePath(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParsePath(%q) = %+v, want error", tt.in, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tt.in, err)
			continue
		}
		if p.Null != tt.null || p.Route != tt.route || p.Addr.Local != tt.local || p.Addr.Domain != tt.domain ||
			p.Addr.AddressLiteral != tt.literal || p.Addr.Quoted != tt.quoted {
			t.Errorf("ParsePath(%q) = %+v", tt.in, p)
		}
	}
}

func TestParseHeaderMailboxes(t *testing.T) {
	type mb struct{ name, addr, group string }
	tests := []struct {
		in         string
		want       []mb
		emptyGroup bool
		err        bool
	}{
		{in: "alice@client.example", want: []mb{{"", "alice@client.example", ""}}},
		{in: "Alice <Alice@Client.EXAMPLE>", want: []mb{{"Alice", "Alice@client.example", ""}}},
		{in: `"Doe, John" <j@x.example>, b@y.example`, want: []mb{{"Doe, John", "j@x.example", ""}, {"", "b@y.example", ""}}},
		{in: "a@x.example (comment, with: colon; and semicolon)", want: []mb{{"comment, with: colon; and semicolon", "a@x.example", ""}}},
		{in: "=?utf-8?q?J=C3=B6rg?= <j@x.example>", want: []mb{{"Jörg", "j@x.example", ""}}},
		{in: "=?iso-8859-1?q?J=F6rg?= <j@x.example>", want: []mb{{"Jörg", "j@x.example", ""}}},
		{in: "=?us-ascii?q?Bob?= <b@x.example>", want: []mb{{"Bob", "b@x.example", ""}}},
		// Other charsets, by their WHATWG Encoding Standard labels.
		{in: "=?windows-1252?q?=93Caf=E9=94_=80?= <a@x.example>", want: []mb{{"\u201cCafé\u201d €", "a@x.example", ""}}},
		{in: "=?CP1252?Q?=85?= <a@x.example>", want: []mb{{"\u2026", "a@x.example", ""}}},
		{in: "=?iso-8859-15?q?=A4uro_=BDuvre?= <a@x.example>", want: []mb{{"€uro œuvre", "a@x.example", ""}}}, // ¤uro ½uvre in ISO-8859-1
		{in: "=?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?= <a@x.example>", want: []mb{{"山田太郎", "a@x.example", ""}}},
		{in: "=?gb2312?B?1cXOsA==?= <a@x.example>", want: []mb{{"张伟", "a@x.example", ""}}},
		{in: "=?shift_jis?B?jlKTYw==?= <a@x.example>", want: []mb{{"山田", "a@x.example", ""}}},
		{in: "=?koi8-r?b?6dfBzg==?= <a@x.example>", want: []mb{{"Иван", "a@x.example", ""}}},
		{in: "=?big5?b?pP0=?= <a@x.example>", want: []mb{{"王", "a@x.example", ""}}},
		{in: "=?ks_c_5601-1987?b?seg=?= <a@x.example>", want: []mb{{"김", "a@x.example", ""}}},
		{in: "=?utf-8*de?q?J=C3=B6rg?= <a@x.example>", want: []mb{{"Jörg", "a@x.example", ""}}}, // RFC 2231 §5 language
		{in: "=?koi8-r?b?6dfBzg==?=: a@x.example;", want: []mb{{"", "a@x.example", "Иван"}}},
		// Not encoded-words (bad base64, unknown encoding): left as written.
		{in: `"=?x-nonsense?b?!!?=" <a@x.example>`, want: []mb{{"=?x-nonsense?b?!!?=", "a@x.example", ""}}},
		{in: `"=?x-nonsense?x?abc?=" <a@x.example>`, want: []mb{{"=?x-nonsense?x?abc?=", "a@x.example", ""}}},
		{in: `"ops@partner.example"@relay.example`, want: []mb{{"", `"ops@partner.example"@relay.example`, ""}}},
		{in: "a@bücher.example", want: []mb{{"", "a@xn--bcher-kva.example", ""}}},
		{in: "Team: a@x.example, b@y.example;", want: []mb{{"", "a@x.example", "Team"}, {"", "b@y.example", "Team"}}},
		{in: "Team: a@x.example;, c@z.example", want: []mb{{"", "a@x.example", "Team"}, {"", "c@z.example", ""}}},
		{in: `"Odd: name" <a@x.example>`, want: []mb{{"Odd: name", "a@x.example", ""}}},
		{in: "a@x.example\r\n (folded)", want: []mb{{"folded", "a@x.example", ""}}},
		{in: "x@[192.0.2.1]", want: []mb{{"", "x@[192.0.2.1]", ""}}},
		{in: "undisclosed-recipients:;", emptyGroup: true},
		{in: "undisclosed-recipients: ;", emptyGroup: true},
		{in: "a@x.example, Nobody: (just a comment) ;", emptyGroup: true},
		{in: "", err: true},
		{in: "   ", err: true},
		{in: "a@x.example,", err: true},
		{in: "a@x.example,,b@y.example", err: true},
		{in: "Doe, John <j@x.example>", err: true},
		{in: "a@", err: true},
		{in: "<a@x.example", err: true},
		{in: "a@x.example>", err: true},
		{in: "G: a@x.example", err: true},
		{in: "G: H: a@x.example;;", err: true},
		{in: "G: a@x.example; junk", err: true},
		{in: "a;b@x.example", err: true},
		{in: `"unterminated <a@x.example>`, err: true},
		{in: "(unterminated a@x.example", err: true},
		{in: "=?x-nonsense?q?abc?= <a@x.example>", err: true},
		{in: `"=?x-nonsense?q?abc?=" <a@x.example>`, err: true},
		{in: "=?x-nonsense?q?abc?=: a@x.example;", err: true},
		{in: "a@x.example (=?x-nonsense?q?abc?=)", err: true},
		{in: "=?utf-7?q?ceo+AEA-bank.example?= <a@x.example>", err: true},
		{in: "=?iso-2022-kr?q?abc?= <a@x.example>", err: true},    // WHATWG "replacement"
		{in: "=?x-user-defined?q?abc?= <a@x.example>", err: true}, // not a mail charset
		{in: "a@x_y.example", err: true},
		{in: "a@x.example.", err: true},
	}
	for _, tt := range tests {
		got, err := ParseHeaderMailboxes(tt.in)
		var ge *EmptyGroupError
		var se *SyntaxError
		switch {
		case tt.emptyGroup:
			if !errors.As(err, &ge) {
				t.Errorf("ParseHeaderMailboxes(%q) = %v, %v; want EmptyGroupError", tt.in, got, err)
			}
			continue
		case tt.err:
			if !errors.As(err, &se) {
				t.Errorf("ParseHeaderMailboxes(%q) = %v, %v; want SyntaxError", tt.in, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseHeaderMailboxes(%q): %v", tt.in, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("ParseHeaderMailboxes(%q) = %+v", tt.in, got)
			continue
		}
		for i, w := range tt.want {
			if got[i].Name != w.name || got[i].Addr.String() != w.addr || got[i].Group != w.group {
				t.Errorf("ParseHeaderMailboxes(%q)[%d] = {%q %q %q}, want %+v", tt.in, i, got[i].Name, got[i].Addr.String(), got[i].Group, w)
			}
		}
	}
}

// An encoded-word in a charset we cannot decode makes the field unparsable, with
// an error naming the charset: we would not know what a reader is shown.
func TestParseHeaderMailboxesUnknownCharset(t *testing.T) {
	for _, in := range []string{
		"=?x-nonsense?q?ceo=40bank.example?= <a@client.example>",
		`"=?X-Nonsense?q?ceo=40bank.example?=" <a@client.example>`,
		"=?x-nonsense?q?Team?=: a@client.example;",
	} {
		_, err := ParseHeaderMailboxes(in)
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), `unsupported charset "x-nonsense" in encoded-word`) {
			t.Errorf("ParseHeaderMailboxes(%q) error = %v; want a SyntaxError naming charset \"x-nonsense\"", in, err)
		}
	}
}

func TestDisplayNameLooksLikeAddress(t *testing.T) {
	tests := []struct {
		header string
		want   string // "" = none
	}{
		{`"ceo@bank.example" <x@client.example>`, "ceo@bank.example"},
		{`"CEO@Bank.Example" <x@client.example>`, "CEO@bank.example"},
		{"\"ceo\uff20bank.example\" <x@client.example>", "ceo@bank.example"},
		{"\"ceo\ufe6bbank.example\" <x@client.example>", "ceo@bank.example"},
		{"\"ceo@bank\uff0eexample\" <x@client.example>", "ceo@bank.example"},
		{"\"ceo@bank\u3002example\" <x@client.example>", "ceo@bank.example"},
		{"\"ceo@bank\u200b.example\" <x@client.example>", "ceo@bank.example"},
		{`"ceo@bänk.example" <x@client.example>`, "ceo@xn--bnk-qla.example"},
		{`"Alice (alice@client.example)" <x@client.example>`, "alice@client.example"},
		{"=?utf-8?q?ceo=40bank=2Eexample?= <x@client.example>", "ceo@bank.example"},
		{"=?utf-8?b?Y2VvQGJhbmsuZXhhbXBsZQ==?= <x@client.example>", "ceo@bank.example"},
		// Encoded-word inside a quoted string: net/mail leaves it, mail readers decode it.
		{`"=?utf-8?q?ceo=40bank.example?=" <x@client.example>`, "ceo@bank.example"},
		{"=?utf-8?q?ceo=EF=BC=A0bank.example?= <x@client.example>", "ceo@bank.example"},
		// Other charsets: what the policy inspects is the decoded text.
		{"=?windows-1252?q?=93CEO=94_ceo=40bank.example?= <x@client.example>", "ceo@bank.example"},
		{`"=?windows-1252?q?=93CEO=94_ceo=40bank.example?=" <x@client.example>`, "ceo@bank.example"},
		// ISO-2022-JP "日本 ceo＠bank．example": fullwidth '＠' and '．' from JIS X 0208,
		// so neither '@' nor '.' appears in the encoded bytes.
		{"=?iso-2022-jp?b?GyRCRnxLXBsoQiBjZW8bJEIhdxsoQmJhbmsbJEIhJRsoQmV4YW1wbGU=?= <x@client.example>", "ceo@bank.example"},
		{`"=?ISO-2022-JP?B?GyRCRnxLXBsoQiBjZW8bJEIhdxsoQmJhbmsbJEIhJRsoQmV4YW1wbGU=?=" <x@client.example>`, "ceo@bank.example"},
		// Invisible and bidirectional characters, fillers, spaces around '@'.
		{"\"ceo@\u2066evil.example\u2069\" <x@client.example>", "ceo@evil.example"},
		{"\"\u202eelpmaxe.live@oec\" <x@client.example>", "ceo@evil.example"},
		{"\"Bob \u202eelpmaxe.live@oec\u202c Smith\" <x@client.example>", "ceo@evil.example"},
		{"\"ceo@evil.example\u3164\" <x@client.example>", "ceo@evil.example"},
		{"\"ceo\u115f@\u1160evil\uffa0.example\" <x@client.example>", "ceo@evil.example"},
		{"\"ceo@evil\u00ad.\u034fexample\ufe0f\" <x@client.example>", "ceo@evil.example"},
		{"\"ceo@evil.example\U000e0041\" <x@client.example>", "ceo@evil.example"},
		{`"ceo @ evil.example" <x@client.example>`, "ceo@evil.example"},
		{"\"ceo\u00a0@\u3000evil . example\" <x@client.example>", "ceo@evil.example"},
		{"=?utf-8?q?ceo=40=E2=81=A6evil.example=E2=81=A9?= <x@client.example>", "ceo@evil.example"},
		{`"Alice Example" <x@client.example>`, ""},
		{`"Alice @ Home" <x@client.example>`, ""},
		{`"Bob (Sales)" <x@client.example>`, ""},
		{`"Dr. Alice Smith, Jr." <x@client.example>`, ""},
		{`"José Müller-Lüdenscheidt" <x@client.example>`, ""},
		{"\"山田 太郎\" <x@client.example>", ""},
		{"\"محمد عبد الله\" <x@client.example>", ""},
		{"\"\u05e9\u05dc\u05d5\u05dd \u200fBob\" <x@client.example>", ""},
		{`"alice@localhost" <x@client.example>`, ""},
		{`"@bank.example" <x@client.example>`, ""},
		{`x@client.example`, ""},
		// net/mail takes a trailing comment as the display name, and so do readers.
		{`x@client.example (ceo@bank.example)`, "ceo@bank.example"},
	}
	for _, tt := range tests {
		ms, err := ParseHeaderMailboxes(tt.header)
		if err != nil || len(ms) != 1 {
			t.Errorf("ParseHeaderMailboxes(%q) = %v, %v", tt.header, ms, err)
			continue
		}
		a, ok := ms[0].DisplayNameLooksLikeAddress()
		if tt.want == "" {
			if ok {
				t.Errorf("%q: display name %q looks like %v, want nothing", tt.header, ms[0].Name, a)
			}
			continue
		}
		if !ok || a.String() != tt.want {
			t.Errorf("%q: display name %q gives %v, %v; want %q", tt.header, ms[0].Name, a, ok, tt.want)
		}
	}
}
