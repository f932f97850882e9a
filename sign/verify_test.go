package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

const verifyMessage = "From: Ana <ana@example.com>\r\n" +
	"To: Bo <bo@example.net>\r\n" +
	"Subject: checks\r\n" +
	"Date: Tue, 06 Oct 2026 09:15:00 +0000\r\n" +
	"\r\n" +
	"Hello.\r\n"

var (
	verifyKeysOnce sync.Once
	key2048        *rsa.PrivateKey
	key1024        *rsa.PrivateKey
)

// verifyZone publishes keys for the §6.1 cases under example.com.
func verifyZone(t *testing.T) (resolver.Resolver, *rsa.PrivateKey, *rsa.PrivateKey) {
	verifyKeysOnce.Do(func() {
		var err error
		if key2048, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if key1024, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			panic(err)
		}
	})
	p := func(k crypto.PublicKey) string {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(der)
	}
	// A 512-bit modulus: only its record is needed, Go will not make such a key.
	tiny := &rsa.PublicKey{N: new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 511), big.NewInt(0x1235)), E: 65537}
	var b strings.Builder
	b.WriteString("$ORIGIN example.com.\n")
	for sel, rec := range map[string]string{
		"good":    "v=DKIM1; k=rsa; p=" + p(key2048.Public()),
		"testing": "v=DKIM1; k=rsa; t=y; p=" + p(key2048.Public()),
		"strict":  "v=DKIM1; k=rsa; t=s; p=" + p(key2048.Public()),
		"sha1":    "v=DKIM1; k=rsa; h=sha1; p=" + p(key2048.Public()),
		"tlsrpt":  "v=DKIM1; k=rsa; s=tlsrpt; p=" + p(key2048.Public()),
		"edtype":  "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"revoked": "v=DKIM1; k=rsa; p=",
		"small":   "v=DKIM1; k=rsa; p=" + p(key1024.Public()),
		"tiny":    "v=DKIM1; k=rsa; p=" + p(tiny),
	} {
		fmt.Fprintf(&b, "%s._domainkey 300 IN TXT %s\n", sel, txtStrings(rec))
	}
	return resolvertest.NewZone(t, b.String()), key2048, key1024
}

func txtStrings(s string) string {
	var parts []string
	for len(s) > 0 {
		n := min(250, len(s))
		parts = append(parts, `"`+s[:n]+`"`)
		s = s[n:]
	}
	return "( " + strings.Join(parts, " ") + " )"
}

