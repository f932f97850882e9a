package verify

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/keys"
	"sealgate/sign"
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

// startDNS serves zone on 127.0.0.1 and returns its address. Questions for the names in hang
// (any type) get no answer at all, as from a dead server.
func startDNS(t *testing.T, zone string, hang ...string) string {
	t.Helper()
	zoneAddr := resolvertest.Start(t, "$TTL 300\n"+zone)
	if len(hang) == 0 {
		return zoneAddr
	}
	client := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	return resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		if len(req.Question) == 1 {
			for _, h := range hang {
				if strings.EqualFold(req.Question[0].Name, dns.Fqdn(h)) {
					return // never answer
				}
			}
		}
		resp, _, err := client.Exchange(req, zoneAddr)
		if err != nil {
			return
		}
		resolvertest.Reply(w, req, resp)
	}))
}

// testResolver is a network resolver asking addr with a short per-query timeout.
func testResolver(t *testing.T, addr string) resolver.Resolver {
	t.Helper()
	r, err := resolver.New(resolver.Config{Server: addr, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testOptions returns Options on a DNS server for zone.
func testOptions(t *testing.T, zone string, hang ...string) *Options {
	return &Options{Resolver: testResolver(t, startDNS(t, zone, hang...)), AuthServID: "mx.test.example", Timeout: 3 * time.Second}
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

// run verifies msg with env and o, failing the test on an error.
func run(t *testing.T, env Envelope, msg string, o *Options) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), env, strings.NewReader(msg), o)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

var clientIP = netip.MustParseAddr("192.0.2.25")

// checkOf returns the first check named name at stage, failing the test when there is none.
func checkOf(t *testing.T, rep *Report, stage Stage, name string) Check {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Stage == stage && c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s check %q in %+v", stage, name, rep.Checks)
	return Check{}
}

// startTypeHang serves what the server at upstream answers, except that questions of type
// qtype get no answer.
func startTypeHang(t *testing.T, upstream string, qtype uint16) string {
	client := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	return resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		if len(req.Question) == 1 && req.Question[0].Qtype == qtype {
			return
		}
		resp, _, err := client.Exchange(req, upstream)
		if err == nil {
			resolvertest.Reply(w, req, resp)
		}
	}))
}

// readForTest parses a header for tests.
func readForTest(msg string) (dkimcore.Header, []byte, error) {
	return sign.ReadMessage(strings.NewReader(msg))
}
