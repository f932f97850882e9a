package sign

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"sealgate/internal/dkimcore"
)

// RFC 8616 §4: d= and the domain of i= are A-labels, whatever form the options use;
// the local part of i= stays UTF-8; UTF-8 header fields are signed as their bytes.
func TestSignIDN(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	hdr := dkimcore.Header{
		dkimcore.Field("From: 用户 <用户@例子.广告>\r\n"),
		dkimcore.Field("Subject: 你好\r\n"),
	}
	tests := []struct {
		name, domain, identifier string
		wantD, wantI             string
		err                      bool
	}{
		{"U-label", "例子.广告", "", "xn--fsqu00a.xn--4rr70v", "", false},
		{"A-label", "xn--fsqu00a.xn--4rr70v", "", "xn--fsqu00a.xn--4rr70v", "", false},
		{"UTF-8 identifier", "例子.广告", "用户@例子.广告", "xn--fsqu00a.xn--4rr70v", "用户@xn--fsqu00a.xn--4rr70v", false},
		{"identifier in a subdomain, A-label", "例子.广告", "a@mail.xn--fsqu00a.xn--4rr70v", "xn--fsqu00a.xn--4rr70v", "a@mail.xn--fsqu00a.xn--4rr70v", false},
		{"identifier elsewhere", "例子.广告", "a@例字.广告", "", "", true},
		{"look-alike signing domain", "例子．广告", "", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &Options{Domain: tt.domain, Identifier: tt.identifier, Keys: []Key{{Selector: "s", Signer: key}}}
			fields, err := Sign(hdr, dkimcore.HashBody([]byte("body\r\n"), dkimcore.Relaxed), o)
			if tt.err {
				if err == nil {
					t.Fatalf("Sign = %q, want an error", fields)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tags, err := dkimcore.ParseTags(strings.SplitN(string(fields[0]), ":", 2)[1])
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := tags.Get("d"); d != tt.wantD {
				t.Errorf("d=%s, want %s", d, tt.wantD)
			}
			if i, _ := tags.Get("i"); i != tt.wantI {
				t.Errorf("i=%s, want %s", i, tt.wantI)
			}
		})
	}
}
