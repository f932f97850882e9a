package dkimcore

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// Records from RFC 8463 Appendix A.2 as used by go-msgauth v0.7.0's tests (dkim/query_test.go):
// the Ed25519 key of brisbane._domainkey.football.example.com and a 1024-bit RSA key.
const (
	rfc8463Ed25519Record = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	rfc8463RSARecord     = "v=DKIM1; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQ" +
		"KBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYt" +
		"IxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v" +
		"/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhi" +
		"tdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB"
	// The same kind of key as a bare PKCS#1 RSAPublicKey (go-msgauth's dnsRawRSAPublicKey).
	pkcs1RSARecord = "v=DKIM1; p=MIGJAoGBALVI635dLK4cJJAH3Lx6upo3X/L" +
		"m1tQz3mezcWTA3BUBnyIsdnRf57aD5BtNmhPrYYDlWlzw3" +
		"UgnKisIxktkk5+iMQMlFtAS10JB8L3YadXNJY+JBcbeSi5" +
		"TgJe4WFzNgW95FWDAuSTRXSWZfA/8xjflbTLDx0euFZOM7" +
		"C4T0GwLAgMBAAE="
)

func rsaSPKI(t *testing.T, pub *rsa.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func TestParseKeyRecordRFC8463(t *testing.T) {
	rec, err := ParseKeyRecord(rfc8463Ed25519Record)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := base64.StdEncoding.DecodeString("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	if pub, ok := rec.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(ed25519.PublicKey(want)) {
		t.Errorf("Ed25519 record: PublicKey = %#v", rec.PublicKey)
	}
	if rec.KeyType != "ed25519" || rec.Revoked || rec.Testing || rec.Raw != rfc8463Ed25519Record {
		t.Errorf("Ed25519 record = %+v", rec)
	}

	for _, txt := range []string{rfc8463RSARecord, pkcs1RSARecord} {
		rec, err = ParseKeyRecord(txt)
		if err != nil {
			t.Fatalf("%.30s...: %v", txt, err)
		}
		pub, ok := rec.PublicKey.(*rsa.PublicKey)
		if !ok || pub.N.BitLen() != 1024 || rec.KeyType != "rsa" {
			t.Errorf("%.30s...: KeyType %q, PublicKey %T", txt, rec.KeyType, rec.PublicKey)
		}
	}
}

func TestParseKeyRecordTags(t *testing.T) {
	base := strings.TrimPrefix(rfc8463Ed25519Record, "v=DKIM1; ")
	tests := []struct {
		txt             string
		testing, strict bool
		hashes          []string
	}{
		{base + "; t=y", true, false, nil},
		{base + "; t=y:s", true, true, nil},
		{base + "; t=s : x", false, true, nil}, // unknown flags ignored
		{base + "; h=sha1:sha256; s=email", false, false, []string{"sha1", "sha256"}},
		{base + "; s=*; n=notes are ignored", false, false, nil},
		// p= with folding white space inside (RFC 6376 §3.6.1 allows FWS in base64).
		{"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQH\r\n\tOg7hcvPapiMlr wIaaPcHURo=", false, false, nil},
	}
	for _, tt := range tests {
		rec, err := ParseKeyRecord(tt.txt)
		if err != nil {
			t.Errorf("%q: %v", tt.txt, err)
			continue
		}
		if rec.Testing != tt.testing || rec.Strict != tt.strict || strings.Join(rec.Hashes, ":") != strings.Join(tt.hashes, ":") {
			t.Errorf("%q: Testing %v Strict %v Hashes %q", tt.txt, rec.Testing, rec.Strict, rec.Hashes)
		}
	}
}

func TestParseKeyRecordRevoked(t *testing.T) {
	for _, txt := range []string{"v=DKIM1; p=", "v=DKIM1; k=ed25519; p= ;", "p=\r\n "} {
		rec, err := ParseKeyRecord(txt)
		if err != nil || !rec.Revoked || rec.PublicKey != nil {
			t.Errorf("%q: %+v, %v; want revoked without error", txt, rec, err)
		}
	}
}

func TestParseKeyRecordErrors(t *testing.T) {
	// A 512-bit modulus: Go no longer generates such keys, so build one.
	short := &rsa.PublicKey{N: new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 511), big.NewInt(1)), E: 65537}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	edSPKI, _ := x509.MarshalPKIXPublicKey(edPub)
	rsaP := strings.TrimPrefix(rfc8463RSARecord, "v=DKIM1; p=")
	edP := strings.TrimPrefix(rfc8463Ed25519Record, "v=DKIM1; k=ed25519; p=")

	tests := []struct{ txt, want string }{
		{"v=DKIM1; p=not*base64!", "p= is not valid base64"},
		{"v=DKIM2; p=" + rsaP, "v=DKIM2 is not DKIM1"},
		{"k=rsa; v=DKIM1; p=" + rsaP, "v= must be the first tag"},
		{"v=DKIM1; k=ed25519; p=" + rsaP, "k=ed25519 needs the raw 32-byte key in p=, got 162 bytes (it holds a RSA SubjectPublicKeyInfo"},
		{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edSPKI), "got 44 bytes (it holds a Ed25519 SubjectPublicKeyInfo; publish the raw key)"},
		{"v=DKIM1; p=" + edP, "add k=ed25519"},
		{"v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(edSPKI), "k=rsa but p= holds an Ed25519 key"},
		{"v=DKIM1; k=rsa; p=" + rsaSPKI(t, short), "RSA key is 512 bits; at least 1024 are required"},
		{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(make([]byte, 31)), "got 31 bytes"},
		{"v=DKIM1; k=dsa; p=" + rsaP, "k=dsa is not a supported key type"},
		{"v=DKIM1; k=rsa", "p= is missing"},
		{"v=DKIM1; h=sha1; p=" + rsaP, "h=sha1 does not allow sha256"},
		{"v=DKIM1; s=tlsrpt; p=" + rsaP, "s=tlsrpt does not include email"},
		{"v=DKIM1; p=" + base64.StdEncoding.EncodeToString([]byte("not a key at all")), "p= is not an RSA public key"},
		{"v=DKIM1; p=a; p=b", "tag \"p\" repeated"},
		{"v=DKIM1; garbage", "has no '='"},
	}
	for _, tt := range tests {
		_, err := ParseKeyRecord(tt.txt)
		var e *Error
		if !errors.As(err, &e) || e.Temporary || e.Fail {
			t.Errorf("%.40q: error %v, want a permanent *Error", tt.txt, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "key record: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%.40q: error %q, want it to contain %q", tt.txt, err, tt.want)
		}
	}
}

