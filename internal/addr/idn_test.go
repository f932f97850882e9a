package addr

import (
	"errors"
	"testing"
)

// The homographs an attacker would try against a client allowed *@example.com,
// *@paypal.example or *@bücher.example: each must be refused or be a different
// Domain, never the allowed one.
func TestLookalikeDomains(t *testing.T) {
	tests := []struct {
		name, in string
		allowed  Domain // the domain it imitates
		// lookalike: ParseDomain fails with a *LookalikeError naming allowed.
		// Otherwise it is a valid, different domain.
		lookalike bool
	}{
		{"cyrillic a", "ex\u0430mple.com", "example.com", false},
		{"cyrillic e", "\u0435xample.com", "example.com", false},
		{"cyrillic o", "g\u043e\u043egle.example", "google.example", false},
		{"cyrillic p", "\u0440aypal.example", "paypal.example", false},
		{"cyrillic c", "\u0441ompany.example", "company.example", false},
		{"all cyrillic", "\u0440\u0430\u0443\u0440\u0430\u04cf.example", "paypal.example", false},
		{"greek omicron", "g\u03bfogle.example", "google.example", false},
		{"dotless i", "l\u0131nkedin.example", "linkedin.example", false},
		{"sharp s is not ss (no transitional processing)", "stra\u00dfe.example", "strasse.example", false},
		{"punycode of cyrillic a", "xn--exmple-4nf.com", "example.com", false},
		{"combining acute", "e\u0301xample.com", "example.com", false},
		{"fullwidth", "\uff45xample.com", "example.com", true},
		{"fullwidth all", "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "example.com", true},
		{"ideographic full stop", "example\u3002com", "example.com", true},
		{"fullwidth full stop", "example\uff0ecom", "example.com", true},
		{"zero-width joiner", "exa\u200dmple.com", "example.com", true},
		{"zero-width non-joiner", "exa\u200cmple.com", "example.com", true},
		{"zero-width space", "exa\u200bmple.com", "example.com", true},
		{"word joiner", "exa\u2060mple.com", "example.com", true},
		{"soft hyphen", "exa\u00admple.com", "example.com", true},
		{"variation selector", "exam\ufe0fple.com", "example.com", true},
		{"bidi mark", "\u200eexample.com", "example.com", true},
		{"punycode of fullwidth", "xn--xample-hy68a.com", "example.com", true},
		{"punycode of soft hyphen", "xn--example-nka.com", "example.com", true},
		{"upper-case U-label", "B\u00dcCHER.example", "xn--bcher-kva.example", true},
		{"kelvin sign", "\u212aey.example", "key.example", true},
		{"hyphen U+2010", "my\u2010bank.example", "my-bank.example", true},
		{"minus sign", "my\u2212bank.example", "my-bank.example", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDomain(tt.in)
			if tt.lookalike {
				var le *LookalikeError
				if !errors.As(err, &le) {
					t.Fatalf("ParseDomain(%q) = %q, %v; want a LookalikeError", tt.in, d, err)
				}
				if le.LooksLike != tt.allowed {
					t.Errorf("LooksLike = %q, want %q", le.LooksLike, tt.allowed)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDomain(%q): %v; want a valid, different domain", tt.in, err)
			}
			if d == tt.allowed {
				t.Fatalf("ParseDomain(%q) = %q, the domain it imitates", tt.in, d)
			}
			p, err := ParsePattern("*@" + string(tt.allowed))
			if err != nil {
				t.Fatal(err)
			}
			if p.Matches(Address{Local: "ceo", Domain: d}) {
				t.Errorf("pattern %s matches ceo@%s", p, tt.in)
			}
		})
	}
}

// U-label and A-label forms of one domain are one Domain, and one pattern matches both.
func TestIDNForms(t *testing.T) {
	forms := []string{"例子.广告", "xn--fsqu00a.xn--4rr70v", "XN--FSQU00A.xn--4rr70v", "例子.xn--4rr70v"}
	want := Domain("xn--fsqu00a.xn--4rr70v")
	p, err := ParsePattern("*@例子.广告")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range forms {
		d, err := ParseDomain(f)
		if err != nil || d != want {
			t.Errorf("ParseDomain(%q) = %q, %v; want %q", f, d, err, want)
			continue
		}
		a, err := ParseAddress("用户@" + f)
		if err != nil {
			t.Fatalf("ParseAddress: %v", err)
		}
		if !p.Matches(a) {
			t.Errorf("%s does not match %s", p, a)
		}
	}
	if got := want.Unicode(); got != "例子.广告" {
		t.Errorf("Unicode() = %q", got)
	}
}

// Local parts compare as sent after NFC; nothing else is folded.
func TestLocalPartNFC(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"jos\u00e9", "jose\u0301", true}, // NFC and NFD of josé
		{"Jos\u00e9", "jos\u00e9", true},  // ASCII case
		{"JOS\u00c9", "jos\u00e9", false}, // no Unicode case folding
		{"bob", "\uff42ob", false},        // fullwidth b
		{"bob", "b\u200bob", false},       // zero-width space
		{"用户", "用户", true},
	}
	for _, tt := range tests {
		if got := LocalPartsEqual(tt.a, tt.b); got != tt.want {
			t.Errorf("LocalPartsEqual(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	p, err := ParsePattern("jos\u00e9@exemple.fr")
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseAddress("jose\u0301@exemple.fr")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Matches(a) {
		t.Errorf("%s does not match the NFD form %s", p, a)
	}
}

// A bidirectional control in a local part is refused: it reorders what a reader sees.
func TestLocalPartBidiControl(t *testing.T) {
	for _, s := range []string{"\u202eelpmaxe.knab@client.example", "ceo\u2066x\u2069@client.example", "a\u200fb@client.example"} {
		if a, err := ParseAddress(s); err == nil {
			t.Errorf("ParseAddress(%q) = %v, want an error", s, a)
		}
	}
	// A zero-width non-joiner is part of Persian writing: kept (and a different local part).
	if _, err := ParseAddress("\u0639\u0644\u06cc\u200c\u0631\u0636\u0627@client.example"); err != nil {
		t.Errorf("Persian local part with ZWNJ: %v", err)
	}
}

// A mailbox domain with a trailing dot is a look-alike of the domain.
func TestTrailingDotMailbox(t *testing.T) {
	_, err := ParseAddress("ceo@example.com.")
	var le *LookalikeError
	if !errors.As(err, &le) || le.LooksLike != "example.com" {
		t.Fatalf("ParseAddress(ceo@example.com.) = %v, want a LookalikeError of example.com", err)
	}
	if _, err := ParseHeaderMailboxes("CEO <ceo@ex\u0430mple.com>"); err != nil {
		t.Fatalf("a valid IDN in a header: %v", err)
	}
	_, err = ParseHeaderMailboxes("CEO <ceo@\uff45xample.com>")
	if !errors.As(err, &le) {
		t.Fatalf("fullwidth header domain: %v, want a LookalikeError", err)
	}
}

// The IDNA 2008 derived property (RFC 5892) that golang.org/x/net/idna does not
// apply: symbols and punctuation that pass as UTS #46 "valid" are refused, CONTEXTO
// code points only where their rule allows them, and real IDNs still parse.
func TestIDNA2008DerivedProperty(t *testing.T) {
	valid := []string{
		"münchen.de", "日本語.jp", "пример.рф", "مثال.إختبار", "παράδειγμα.δοκιμή", "例え.テスト",
		"faß.de", "דוגמה.טעסט", "한국.kr", "ไทย.th", "क्\u200dष.example",
		"col\u00b7legi.cat",                 // A.3: middle dot between two l
		"\u30a2\u30fb\u30a4.example",        // A.7: katakana middle dot among katakana
		"\u05d0\u05f3.example",              // A.5: geresh after Hebrew
		"\u0627\u0661\u0662.example",        // A.8: Arabic-Indic digits alone
		"\u3007.example",                    // exception: PVALID
		"\u03c3\u03bf\u03c6\u03b9\u03c2.gr", // final sigma: exception PVALID
	}
	for _, s := range valid {
		if _, err := ParseDomain(s); err != nil {
			t.Errorf("ParseDomain(%q): %v", s, err)
		}
	}
	invalid := []string{
		"bank\u2044login.evil.example", // fraction slash, looks like "/"
		"bank\u2215login.evil.example", // division slash
		"bank\u2010x.example",          // hyphen, looks like "-"
		"bank\u2013x.example",          // en dash
		"bank\u2212x.example",          // minus sign
		"bank\u2039x.example",          // single angle quotation mark
		"bank\u0589x.example",          // Armenian full stop, looks like ":"
		"i\u2764.example",              // heart
		"a\u00b7b.example",             // middle dot outside l·l
		"\u30fb.example",               // katakana middle dot alone
		"\u0661\u06f1.example",         // Arabic-Indic and extended digits mixed
		"\u0640a.example",              // exception: DISALLOWED (tatweel)
	}
	for _, s := range invalid {
		if d, err := ParseDomain(s); err == nil {
			t.Errorf("ParseDomain(%q) = %q, want an error", s, d)
		}
	}
}