// signRaw signs msg with exactly the tags given (h= and bh= computed unless given), so a test
// can make signatures sealgate's signer never would.
func signRaw(t *testing.T, msg string, key crypto.Signer, tags ...dkimcore.Tag) string {
	t.Helper()
	hdr, body, err := ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	var ts dkimcore.Tags = tags
	c, _ := ts.Get("c")
	hc, bc, err := dkimcore.ParseCanonicalization(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ts.Get("bh"); !ok {
		bh, _ := dkimcore.HashBody(body, bc).BodyHash(bc)
		tags = append(tags, dkimcore.Tag{Name: "bh", Value: base64.StdEncoding.EncodeToString(bh)})
	}
	var names []string
	if h, ok := ts.Get("h"); ok {
		for n := range strings.SplitSeq(h, ":") {
			names = append(names, n)
		}
	}
	input := dkimcore.AppendHeaderHashInput(nil, hdr, names, hc)
	f, err := dkimcore.SignField("DKIM-Signature", tags, input, hc, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(f) + msg
}

func tagList(s string) []dkimcore.Tag {
	var tags []dkimcore.Tag
	for part := range strings.SplitSeq(s, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(part), "=")
		tags = append(tags, dkimcore.Tag{Name: name, Value: value})
	}
	return tags
}

// TestVerifyChecks runs the checks of RFC 6376 §6.1 one by one, each on a signature that is
// correct but for the one thing tested.
func TestVerifyChecks(t *testing.T) {
	r, k2048, k1024 := verifyZone(t)
	now := time.Unix(1791278100, 0)
	std := "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=good; t=1791278000; h=from:to:subject"
	tests := []struct {
		name    string
		tags    string
		key     crypto.Signer
		opts    VerifyOptions
		status  Status
		reason  string
		bits    int
		testing bool
	}{
		{name: "pass", tags: std, status: StatusPass, bits: 2048},
		{name: "simple/simple default", tags: "v=1; a=rsa-sha256; d=example.com; s=good; h=from", status: StatusPass, bits: 2048},
		{name: "no v=", tags: "a=rsa-sha256; d=example.com; s=good; h=from", status: StatusPermError, reason: "no v= tag"},
		{name: "v=2", tags: "v=2; a=rsa-sha256; d=example.com; s=good; h=from", status: StatusPermError, reason: "v=2"},
		{name: "no s=", tags: "v=1; a=rsa-sha256; d=example.com; h=from", status: StatusPermError, reason: "no s= tag"},
		{name: "no h=", tags: "v=1; a=rsa-sha256; d=example.com; s=good", status: StatusPermError, reason: "no h= tag"},
		{name: "h= without From", tags: "v=1; a=rsa-sha256; d=example.com; s=good; h=to:subject", status: StatusPermError, reason: "does not include From"},
		{name: "empty name in h=", tags: "v=1; a=rsa-sha256; d=example.com; s=good; h=from::to", status: StatusPermError, reason: "empty field name"},
		{name: "i= in d=", tags: std + "; i=ana@mail.example.com", status: StatusPass, bits: 2048},
		{name: "i= outside d=", tags: std + "; i=ana@example.net", status: StatusPermError, reason: "not in d=example.com"},
		{name: "i= lookalike of d=", tags: std + "; i=ana@badexample.com", status: StatusPermError, reason: "not in d=example.com"},
		{name: "x= in the future", tags: std + "; x=1791279000", status: StatusPass, bits: 2048},
		{name: "x= passed", tags: std + "; x=1791278050", status: StatusPermError, reason: "expired"},
		{name: "x= before t=", tags: std + "; x=1791277000", status: StatusPermError, reason: "x= is before t="},
		{name: "unknown a=", tags: strings.Replace(std, "rsa-sha256", "rsa-sha512", 1), status: StatusPermError, reason: "unsupported signature algorithm"},
		{name: "rsa-sha1", tags: strings.Replace(std, "rsa-sha256", "rsa-sha1", 1), status: StatusPolicy, reason: "rsa-sha1"},
		{name: "l=", tags: std + "; l=3", status: StatusPolicy, reason: "l="},
		{name: "key h=sha1", tags: strings.Replace(std, "s=good", "s=sha1", 1), status: StatusPermError, reason: "does not allow sha256"},
		{name: "key k=ed25519 for a=rsa-sha256", tags: strings.Replace(std, "s=good", "s=edtype", 1), status: StatusPermError, reason: "key type ed25519 does not match", bits: 256},
		{name: "key s=tlsrpt", tags: strings.Replace(std, "s=good", "s=tlsrpt", 1), status: StatusPermError, reason: "does not include email"},
		{name: "key t=s, i= in d=", tags: strings.Replace(std, "s=good", "s=strict", 1) + "; i=@example.com", status: StatusPass, bits: 2048},
		{name: "key t=s, i= in a subdomain", tags: strings.Replace(std, "s=good", "s=strict", 1) + "; i=@mail.example.com", status: StatusPermError, reason: "t=s", bits: 2048},
		{name: "key t=y", tags: strings.Replace(std, "s=good", "s=testing", 1), status: StatusPass, bits: 2048, testing: true},
		{name: "revoked key", tags: strings.Replace(std, "s=good", "s=revoked", 1), status: StatusPermError, reason: "revoked"},
		{name: "no key", tags: strings.Replace(std, "s=good", "s=nothing", 1), status: StatusPermError, reason: "no key record"},
		{name: "512-bit key", tags: strings.Replace(std, "s=good", "s=tiny", 1), status: StatusPermError, reason: "512 bits"},
		{name: "1024-bit key", tags: strings.Replace(std, "s=good", "s=small", 1), key: k1024, status: StatusPass, bits: 1024},
		{name: "1024-bit key under a 2048 minimum", tags: strings.Replace(std, "s=good", "s=small", 1), key: k1024, opts: VerifyOptions{MinRSABits: 2048}, status: StatusPolicy, reason: "under the 2048 bits", bits: 1024},
		{name: "1024-bit key under a 2048 minimum, body changed", tags: strings.Replace(std, "s=good", "s=small", 1) + "; bh=" + base64.StdEncoding.EncodeToString(make([]byte, 32)), key: k1024, opts: VerifyOptions{MinRSABits: 2048}, status: StatusPolicy, reason: "under the 2048 bits", bits: 1024},
		{name: "signed by another key", tags: std, key: k1024, status: StatusFail, reason: "signature did not verify", bits: 2048},
		{name: "bad bh=", tags: std + "; bh=" + base64.StdEncoding.EncodeToString(make([]byte, 32)), status: StatusFail, reason: "body hash", bits: 2048},
		{name: "empty tag-spec", tags: "v=1; a=rsa-sha256; d=example.com; s=good; h=from;; c=relaxed", status: StatusPermError, reason: "empty tag-spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.key
			if key == nil {
				key = k2048
			}
			var msg string
			if tt.name == "empty tag-spec" {
				msg = strings.Replace(signRaw(t, verifyMessage, key, tagList(strings.Replace(tt.tags, ";; c=relaxed", "", 1))...), "h=from;", "h=from;;", 1)
			} else {
				msg = signRaw(t, verifyMessage, key, tagList(tt.tags)...)
			}
			o := tt.opts
			o.Resolver = r
			o.Now = func() time.Time { return now }
			res, err := Verify(context.Background(), strings.NewReader(msg), &o)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 {
				t.Fatalf("%d results", len(res))
			}
			got := res[0]
			if got.Status != tt.status || !strings.Contains(got.Reason, tt.reason) || (tt.status == StatusPass) != (got.Reason == "") {
				t.Errorf("got %s (%s), want %s (%s)", got.Status, got.Reason, tt.status, tt.reason)
			}
			if got.KeyBits != tt.bits || got.Testing != tt.testing {
				t.Errorf("key bits %d testing %v, want %d %v", got.KeyBits, got.Testing, tt.bits, tt.testing)
			}
			if tt.status != StatusPermError || got.Domain != "" {
				if got.Domain != "example.com" || got.Algorithm == "" || len(got.B) != 12 {
					t.Errorf("properties: %+v", got)
				}
			}
		})
	}
}

