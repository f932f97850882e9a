package keys

import (
	"context"
	"crypto"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// liveZone is an in-process DNS server whose records a test changes while it runs.
type liveZone struct {
	Addr string

	mu       sync.Mutex
	rrs      map[string][]dns.RR // by lower-case FQDN and type: "name/TXT"
	servfail bool
}

func startLiveZone(t *testing.T, lines ...string) *liveZone {
	t.Helper()
	z := &liveZone{rrs: map[string][]dns.RR{}}
	z.Set(t, lines...)
	z.Addr = resolvertest.StartHandler(t, dns.HandlerFunc(z.serve))
	return z
}

// Set replaces the records of each name and type the zone-file lines have.
func (z *liveZone) Set(t *testing.T, lines ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	replaced := map[string]bool{}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		k := strings.ToLower(rr.Header().Name) + "/" + dns.TypeToString[rr.Header().Rrtype]
		if !replaced[k] {
			z.rrs[k], replaced[k] = nil, true
		}
		z.rrs[k] = append(z.rrs[k], rr)
	}
}

// Delete removes the records of name and type ("TXT").
func (z *liveZone) Delete(name, typ string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.rrs, strings.ToLower(dns.Fqdn(name))+"/"+typ)
}

func (z *liveZone) serve(w dns.ResponseWriter, req *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	resp.Answer = z.rrs[name+"/"+dns.TypeToString[q.Qtype]]
	if len(resp.Answer) == 0 {
		resp.Rcode = dns.RcodeNameError
		for k := range z.rrs {
			if strings.HasPrefix(k, name+"/") {
				resp.Rcode = dns.RcodeSuccess // NODATA
			}
		}
	}
	if z.servfail {
		resp.Answer, resp.Rcode = nil, dns.RcodeServerFailure
	}
	resolvertest.Reply(w, req, resp)
}

// keyTXT returns a zone-file line publishing key at selector.example.com, with extra tags.
func keyTXT(t *testing.T, key crypto.Signer, selector, extra string) string {
	t.Helper()
	text, err := dkimcore.KeyRecordText(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	text = strings.Replace(text, "v=DKIM1; ", "v=DKIM1; "+extra, 1)
	for len(text) > 255 {
		parts, text = append(parts, `"`+text[:255]+`"`), text[255:]
	}
	parts = append(parts, `"`+text+`"`)
	return selector + "._domainkey.example.com. 60 IN TXT " + strings.Join(parts, " ")
}

func TestCheckPublished(t *testing.T) {
	key, other := testKey(t, Ed25519), testKey(t, RSA2048)
	good, wrong := keyTXT(t, key, "new", ""), keyTXT(t, other, "new", "")
	testMode := keyTXT(t, key, "new", "t=y; ")
	ns := []string{"example.com. 60 IN NS ns1.example.com.", "ns1.example.com. 60 IN A 127.0.0.1"}
	tests := []struct {
		name              string
		resolver, auth    []string // records beyond ns
		authDown          bool     // the authoritative server answers SERVFAIL
		noNSAddress       bool     // ns1 has no address
		want              bool
		wantUnreachable   int
		wantDetailContain string
	}{
		{name: "missing everywhere", want: false, wantDetailContain: "no TXT record"},
		{name: "published everywhere", resolver: []string{good}, auth: []string{good}, want: true, wantDetailContain: "1 authoritative"},
		{name: "wrong key at the resolver", resolver: []string{wrong}, auth: []string{good}, want: false, wantDetailContain: "different"},
		{name: "wrong key at an authoritative server", resolver: []string{good}, auth: []string{wrong}, want: false, wantDetailContain: "not published at every authoritative"},
		{name: "not yet at an authoritative server", resolver: []string{good}, want: false, wantDetailContain: "not published at every authoritative"},
		{name: "testing mode", resolver: []string{testMode}, auth: []string{testMode}, want: false, wantDetailContain: "t=y"},
		{name: "authoritative server failing", resolver: []string{good}, authDown: true, want: true, wantUnreachable: 1, wantDetailContain: "no authoritative server"},
		{name: "name server without address", resolver: []string{good}, auth: []string{good}, noNSAddress: true, want: true, wantUnreachable: 1, wantDetailContain: "no authoritative server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rzone := ns
			if tt.noNSAddress {
				rzone = ns[:1]
			}
			rs := startLiveZone(t, slices.Concat(rzone, tt.resolver)...)
			as := startLiveZone(t, slices.Concat(ns, tt.auth)...)
			as.mu.Lock() // the server already answers
			as.servfail = tt.authDown
			as.mu.Unlock()
			r, err := resolver.New(resolver.Config{Server: rs.Addr})
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(as.Addr)
			p, _ := strconv.Atoi(port)
			res, err := CheckPublished(context.Background(), PublishOptions{Resolver: r, NSPort: p}, key, "new", "example.com")
			if err != nil {
				t.Fatal(err)
			}
			if res.Published != tt.want || !strings.Contains(res.Detail, tt.wantDetailContain) {
				t.Errorf("Published = %v, Detail %q; want %v and a detail containing %q", res.Published, res.Detail, tt.want, tt.wantDetailContain)
			}
			unreachable := 0
			for _, s := range res.Servers {
				if s.Unreachable {
					unreachable++
				}
			}
			if unreachable != tt.wantUnreachable {
				t.Errorf("%d unreachable servers, want %d: %+v", unreachable, tt.wantUnreachable, res.Servers)
			}
		})
	}
}

func TestCheckPublishedZoneFile(t *testing.T) {
	key := testKey(t, Ed25519)
	r := resolvertest.NewZone(t, keyTXT(t, key, "new", "")+"\nexample.com. 60 IN NS ns1.example.net.\n")
	res, err := CheckPublished(context.Background(), PublishOptions{Resolver: r, SkipAuthoritative: true}, key, "new", "example.com")
	if err != nil || !res.Published || len(res.Servers) != 1 {
		t.Fatalf("CheckPublished = %+v, %v; want published by the zone file alone", res, err)
	}
}
