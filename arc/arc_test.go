package arc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/sign"
)

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	edKey    ed25519.PrivateKey
	zoneText string
)

// testKeys returns an RSA and an Ed25519 key published at rsa._domainkey and
// ed._domainkey of relay.example and list.example.
func testKeys(t *testing.T) (resolver.Resolver, *rsa.PrivateKey, ed25519.PrivateKey) {
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		_, edKey, _ = ed25519.GenerateKey(rand.Reader)
		var b strings.Builder
		for _, d := range []string{"relay.example", "list.example", "fwd.example"} {
			for sel, k := range map[string]crypto.PublicKey{"rsa": rsaKey.Public(), "ed": edKey.Public()} {
				rec, err := dkimcore.KeyRecordText(k)
				if err != nil {
					panic(err)
				}
				fmt.Fprintf(&b, "%s._domainkey.%s. 300 IN TXT %s\n", sel, d, txtStrings(rec))
			}
		}
		zoneText = b.String()
	})
	return resolvertest.NewZone(t, zoneText), rsaKey, edKey
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

const testMessage = "From: Ana <ana@corp.example>\r\n" +
	"To: list@list.example\r\n" +
	"Subject: ARC test\r\n" +
	"Date: Tue, 06 Oct 2026 09:15:00 +0000\r\n" +
	"Message-ID: <arc-1@corp.example>\r\n" +
	"\r\n" +
	"Hello,  world.\r\n\r\n"

// seal adds one set to msg and returns the new message.
func seal(t *testing.T, msg []byte, o *SealOptions) ([]byte, *Result, error) {
	t.Helper()
	hdr, body, err := sign.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	bodies := dkimcore.HashBody(body, RequiredCanonicalizations(hdr)...)
	fields, res, err := Seal(context.Background(), hdr, bodies, o)
	if err != nil {
		return msg, res, err
	}
	var out bytes.Buffer
	sign.WriteMessage(&out, append(fields, hdr...), body)
	return out.Bytes(), res, nil
}

func validate(t *testing.T, r resolver.Resolver, msg []byte) *Result {
	t.Helper()
	hdr, body, err := sign.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return Validate(context.Background(), hdr, dkimcore.HashBody(body, RequiredCanonicalizations(hdr)...), ValidateOptions{Resolver: r})
}

func TestSealAndValidateChain(t *testing.T) {
	r, rk, ek := testKeys(t)
	msg := []byte(testMessage)
	if res := validate(t, r, msg); res.Status != None {
		t.Fatalf("unsealed message: %v", res)
	}
	hops := []struct {
		domain, sel string
		key         crypto.Signer
		id          string
	}{
		{"relay.example", "rsa", rk, "relay.example"},
		{"list.example", "ed", ek, "mx.list.example"},
		{"fwd.example", "rsa", rk, "fwd.example"},
	}
	for i, hop := range hops {
		var err error
		var res *Result
		msg, res, err = seal(t, msg, &SealOptions{
			Domain: hop.domain, Selector: hop.sel, Signer: hop.key, AuthServID: hop.id,
			Results: []string{"auth=pass smtp.auth=ana@corp.example"}, Resolver: r,
			Time: time.Unix(1791278100+int64(i), 0),
		})
		if err != nil {
			t.Fatalf("hop %d: %v", i+1, err)
		}
		want := Pass
		if i == 0 {
			want = None
		}
		if res.Status != want {
			t.Errorf("hop %d saw chain %v, want %s", i+1, res, want)
		}
		got := validate(t, r, msg)
		if got.Status != Pass || got.Instances != i+1 || got.OldestPass != 0 {
			t.Fatalf("after hop %d: %v (reason %q)", i+1, got, got.Reason)
		}
		if !bytes.Contains(msg, []byte(fmt.Sprintf("cv=%s", want))) {
			t.Errorf("hop %d: no cv=%s in\n%s", i+1, want, msg)
		}
	}
	if !bytes.Contains(msg, []byte("ARC-Authentication-Results: i=3; fwd.example;\r\n auth=pass smtp.auth=ana@corp.example;\r\n arc=pass")) {
		t.Errorf("AAR of set 3 not as expected:\n%s", msg)
	}

	// A body change breaks the newest AMS: fail.
	changed := bytes.Replace(msg, []byte("Hello,"), []byte("Hullo,"), 1)
	if res := validate(t, r, changed); res.Status != Fail || !strings.Contains(res.Reason, "i=3") {
		t.Errorf("changed body: %v", res)
	}
	// A changed AAR of an old set breaks the seals.
	changed = bytes.Replace(msg, []byte("i=1; relay.example;"), []byte("i=1; relay.example; dkim=pass;"), 1)
	if res := validate(t, r, changed); res.Status != Fail {
		t.Errorf("changed AAR: %v", res)
	}
	// A Subject changed after the last hop: AMS(3) fails.
	changed = bytes.Replace(msg, []byte("Subject: ARC test"), []byte("Subject: ARC test!"), 1)
	if res := validate(t, r, changed); res.Status != Fail {
		t.Errorf("changed Subject: %v", res)
	}
	// The next hop sees a failed chain and seals with cv=fail, covering only its own set; the
	// hop after that must not seal at all.
	failed, res, err := seal(t, changed, &SealOptions{Domain: "relay.example", Selector: "ed", Signer: ek, AuthServID: "x.example", Resolver: r})
	if err != nil || res.Status != Fail {
		t.Fatalf("sealing a failed chain: %v %v", res, err)
	}
	if !bytes.Contains(failed, []byte("i=4; a=ed25519-sha256;")) || !bytes.Contains(failed, []byte("cv=fail")) {
		t.Errorf("no i=4 cv=fail seal:\n%s", failed)
	}
	if res := validate(t, r, failed); res.Status != Fail {
		t.Errorf("chain ending in cv=fail validated: %v", res)
	}
	out, _, err := seal(t, failed, &SealOptions{Domain: "relay.example", Selector: "ed", Signer: ek, AuthServID: "y.example", Resolver: r})
	var ns *NoSealError
	if err == nil || !errorsAs(err, &ns) || !bytes.Equal(out, failed) {
		t.Errorf("sealed on top of cv=fail: %v", err)
	}
}

