package sign

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver/resolvertest"
)

// repeatedFields returns a message whose header has n Subject fields.
func repeatedFields(n int) string {
	var b strings.Builder
	b.WriteString("From: Ana <ana@example.com>\r\nTo: bo@example.net\r\nDate: Tue, 06 Oct 2026 09:15:00 +0000\r\n")
	for i := range n {
		fmt.Fprintf(&b, "Subject: s%d\r\n", i)
	}
	b.WriteString("\r\nHello.\r\n")
	return b.String()
}

// BenchmarkRepeatedFields signs and verifies messages with 1k and 10k Subject fields: header
// selection (RFC 6376 §5.4.2, bottom-most unused instance) must cost time linear in the number
// of fields, so ns/op grows about tenfold from 1k to 10k, not a hundredfold. Every Subject is
// signed (and one more, oversigned), so h= lists n+1 names.
func BenchmarkRepeatedFields(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	rec, _ := dkimcore.KeyRecordText(key.Public())
	r := resolvertest.NewZone(b, "ed._domainkey.example.com. 300 IN TXT \""+rec+"\"\n")
	for _, n := range []int{1000, 10000} {
		hdr, body, err := ReadMessage(strings.NewReader(repeatedFields(n)))
		if err != nil {
			b.Fatal(err)
		}
		bodies := dkimcore.HashBody(body, dkimcore.Relaxed)
		o := &Options{Domain: "example.com", Keys: []Key{{Selector: "ed", Signer: key}}}
		b.Run(fmt.Sprintf("sign/%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Sign(hdr, bodies, o); err != nil {
					b.Fatal(err)
				}
			}
		})
		sigs, err := Sign(hdr, bodies, o)
		if err != nil {
			b.Fatal(err)
		}
		signed := append(sigs, hdr...)
		b.Run(fmt.Sprintf("verify/%d", n), func(b *testing.B) {
			for b.Loop() {
				res := VerifyHeader(context.Background(), signed, bodies, &VerifyOptions{Resolver: r})
				if len(res) != 1 || res[0].Status != StatusPass {
					b.Fatalf("%+v", res)
				}
			}
		})
	}
}