func TestVerifyProperties(t *testing.T) {
	r, k2048, _ := verifyZone(t)
	msg := signRaw(t, verifyMessage, k2048, tagList("v=1; a=rsa-sha256; c=relaxed/relaxed; d=EXAMPLE.com; s=good; h=from")...)
	res, err := Verify(context.Background(), strings.NewReader(msg), &VerifyOptions{Resolver: r})
	if err != nil || len(res) != 1 {
		t.Fatal(res, err)
	}
	got := res[0]
	b := strings.ReplaceAll(msg[strings.Index(msg, "b=")+2:], "\r\n ", "")
	if got.Status != StatusPass || got.Domain != "example.com" || got.Selector != "good" || got.Algorithm != RSASHA256 ||
		got.Identifier != "@example.com" || got.B != b[:12] || got.KeyBits != 2048 || got.Testing {
		t.Errorf("result %+v", got)
	}
	ar := got.AuthResult()
	// A base64 '/' is a tspecial: such a value is a quoted-string (RFC 8601 §2.2,
	// RFC 2045 §5.1); '+' is not.
	wantB := b[:12]
	if strings.Contains(wantB, "/") {
		wantB = `"` + wantB + `"`
	}
	want := "dkim=pass header.d=example.com header.i=@example.com header.s=good header.a=rsa-sha256 header.b=" + wantB
	if ar.String() != want || ar.Props[4].Value != b[:12] {
		t.Errorf("AuthResult = %s, want %s", ar.String(), want)
	}
}

const RSASHA256 = dkimcore.RSASHA256

