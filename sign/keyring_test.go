package sign

import (
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"sealgate/internal/addr"
	"sealgate/internal/dkimcore"
)

func TestKeyRingLookup(t *testing.T) {
	key := []Key{{Selector: "ed", Signer: rfc8463Key(t)}}
	ring, err := NewKeyRing(
		DomainKeys{Domain: "client.example", Keys: key, SignSubdomains: true},
		DomainKeys{Domain: "corp.example", Keys: key}, // no sign_subdomains
		DomainKeys{Domain: "special.client.example", Keys: key},
		DomainKeys{Domain: "legacy.example", RelayUnsigned: true},
		DomainKeys{Domain: "example.co.uk", Keys: key, SignSubdomains: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from addr.Domain
		d    addr.Domain // "" means not found
	}{
		{"client.example", "client.example"},
		{"news.client.example", "client.example"},            // sign_subdomains: the parent's keys
		{"a.b.client.example", "client.example"},             // any depth
		{"special.client.example", "special.client.example"}, // its own entry first
		{"x.special.client.example", "client.example"},       // own entry lacks sign_subdomains: the next parent that has it
		{"corp.example", "corp.example"},
		{"news.corp.example", ""}, // without sign_subdomains, not
		{"other.example", ""},
		{"badclient.example", ""},
		{"client.example.evil.example", ""},
		{"legacy.example", "legacy.example"},
		{"news.example.co.uk", "example.co.uk"},
		{"co.uk", ""},
	}
	for _, tt := range tests {
		dk, ok := ring.Lookup(tt.from)
		switch {
		case tt.d == "" && ok:
			t.Errorf("Lookup(%s) = d=%s, want not found", tt.from, dk.Domain)
		case tt.d != "" && (!ok || dk.Domain != tt.d):
			t.Errorf("Lookup(%s) = %v, %v; want d=%s", tt.from, dk, ok, tt.d)
		}
	}
	if dk, ok := ring.Lookup("legacy.example"); !ok || len(dk.Keys) != 0 || !dk.RelayUnsigned {
		t.Errorf("legacy.example: %+v", dk)
	}
	if dk, ok := ring.ForSubdomainsOf("client.example"); !ok || dk.Domain != "client.example" {
		t.Errorf("ForSubdomainsOf(client.example) = %v, %v", dk, ok)
	}
	if _, ok := ring.ForSubdomainsOf("corp.example"); ok {
		t.Error("ForSubdomainsOf(corp.example) found keys without sign_subdomains")
	}
	if got := ring.Domains(); len(got) != 5 || got[0] != "client.example" {
		t.Errorf("Domains() = %v", got)
	}
	var none *KeyRing
	if _, ok := none.Lookup("client.example"); ok {
		t.Error("nil ring found keys")
	}
}

// TestKeyRingSignsSubdomainWithParent signs a message from news.client.example with the ring's
// answer: d=client.example only when the parent says sign_subdomains.
func TestKeyRingSignsSubdomainWithParent(t *testing.T) {
	key := []Key{{Selector: "ed", Signer: rfc8463Key(t)}}
	hdr := dkimcore.Header{dkimcore.Field("From: x@news.client.example\r\n")}
	for _, sub := range []bool{true, false} {
		ring, err := NewKeyRing(DomainKeys{Domain: "client.example", Keys: key, SignSubdomains: sub})
		if err != nil {
			t.Fatal(err)
		}
		dk, ok := ring.Lookup("news.client.example")
		if ok != sub {
			t.Fatalf("sign_subdomains %v: found %v", sub, ok)
		}
		if !ok {
			continue
		}
		fields, err := Sign(hdr, dkimcore.HashBody(nil, dkimcore.Relaxed), dk.Options())
		if err != nil || len(fields) != 1 || !strings.Contains(string(fields[0]), " d=client.example;") {
			t.Errorf("signature: %v %q", err, fields)
		}
	}
}

func TestNewKeyRingRefuses(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	key := []Key{{Selector: "ed", Signer: rfc8463Key(t)}}
	for name, tt := range map[string]struct {
		domains []DomainKeys
		want    string
	}{
		"twice":         {[]DomainKeys{{Domain: "a.example", Keys: key}, {Domain: "a.example", Keys: key}}, "a.example listed twice"},
		"public suffix": {[]DomainKeys{{Domain: "co.uk", Keys: key, SignSubdomains: true}}, "co.uk is a public suffix"},
		"weak key":      {[]DomainKeys{{Domain: "a.example", Keys: []Key{{Selector: "s", Signer: weak}}}}, "a.example: sign: selector s: RSA key is 1024 bits"},
		"bad selector":  {[]DomainKeys{{Domain: "a.example", Keys: []Key{{Selector: "_s", Signer: rfc8463Key(t)}}}}, `invalid selector "_s"`},
		"no name":       {[]DomainKeys{{Keys: key}}, "without a name"},
	} {
		if _, err := NewKeyRing(tt.domains...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tt.want)
		}
	}
	// The same 1024-bit key is accepted where the domain opts in.
	if _, err := NewKeyRing(DomainKeys{Domain: "a.example", Keys: []Key{{Selector: "s", Signer: weak}}, MinRSABits: 1024}); err != nil {
		t.Errorf("1024-bit key with MinRSABits 1024: %v", err)
	}
}