func TestKeyRecordText(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, pub := range []interface{ Equal(crypto.PublicKey) bool }{&rsaKey.PublicKey, edPub} {
		txt, err := KeyRecordText(pub)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := ParseKeyRecord(txt)
		if err != nil {
			t.Fatalf("%s: %v", txt, err)
		}
		if !pub.Equal(rec.PublicKey) {
			t.Errorf("%T: parsed key differs from the one written", pub)
		}
	}
	if txt, _ := KeyRecordText(edPub); txt != "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(edPub) {
		t.Errorf("Ed25519 text = %q", txt)
	}
	if !strings.HasPrefix(must(KeyRecordText(&rsaKey.PublicKey)), "v=DKIM1; k=rsa; p=MIIBIjAN") {
		t.Error("RSA text is not an SPKI record")
	}
	if _, err := KeyRecordText("a string"); err == nil {
		t.Error("KeyRecordText(string): no error")
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

const lookupZone = `$ORIGIN football.example.com.
brisbane._domainkey  IN TXT "v=DKIM1; k=ed25519; " "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
old._domainkey       IN TXT "v=DKIM1; k=rsa; p="
two._domainkey       IN TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
two._domainkey       IN TXT "v=DKIM1; k=ed25519; p="
bad._domainkey       IN TXT "v=DKIM1; k=ed25519; p=%%%"
nodata._domainkey    IN A   192.0.2.1
`

func TestLookupKey(t *testing.T) {
	r := resolvertest.NewZone(t, lookupZone)
	ctx := context.Background()

	rec, err := LookupKey(ctx, r, "brisbane", "football.example.com.")
	if err != nil || rec.KeyType != "ed25519" || rec.PublicKey == nil {
		t.Fatalf("LookupKey(brisbane) = %+v, %v", rec, err)
	}

	tests := []struct {
		selector, want string
		notFound       bool
	}{
		{"missing", "no key record at missing._domainkey.football.example.com", true},
		{"nodata", "no key record at nodata._domainkey.football.example.com", true},
		{"old", "key record at old._domainkey.football.example.com: key revoked", false},
		{"two", "2 TXT records at two._domainkey.football.example.com", false},
		{"bad", "key record at bad._domainkey.football.example.com: p= is not valid base64", false},
	}
	for _, tt := range tests {
		_, err := LookupKey(ctx, r, tt.selector, "football.example.com")
		var e *Error
		if !errors.As(err, &e) || e.Temporary || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LookupKey(%s) error = %v, want a permanent *Error containing %q", tt.selector, err, tt.want)
		}
		if resolver.IsNotFound(err) != tt.notFound {
			t.Errorf("LookupKey(%s): IsNotFound = %v, want %v", tt.selector, !tt.notFound, tt.notFound)
		}
	}
	if _, err := LookupKey(ctx, r, "old", "football.example.com"); !errors.Is(err, ErrKeyRevoked) {
		t.Errorf("revoked key: error %v does not wrap ErrKeyRevoked", err)
	}
}

func TestLookupKeyTemporary(t *testing.T) {
	addr := resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_ = w.WriteMsg(new(dns.Msg).SetRcode(req, dns.RcodeServerFailure))
	}))
	r, err := resolver.New(resolver.Config{Server: addr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = LookupKey(context.Background(), r, "s1", "example.com")
	if !IsTemporary(err) || !strings.Contains(err.Error(), "s1._domainkey.example.com") {
		t.Errorf("error = %v, want a temporary *Error naming the record", err)
	}
}

func FuzzParseKeyRecord(f *testing.F) {
	f.Add("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	f.Add("v=DKIM1; k=rsa; p=")
	f.Add("k=rsa; t=y:s; h=sha256; s=email; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB")
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := ParseKeyRecord(txt)
		if err != nil {
			return
		}
		if !rec.Revoked && rec.PublicKey == nil {
			t.Fatalf("record %q parsed without a key and not revoked", txt)
		}
	})
}
