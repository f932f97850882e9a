package arc

import (
	"strings"
	"testing"

	"sealgate/internal/dkimcore"
	"sealgate/sign"
)

// The AMS and AS carry d= as A-labels when the sealing domain is given in U-labels
// (RFC 8616 §4), and a look-alike sealing domain is refused.
func TestSealIDNDomain(t *testing.T) {
	r, _, ek := testKeys(t)
	msg := []byte("From: 用户 <用户@例子.广告>\r\nSubject: 你好\r\n\r\nbody\r\n")
	out, _, err := seal(t, msg, &SealOptions{Domain: "例子.广告", Selector: "ed", Signer: ek, AuthServID: "relay.example", Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, err := sign.ReadMessage(strings.NewReader(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{AMSField, ASField} {
		v := hdr.Values(name)
		if len(v) != 1 {
			t.Fatalf("%d %s fields", len(v), name)
		}
		tags, err := dkimcore.ParseTags(v[0])
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := tags.Get("d"); d != "xn--fsqu00a.xn--4rr70v" {
			t.Errorf("%s d=%s, want xn--fsqu00a.xn--4rr70v", name, d)
		}
	}
	if _, _, err := seal(t, msg, &SealOptions{Domain: "例子．广告", Selector: "ed", Signer: ek, AuthServID: "relay.example", Resolver: r}); err == nil {
		t.Error("a look-alike sealing domain was accepted")
	}
}
