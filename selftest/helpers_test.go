package selftest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/keys"
	"sealgate/sign"
	"sealgate/verify"
)

// testKey signs every test message; its record is published for each signing domain a
// test names.
var testKey = sync.OnceValue(func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// dkimRecord is the zone line of the test key at s1._domainkey.<domain>.
func dkimRecord(domain string) string {
	return keys.DNSRecord(testKey().Public(), "s1", domain) + "\n"
}

// testOptions returns verifier options on a DNS server for zone on 127.0.0.1, asked with a
// short per-query timeout.
func testOptions(t *testing.T, zone string) *verify.Options {
	t.Helper()
	r, err := resolver.New(resolver.Config{Server: resolvertest.Start(t, "$TTL 300\n"+zone), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &verify.Options{Resolver: r, AuthServID: "mx.test.example", Timeout: 3 * time.Second}
}

// message returns a plain message from the given From field value.
func message(from string) string {
	return "From: " + from + "\r\nTo: b@rcpt.example\r\nSubject: test\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@test>\r\n\r\nHello.\r\n"
}

// signed returns msg with a DKIM-Signature of d=domain, s=s1 by the test key.
func signed(t *testing.T, msg, domain string) string {
	t.Helper()
	var b bytes.Buffer
	o := &sign.Options{Domain: domain, Keys: []sign.Key{{Selector: "s1", Signer: testKey()}}}
	if err := sign.SignMessage(&b, strings.NewReader(msg), o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var clientIP = netip.MustParseAddr("192.0.2.25")
