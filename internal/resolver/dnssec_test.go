package resolver_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// adServer answers as a validating resolver would: AD set for names under "signed.",
// clear elsewhere; NODATA for what it has no record of. It counts the queries that had DO.
func adServer(t *testing.T, withDO *atomic.Int32) string {
	t.Helper()
	return resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(req)
		q := req.Question[0]
		if opt := req.IsEdns0(); opt != nil && opt.Do() {
			withDO.Add(1)
		}
		resp.AuthenticatedData = dns.IsSubDomain("signed.", q.Name)
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 60}
		switch q.Qtype {
		case dns.TypeA:
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 1)})
		case dns.TypeTLSA:
			if q.Name == "_25._tcp.mx.signed." {
				resp.Answer = append(resp.Answer, &dns.TLSA{Hdr: hdr, Usage: 3, Selector: 1, MatchingType: 1, Certificate: "aa"})
			}
		}
		resolvertest.Reply(w, req, resp)
	}))
}

func TestLookupSecure(t *testing.T) {
	var withDO atomic.Int32
	addr := adServer(t, &withDO)
	tests := []struct {
		name       string
		dnssec     bool
		qname      string
		qtype      uint16
		wantSecure bool
		wantFound  bool
	}{
		{"validating, signed", true, "mx.signed.", dns.TypeA, true, true},
		{"validating, TLSA", true, "_25._tcp.mx.signed.", dns.TypeTLSA, true, true},
		{"validating, secure denial", true, "_25._tcp.other.signed.", dns.TypeTLSA, true, false},
		{"validating, unsigned", true, "mx.unsigned.", dns.TypeA, false, true},
		{"not validating: AD ignored", false, "mx.signed.", dns.TypeA, false, true},
		{"not validating: denial insecure", false, "_25._tcp.other.signed.", dns.TypeTLSA, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := resolver.New(resolver.Config{Server: addr, Timeout: 2 * time.Second, DNSSEC: tt.dnssec})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []resolver.Resolver{r, resolver.NewCache(r, time.Minute, 10)} {
				before := withDO.Load()
				a, err := resolver.LookupSecure(context.Background(), r, tt.qname, tt.qtype)
				if found := err == nil; found != tt.wantFound {
					t.Fatalf("%T: found %v (err %v), want %v", r, found, err, tt.wantFound)
				}
				if !tt.wantFound && !resolver.IsNotFound(err) {
					t.Errorf("%T: error %v is not a not-found error", r, err)
				}
				if a.Secure != tt.wantSecure {
					t.Errorf("%T: Secure = %v, want %v", r, a.Secure, tt.wantSecure)
				}
				if sentDO := withDO.Load() > before; sentDO != tt.dnssec {
					t.Errorf("%T: query sent with DO = %v, want %v", r, sentDO, tt.dnssec)
				}
			}
		})
	}
}

func TestLookupSecureCacheKeepsStatus(t *testing.T) {
	var withDO atomic.Int32
	addr := adServer(t, &withDO)
	r, err := resolver.New(resolver.Config{Server: addr, Timeout: 2 * time.Second, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	c := resolver.NewCache(r, time.Minute, 10)
	for _, name := range []string{"mx.signed.", "mx.unsigned.", "mx.signed.", "mx.unsigned."} {
		a, err := c.LookupSecure(context.Background(), name, dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if want := name == "mx.signed."; a.Secure != want {
			t.Errorf("%s: Secure = %v, want %v", name, a.Secure, want)
		}
	}
	if n := withDO.Load(); n != 2 {
		t.Errorf("%d queries reached the server, want 2 (the rest from the cache)", n)
	}
}

func TestLookupIPSecure(t *testing.T) {
	var withDO atomic.Int32
	addr := adServer(t, &withDO)
	r, err := resolver.New(resolver.Config{Server: addr, Timeout: 2 * time.Second, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"mx.signed.": true, "mx.unsigned.": false} {
		a, err := resolver.LookupIPSecure(context.Background(), r, name)
		if err != nil {
			t.Fatal(err)
		}
		if a.Secure != want || len(a.IPs) != 1 || a.Name != name {
			t.Errorf("%s: %+v, want one address, Secure %v, Name %s", name, a, want, name)
		}
	}
}

func TestDNSSECNeedsServer(t *testing.T) {
	_, err := resolver.New(resolver.Config{ZoneFile: "/nonexistent", DNSSEC: true})
	if err == nil {
		t.Fatal("DNSSEC with a zone file accepted")
	}
}
