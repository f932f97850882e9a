package sign_test

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"strings"
	"time"

	"sealgate/internal/addr"
	"sealgate/sign"
)

// A key ring answers which keys sign for a From domain. client.example signs for its
// subdomains too (sign_subdomains), so mail from news.client.example is signed
// d=client.example; corp.example does not, so mail from its subdomains has no keys.
func ExampleKeyRing() {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // use keys.Load in real code
	ring, err := sign.NewKeyRing(
		sign.DomainKeys{Domain: "client.example", Keys: []sign.Key{{Selector: "ed2026", Signer: key}}, SignSubdomains: true},
		sign.DomainKeys{Domain: "corp.example", Keys: []sign.Key{{Selector: "ed2026", Signer: key}}},
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, from := range []string{"client.example", "news.client.example", "news.corp.example"} {
		dk, ok := ring.Lookup(addr.Domain(from))
		if !ok {
			fmt.Printf("%s: no keys\n", from)
			continue
		}
		fmt.Printf("%s: d=%s with %d key(s)\n", from, dk.Domain, len(dk.Keys))
	}

	dk, _ := ring.Lookup("news.client.example")
	o := dk.Options()
	o.Time = time.Unix(1791278100, 0)
	msg := "From: Ana <ana@news.client.example>\r\nSubject: hello\r\n\r\nHi.\r\n"
	var out strings.Builder
	if err := sign.SignMessage(&out, strings.NewReader(msg), o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Println(strings.Contains(out.String(), "d=client.example;"))
	// Output:
	// client.example: d=client.example with 1 key(s)
	// news.client.example: d=client.example with 1 key(s)
	// news.corp.example: no keys
	// true
}
