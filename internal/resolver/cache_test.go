package resolver_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// countingServer answers from zone and counts the questions; names in fail get SERVFAIL.
func countingServer(t *testing.T, zone string, fail string) (resolver.Resolver, *atomic.Int64) {
	t.Helper()
	up := resolvertest.Start(t, zone)
	var n atomic.Int64
	client := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	addr := resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		n.Add(1)
		if fail != "" && strings.EqualFold(req.Question[0].Name, fail) {
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeServerFailure)
			w.WriteMsg(m)
			return
		}
		resp, _, err := client.Exchange(req, up)
		if err == nil {
			resolvertest.Reply(w, req, resp)
		}
	}))
	r, err := resolver.New(resolver.Config{Server: addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r, &n
}

const cacheZone = `$TTL 300
a.example. IN TXT "v=spf1 -all"
a.example. IN A 192.0.2.1
a.example. IN MX 10 mx.a.example.
1.2.0.192.in-addr.arpa. IN PTR a.example.
`

func TestCacheKeepsAnswers(t *testing.T) {
	r, n := countingServer(t, cacheZone, "bad.example.")
	c := resolver.NewCache(r, time.Minute, 100)
	ctx := context.Background()
	for range 3 {
		if txt, err := c.LookupTXT(ctx, "A.example."); err != nil || len(txt) != 1 || txt[0] != "v=spf1 -all" {
			t.Fatalf("TXT %q %v", txt, err)
		}
		if _, err := c.LookupTXT(ctx, "none.example"); !resolver.IsNotFound(err) {
			t.Fatalf("TXT of a missing name: %v", err)
		}
		if mx, err := c.LookupMX(ctx, "a.example"); err != nil || mx[0].Host != "mx.a.example." {
			t.Fatalf("MX %v %v", mx, err)
		}
		if names, err := c.LookupAddr(ctx, "192.0.2.1"); err != nil || names[0] != "a.example." {
			t.Fatalf("PTR %v %v", names, err)
		}
		if ips, err := resolver.LookupIPFamily(ctx, c, "a.example", false); err != nil || !ips[0].Equal(net.IPv4(192, 0, 2, 1)) {
			t.Fatalf("A %v %v", ips, err)
		}
	}
	// One question each: TXT, TXT of the missing name, MX, PTR, A.
	if got := n.Load(); got != 5 {
		t.Errorf("%d questions, want 5", got)
	}
	// A temporary failure is not kept.
	for range 2 {
		if _, err := c.LookupTXT(ctx, "bad.example"); !resolver.IsTemporary(err) {
			t.Fatalf("SERVFAIL: %v", err)
		}
	}
	if got := n.Load(); got < 7 {
		t.Errorf("%d questions: the SERVFAIL was cached", got)
	}
	// A caller changing an answer does not change the cache.
	txt, _ := c.LookupTXT(ctx, "a.example")
	txt[0] = "changed"
	if txt, _ := c.LookupTXT(ctx, "a.example"); txt[0] != "v=spf1 -all" {
		t.Errorf("cached answer changed to %q", txt[0])
	}
}

func TestCacheBounds(t *testing.T) {
	r, n := countingServer(t, cacheZone, "")
	now := time.Unix(1e9, 0)
	c := resolver.NewCache(r, time.Minute, 2)
	resolver.SetCacheClock(c, func() time.Time { return now })
	ctx := context.Background()
	c.LookupTXT(ctx, "a.example")
	c.LookupMX(ctx, "a.example")
	c.LookupAddr(ctx, "192.0.2.1") // evicts the TXT answer, the least recently used
	if c.Len() != 2 {
		t.Fatalf("%d answers kept, want 2", c.Len())
	}
	before := n.Load()
	c.LookupMX(ctx, "a.example")
	if n.Load() != before {
		t.Error("MX asked again within the TTL")
	}
	c.LookupTXT(ctx, "a.example")
	if n.Load() != before+1 {
		t.Error("the evicted TXT answer was still kept")
	}
	now = now.Add(time.Minute)
	c.LookupTXT(ctx, "a.example")
	if n.Load() != before+2 {
		t.Error("an answer was kept beyond the TTL")
	}
}