// TestVerifyLimitAndTemporary: signatures past MaxVerifications are neutral, unparsable ones
// do not count towards it, and a DNS failure is temperror.
func TestVerifyLimitAndTemporary(t *testing.T) {
	r, k2048, _ := verifyZone(t)
	msg := verifyMessage
	for range 3 {
		msg = signRaw(t, msg, k2048, tagList("v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=good; h=from")...)
	}
	msg = "DKIM-Signature: v=1; garbage\r\n" + msg
	res, err := Verify(context.Background(), strings.NewReader(msg), &VerifyOptions{Resolver: r, MaxVerifications: 2})
	if err != nil || len(res) != 4 {
		t.Fatal(res, err)
	}
	for i, want := range []Status{StatusPermError, StatusPass, StatusPass, StatusNeutral} {
		if res[i].Status != want {
			t.Errorf("signature %d: %s (%s), want %s", i, res[i].Status, res[i].Reason, want)
		}
	}

	addr := resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_ = w.WriteMsg(new(dns.Msg).SetRcode(req, dns.RcodeServerFailure))
	}))
	servfail, err := resolver.New(resolver.Config{Server: addr})
	if err != nil {
		t.Fatal(err)
	}
	res, err = Verify(context.Background(), strings.NewReader(msg), &VerifyOptions{Resolver: servfail})
	if err != nil || len(res) != 4 || res[1].Status != StatusTempError || !strings.Contains(res[1].Reason, "good._domainkey.example.com") {
		t.Errorf("SERVFAIL: %+v %v", res, err)
	}

	if res, err := Verify(context.Background(), strings.NewReader(verifyMessage), &VerifyOptions{Resolver: r}); err != nil || len(res) != 0 {
		t.Errorf("unsigned message: %+v %v", res, err)
	}
}

// TestAgreesWithGoMsgauth checks our verdicts against go-msgauth's verifier (kept as a test
// oracle only) on the testdata messages and on what we sign: same signatures, same pass or
// not, same d=.
func TestAgreesWithGoMsgauth(t *testing.T) {
	r := rfc8463Resolver(t)
	zr, k2048, _ := verifyZone(t)
	ctx := context.Background()
	rfc := readFile(t, "testdata/rfc8463.eml")
	ours := signRaw(t, verifyMessage, k2048, tagList("v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=good; h=from:to:subject")...)
	cases := []struct {
		name string
		msg  []byte
		r    resolver.Resolver
	}{
		{"rfc8463", rfc, r},
		{"rfc8463 subject added", bytes.Replace(rfc, []byte("From: Joe"), []byte("Subject: Free money\r\nFrom: Joe"), 1), r},
		{"rfc8463 body changed", bytes.Replace(rfc, []byte("hungry"), []byte("Hungry"), 1), r},
		{"ours", []byte(ours), zr},
		{"ours with bare LF", []byte(strings.ReplaceAll(ours, "\r\n", "\n")), zr},
		{"ours, revoked key", []byte(strings.Replace(ours, "s=good", "s=revoked", 1)), zr},
		{"ours, no key", []byte(strings.Replace(ours, "s=good", "s=none", 1)), zr},
	}
	for _, c := range cases {
		got, err := Verify(ctx, bytes.NewReader(c.msg), &VerifyOptions{Resolver: c.r})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		hdr, body, _ := ReadMessage(bytes.NewReader(c.msg))
		var full bytes.Buffer
		WriteMessage(&full, hdr, body)
		oracle, err := dkim.VerifyWithOptions(&full, &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
			txts, err := c.r.LookupTXT(ctx, name)
			return txts, resolver.AsNetError(err)
		}})
		if err != nil {
			t.Fatalf("%s: go-msgauth: %v", c.name, err)
		}
		if len(oracle) != len(got) {
			t.Fatalf("%s: %d results, go-msgauth %d", c.name, len(got), len(oracle))
		}
		for i, v := range oracle {
			if (v.Err == nil) != (got[i].Status == StatusPass) || !strings.EqualFold(v.Domain, string(got[i].Domain)) {
				t.Errorf("%s, signature %d: ours %s (%s) d=%s, go-msgauth err=%v d=%s", c.name, i, got[i].Status, got[i].Reason, got[i].Domain, v.Err, v.Domain)
			}
			if v.Err != nil && dkim.IsPermFail(v.Err) != (got[i].Status == StatusPermError) {
				t.Errorf("%s, signature %d: ours %s (%s), go-msgauth %v", c.name, i, got[i].Status, got[i].Reason, v.Err)
			}
		}
	}
}