func errorsAs(err error, target **NoSealError) bool {
	e, ok := err.(*NoSealError)
	if ok {
		*target = e
	}
	return ok
}

func TestOldestPass(t *testing.T) {
	r, rk, ek := testKeys(t)
	msg, _, err := seal(t, []byte(testMessage), &SealOptions{Domain: "relay.example", Selector: "rsa", Signer: rk, AuthServID: "relay.example", Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	// A list validates the chain, then tags the subject and seals with what it validated:
	// AMS(1) no longer verifies but the chain passes, with oldest-pass 2.
	seen := validate(t, r, msg)
	if seen.Status != Pass {
		t.Fatalf("list saw %v", seen)
	}
	msg = bytes.Replace(msg, []byte("Subject: ARC test"), []byte("Subject: [list] ARC test"), 1)
	msg, _, err = seal(t, msg, &SealOptions{Domain: "list.example", Selector: "ed", Signer: ek, AuthServID: "list.example", Resolver: r, Chain: seen})
	if err != nil {
		t.Fatal(err)
	}
	if res := validate(t, r, msg); res.Status != Pass || res.OldestPass != 2 {
		t.Errorf("got %v, want pass with oldest-pass 2", res)
	}
}

func TestStructureFailures(t *testing.T) {
	r, rk, _ := testKeys(t)
	one, _, err := seal(t, []byte(testMessage), &SealOptions{Domain: "relay.example", Selector: "rsa", Signer: rk, AuthServID: "relay.example", Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, _ := sign.ReadMessage(bytes.NewReader(one))
	as, ams, aar := string(hdr[0]), string(hdr[1]), string(hdr[2])
	rest := strings.TrimPrefix(string(one), as+ams+aar)
	cases := map[string]string{
		"missing AAR":        as + ams + rest,
		"duplicate AS":       as + as + ams + aar + rest,
		"instance 0":         strings.Replace(as, "i=1", "i=0", 1) + ams + strings.Replace(aar, "i=1", "i=0", 1) + strings.Replace(as, "i=1", "i=0", 1) + rest,
		"gap":                strings.Replace(as, "i=1", "i=2", 1) + strings.Replace(ams, "i=1", "i=2", 1) + strings.Replace(aar, "i=1", "i=2", 1) + rest,
		"cv=pass at i=1":     strings.Replace(as, "cv=none", "cv=pass", 1) + ams + aar + rest,
		"instance too big":   strings.Replace(as, "i=1", "i=51", 1) + ams + aar + rest,
		"unparsable i":       strings.Replace(as, "i=1", "i=x", 1) + ams + aar + rest,
		"AS with h=":         strings.Replace(as, "cv=none;", "cv=none; h=from;", 1) + ams + aar + rest,
		"AMS signs ARC-Seal": as + strings.Replace(ams, "h=from", "h=arc-seal:from", 1) + aar + rest,
	}
	for name, m := range cases {
		if res := validate(t, r, []byte(m)); res.Status != Fail {
			t.Errorf("%s: %v", name, res)
		} else if res.Reason == "" {
			t.Errorf("%s: fail without a reason", name)
		}
	}
}

func TestSealLimits(t *testing.T) {
	r, _, ek := testKeys(t)
	msg := []byte(testMessage)
	var err error
	for i := 1; i <= MaxInstances; i++ {
		msg, _, err = seal(t, msg, &SealOptions{Domain: "relay.example", Selector: "ed", Signer: ek, AuthServID: "relay.example", Resolver: r})
		if err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
	}
	if res := validate(t, r, msg); res.Status != Pass || res.Instances != MaxInstances {
		t.Fatalf("50 sets: %v", res)
	}
	if _, _, err := seal(t, msg, &SealOptions{Domain: "relay.example", Selector: "ed", Signer: ek, AuthServID: "relay.example", Resolver: r}); err == nil {
		t.Error("sealed a 51st set")
	}
	if _, _, err := seal(t, []byte(testMessage), &SealOptions{Domain: "relay.example", Selector: "ed", Signer: ek, AuthServID: "r", HeaderKeys: []string{"From", "ARC-Seal"}}); err == nil {
		t.Error("AMS allowed to sign ARC-Seal")
	}
}

func FuzzValidate(f *testing.F) {
	f.Add([]byte("ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x; s=y; b=AAAA\r\nARC-Message-Signature: i=1; a=rsa-sha256; d=x; s=y; h=from; bh=AAAA; b=AAAA\r\nARC-Authentication-Results: i=1; x; none\r\nFrom: a@b\r\n\r\nbody\r\n"))
	f.Add([]byte(testMessage))
	f.Fuzz(func(t *testing.T, msg []byte) {
		hdr, body, err := sign.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			return
		}
		res := Validate(context.Background(), hdr, dkimcore.HashBody(body, dkimcore.Relaxed, dkimcore.Simple), ValidateOptions{Resolver: resolvertest.NewZone(t, "")})
		if res.Status == Pass {
			t.Fatalf("random chain passed: %q", msg)
		}
		if res.Status == Fail && res.Reason == "" {
			t.Fatal("fail without reason")
		}
	})
}
