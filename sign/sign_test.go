package sign

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// rfc8463Seed is the Ed25519 private key of RFC 8463 Appendix A.1.
const rfc8463Seed = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rfc8463Resolver(t *testing.T) resolver.Resolver {
	return resolvertest.NewZone(t, string(readFile(t, "testdata/rfc8463.zone")))
}

// TestRFC8463Vector verifies the RFC 8463 Appendix A.3 message, signed by the RFC's authors
// with Ed25519 and RSA, through both our own field verifier (which shares canonicalisation
// with our signer) and through Verify.
func TestRFC8463Vector(t *testing.T) {
	msg := readFile(t, "testdata/rfc8463.eml")
	r := rfc8463Resolver(t)
	ctx := context.Background()

	hdr, body, err := ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	bodies := dkimcore.HashBody(body, dkimcore.Relaxed, dkimcore.Simple)
	n := 0
	for _, f := range hdr {
		if !f.Is("DKIM-Signature") {
			continue
		}
		n++
		sig, err := dkimcore.ParseSignature(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := sig.CheckBodyHash(bodies); err != nil {
			t.Errorf("s=%s: %v", sig.Selector, err)
		}
		input := dkimcore.AppendHeaderHashInput(nil, hdr, sig.Headers, sig.HeaderCanon)
		if _, err := (&dkimcore.Verifier{Resolver: r}).Verify(ctx, sig, input, sig.HeaderCanon); err != nil {
			t.Errorf("our verifier, s=%s: %v", sig.Selector, err)
		}
	}
	if n != 2 {
		t.Fatalf("found %d signatures, want 2", n)
	}

	results, err := Verify(ctx, bytes.NewReader(msg), &VerifyOptions{Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("got %d results", len(results))
	}
	for _, res := range results {
		if res.Status != "pass" || res.Domain != "football.example.com" {
			t.Errorf("Verify: %+v", res)
		}
	}
	if results[0].Selector != "brisbane" || results[0].Algorithm != Ed25519SHA256 || results[1].Selector != "test" {
		t.Errorf("result properties: %+v", results)
	}

	// The oversigned Subject: adding a second one must break both signatures.
	tampered := bytes.Replace(msg, []byte("From: Joe"), []byte("Subject: Free money\r\nFrom: Joe"), 1)
	results, err = Verify(ctx, bytes.NewReader(tampered), &VerifyOptions{Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range results {
		if res.Status != "fail" {
			t.Errorf("added Subject: got %s for s=%s, want fail", res.Status, res.Selector)
		}
	}
}

const Ed25519SHA256 = dkimcore.Ed25519SHA256

func rfc8463Key(t *testing.T) ed25519.PrivateKey {
	seed, err := base64.StdEncoding.DecodeString(rfc8463Seed)
	if err != nil {
		t.Fatal(err)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func TestSignAndVerify(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	zone := string(readFile(t, "testdata/rfc8463.zone")) + "rsa._domainkey 300 IN TXT " + quoteTXT(t, rsaKey.Public()) + "\n"
	r := resolvertest.NewZone(t, zone)

	// The RFC message without its signatures, with bare LF line ends.
	orig := readFile(t, "testdata/rfc8463.eml")
	unsigned := orig[bytes.Index(orig, []byte("From: Joe")):]
	lf := bytes.ReplaceAll(unsigned, []byte("\r\n"), []byte("\n"))

	opts := &Options{
		Domain: "football.example.com",
		Keys: []Key{
			{Selector: "rsa", Signer: rsaKey},
			{Selector: "brisbane", Signer: rfc8463Key(t)},
		},
		Time: time.Unix(1528637909, 0),
	}
	var out bytes.Buffer
	if err := SignMessage(&out, bytes.NewReader(lf), opts); err != nil {
		t.Fatal(err)
	}
	signed := out.Bytes()
	if !bytes.HasSuffix(signed, unsigned) {
		t.Fatalf("signed message does not end with the CRLF form of the original:\n%s", signed)
	}
	if bytes.Contains(bytes.ReplaceAll(signed, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("output has a bare LF")
	}
	results, err := Verify(context.Background(), bytes.NewReader(signed), &VerifyOptions{Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("got %d results", len(results))
	}
	for _, res := range results {
		if res.Status != "pass" {
			t.Errorf("s=%s: %s (%v)", res.Selector, res.Status, res.Reason)
		}
	}
	if !bytes.Contains(signed, []byte("h=from:from:subject:subject:date:date:to:to:cc:message-id:")) &&
		!strings.Contains(string(signed), "h=from:from:") {
		t.Errorf("From not oversigned:\n%s", signed)
	}

	// Ed25519 is deterministic: signing again gives the same signature.
	var again bytes.Buffer
	if err := SignMessage(&again, bytes.NewReader(unsigned), opts); err != nil {
		t.Fatal(err)
	}
	edSig := func(m []byte) string {
		h, _, _ := ReadMessage(bytes.NewReader(m))
		return string(h[1])
	}
	if edSig(signed) != edSig(again.Bytes()) {
		t.Error("Ed25519 signature differs between LF and CRLF input of the same message")
	}

	// Headers added after signing break it: a second From (oversigned) and a Reply-To.
	for _, add := range []string{"From: Mallory <m@evil.example>\r\n", "Reply-To: m@evil.example\r\n", "Cc: m@evil.example\r\n"} {
		tampered := append([]byte(add), signed...)
		results, err := Verify(context.Background(), bytes.NewReader(tampered), &VerifyOptions{Resolver: r})
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range results {
			if res.Status != "fail" {
				t.Errorf("after adding %q: s=%s is %s, want fail", strings.TrimSpace(add), res.Selector, res.Status)
			}
		}
	}
	// A changed body breaks it.
	tampered := bytes.Replace(signed, []byte("hungry"), []byte("Hungry"), 1)
	results, _ = Verify(context.Background(), bytes.NewReader(tampered), &VerifyOptions{Resolver: r})
	for _, res := range results {
		if res.Status != "fail" {
			t.Errorf("changed body: s=%s is %s", res.Selector, res.Status)
		}
	}
}

func quoteTXT(t *testing.T, pub any) string {
	rec, err := dkimcore.KeyRecordText(pub)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for len(rec) > 0 {
		n := min(255, len(rec))
		parts = append(parts, `"`+rec[:n]+`"`)
		rec = rec[n:]
	}
	return "( " + strings.Join(parts, " ") + " )"
}

func TestSignRefusesWeakKeysAndBadOptions(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]*Options{
		"weak rsa":       {Domain: "a.example", Keys: []Key{{Selector: "s", Signer: weak}}},
		"no keys":        {Domain: "a.example"},
		"no domain":      {Keys: []Key{{Selector: "s", Signer: rfc8463Key(t)}}},
		"bad selector":   {Domain: "a.example", Keys: []Key{{Selector: "a b", Signer: rfc8463Key(t)}}},
		"foreign i=":     {Domain: "a.example", Identifier: "x@b.example", Keys: []Key{{Selector: "s", Signer: rfc8463Key(t)}}},
		"suffix not sub": {Domain: "a.example", Identifier: "x@ba.example", Keys: []Key{{Selector: "s", Signer: rfc8463Key(t)}}},
	} {
		if _, err := Sign(nil, dkimcore.HashBody(nil, dkimcore.Relaxed), o); err == nil {
			t.Errorf("%s: signed", name)
		} else if name == "weak rsa" && !strings.Contains(err.Error(), "1024 bits") {
			t.Errorf("weak key error does not say why: %v", err)
		}
	}
}

// TestSignMinRSABits: a 1024-bit key signs only when the minimum is lowered to 1024 (RFC 8301
// §3.2 permits it), and no minimum below 1024 may be set.
func TestSignMinRSABits(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	hdr := dkimcore.Header{dkimcore.Field("From: a@a.example\r\n")}
	o := &Options{Domain: "a.example", Keys: []Key{{Selector: "s", Signer: weak}}, MinRSABits: 1024}
	fields, err := Sign(hdr, dkimcore.HashBody(nil, dkimcore.Relaxed), o)
	if err != nil || len(fields) != 1 || !strings.Contains(string(fields[0]), "a=rsa-sha256") {
		t.Fatalf("1024-bit key with MinRSABits 1024: %v %q", err, fields)
	}
	o.MinRSABits = 0
	if _, err := Sign(hdr, dkimcore.HashBody(nil, dkimcore.Relaxed), o); err == nil || !strings.Contains(err.Error(), "min_rsa_bits: 1024") {
		t.Errorf("1024-bit key with the default minimum: %v; want a refusal naming the opt-in", err)
	}
	o.MinRSABits = 512
	if _, err := Sign(hdr, dkimcore.HashBody(nil, dkimcore.Relaxed), o); err == nil || !strings.Contains(err.Error(), "at least 1024 bits") {
		t.Errorf("MinRSABits 512: %v", err)
	}
	for n, ok := range map[int]bool{0: true, 1024: true, 2048: true, 4096: true, 1023: false, 512: false, -1: false} {
		if err := CheckMinRSABits(n); (err == nil) != ok {
			t.Errorf("CheckMinRSABits(%d) = %v", n, err)
		}
	}
}

// TestStandardsExample checks the worked example of standards.md §1.8, signed with a
// throw-away Ed25519 key, byte for byte: our signer must produce exactly its b= when the
// field is folded as there.
func TestStandardsExample(t *testing.T) {
	msg := "From: Ana Ruiz <ana@corp.example>\r\n" +
		"To: ops@partner.example\r\n" +
		"Subject:  Quarterly   numbers\r\n\t(draft)\r\n" +
		"Date: Tue, 06 Oct 2026 09:15:00 +0000\r\n" +
		"Message-ID: <q3-7f2a@corp.example>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Totals below.  \r\n\tLine two\t\r\n\r\n"
	hdr, body, err := ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	seed := sha256Sum("standards.md example only")
	key := ed25519.NewKeyFromSeed(seed[:])
	o := &Options{
		Domain:     "corp.example",
		Keys:       []Key{{Selector: "ed2026", Signer: key}},
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"},
		Oversign:   []string{"From", "Subject"},
		Time:       time.Unix(1791278100, 0),
	}
	names := o.SignedHeaderNames(hdr)
	if got := strings.Join(names, ":"); got != "from:from:to:subject:subject:date:message-id:mime-version:content-type" {
		t.Fatalf("h= %s", got)
	}
	bh := dkimcore.HashBody(body, dkimcore.Relaxed)[dkimcore.Relaxed]
	if got := base64.StdEncoding.EncodeToString(bh); got != "DapSA3MWkeoN3LaBjupcppw3MK8VhzSxI5qPqsot3N0=" {
		t.Errorf("bh = %s", got)
	}
	// The example's own field and h= order, verified with its public key.
	field := dkimcore.Field("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=corp.example;\r\n" +
		" s=ed2026; t=1791278100; h=from:to:subject:date:message-id:mime-version:\r\n" +
		" content-type:from:subject;\r\n" +
		" bh=DapSA3MWkeoN3LaBjupcppw3MK8VhzSxI5qPqsot3N0=;\r\n" +
		" b=7TUoB/0lkwDCYzYqc/7Zql+VHlSYYY4kSZz2w1gz\r\n" +
		" 9k20Fo83jt+j2ngoeiD8QMztSMEDN7a1/DdKQaCe1XIQCA==\r\n")
	sig, err := dkimcore.ParseSignature(field)
	if err != nil {
		t.Fatal(err)
	}
	input := dkimcore.AppendHeaderHashInput(nil, hdr, sig.Headers, dkimcore.Relaxed)
	rec := &dkimcore.KeyRecord{KeyType: "ed25519", PublicKey: key.Public()}
	if err := sig.VerifyWithKey(rec, input, dkimcore.Relaxed); err != nil {
		t.Errorf("standards example does not verify: %v", err)
	}
	// And signing that same tag list gives that same b=.
	tags := sig.Tags[:len(sig.Tags)-1]
	f, err := dkimcore.SignField("DKIM-Signature", tags, input, dkimcore.Relaxed, key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dkimcore.StripFWS(string(f)), "b=7TUoB/0lkwDCYzYqc/7Zql+VHlSYYY4kSZz2w1gz9k20Fo83jt+j2ngoeiD8QMztSMEDN7a1/DdKQaCe1XIQCA==") {
		t.Errorf("b= differs from the example:\n%s", f)
	}
}

func sha256Sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }
