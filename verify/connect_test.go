package verify

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const connectZone = `
25.2.0.192.in-addr.arpa.   PTR relay.corp.example.
relay.corp.example.        A   192.0.2.25
26.2.0.192.in-addr.arpa.   PTR liar.corp.example.
liar.corp.example.         A   192.0.2.99
27.2.0.192.in-addr.arpa.   PTR slow.corp.example.
5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR six.corp.example.
six.corp.example.          AAAA 2001:db8::25
six.corp.example.          A    192.0.2.25
25.2.0.192.bl.example.     A   127.0.0.2
25.2.0.192.bl.example.     TXT "listed for spam, see https://bl.example/q?192.0.2.25"
25.2.0.192.refused.example. A  127.255.255.254
25.2.0.192.wild.example.   A   192.0.2.1
5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example. A 127.0.0.4
`

func TestIPRev(t *testing.T) {
	r := testResolver(t, startDNS(t, connectZone, "slow.corp.example", "28.2.0.192.in-addr.arpa"))
	for _, tc := range []struct {
		ip, result, reason string
	}{
		{"192.0.2.25", "pass", "192.0.2.25 -> relay.corp.example -> 192.0.2.25"},
		{"192.0.2.26", "fail", "does not resolve back"},
		{"192.0.2.30", "fail", "has no PTR record"},
		{"192.0.2.27", "temperror", "could not be fetched"},
		{"192.0.2.28", "temperror", ""},
		{"2001:db8::25", "pass", "six.corp.example"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		res := CheckIPRev(ctx, r, netip.MustParseAddr(tc.ip))
		cancel()
		if res.Result != tc.result || !strings.Contains(res.Reason, tc.reason) {
			t.Errorf("%s: %s (%s), want %s (%s)", tc.ip, res.Result, res.Reason, tc.result, tc.reason)
		}
	}
}

func TestDNSBL(t *testing.T) {
	r := testResolver(t, startDNS(t, connectZone, "25.2.0.192.slow.example"))
	for _, tc := range []struct {
		ip, zone, result, detail string
	}{
		{"192.0.2.25", "bl.example", "listed", "listed for spam"},
		{"192.0.2.26", "bl.example", "not listed", ""},
		// 127.255.255.254 is the list refusing the query, never a listing.
		{"192.0.2.25", "refused.example", "error", "public or open resolver"},
		{"192.0.2.25", "wild.example", "error", "outside 127.0.0.0/8"},
		{"192.0.2.25", "slow.example", "temperror", ""},
		{"2001:db8::25", "bl.example", "listed", "127.0.0.4"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		res := CheckDNSBL(ctx, r, netip.MustParseAddr(tc.ip), tc.zone)
		cancel()
		got := res.Reason + res.Text + strings.Join(res.Codes, ",")
		if res.Result != tc.result || !strings.Contains(got, tc.detail) {
			t.Errorf("%s in %s: %s (%s), want %s (%s)", tc.ip, tc.zone, res.Result, got, tc.result, tc.detail)
		}
	}
	if got := dnsblName(netip.MustParseAddr("2001:db8::25"), "bl.example."); got != "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example" {
		t.Errorf("IPv6 query name %s", got)
	}
}

func TestHELO(t *testing.T) {
	r := testResolver(t, startDNS(t, connectZone, "slow.corp.example"))
	ip := netip.MustParseAddr("192.0.2.25")
	for _, tc := range []struct {
		helo, result, reason string
	}{
		{"relay.corp.example", "pass", "resolves to 192.0.2.25"},
		{"liar.corp.example", "fail", "resolves to 192.0.2.99, not to 192.0.2.25"},
		{"nowhere.corp.example", "fail", "has no A record"},
		{"slow.corp.example", "temperror", ""},
		{"[192.0.2.25]", "pass", "the address literal is the client IP"},
		{"[IPv6:2001:db8::1]", "fail", "is not the client IP"},
		{"[192.0.2.300]", "invalid", "not a valid address literal"},
		{"localhost", "invalid", "not a fully qualified domain name"},
		{"192.0.2.25", "invalid", "neither a domain name nor an address literal"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		res := CheckHELO(ctx, r, ip, tc.helo)
		cancel()
		if res.Result != tc.result || !strings.Contains(res.Reason, tc.reason) {
			t.Errorf("HELO %s: %s (%s), want %s (%s)", tc.helo, res.Result, res.Reason, tc.result, tc.reason)
		}
	}
}
