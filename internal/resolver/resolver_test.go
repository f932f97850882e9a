package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// bigKey is the size of the p= value of an RSA-2048 SPKI key, with a DKIM prefix: too long for
// one character-string.
var bigKey = "v=DKIM1; k=rsa; p=" + strings.Repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 9) + "IDAQAB"

// quoteSplit renders s as a zone-file TXT rdata of 255-octet character-strings.
func quoteSplit(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}

var testZone = `$ORIGIN example.com.
$TTL 300
@                  IN MX   20 mx2.example.com.
@                  IN MX   10 mx1.example.com.
@                  IN TXT  "v=spf1 -all"
two                IN TXT  "first" " record"
two                IN TXT  "second record"
esc                IN TXT  "a\"b\\c\059d"
s1._domainkey      IN TXT  ( ` + quoteSplit(bigKey) + ` )
alias              IN CNAME alias2
alias2             IN CNAME s1._domainkey
host               IN A    192.0.2.1
host               IN AAAA 2001:db8::1
v4only             IN A    192.0.2.2
1.2.0.192.in-addr.arpa. IN PTR host.example.com.
`

func netResolver(t *testing.T, addr string) resolver.Resolver {
	t.Helper()
	r, err := resolver.New(resolver.Config{Server: addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// backends runs f against the same zone served over the network and read as a zone file.
func backends(t *testing.T, f func(t *testing.T, r resolver.Resolver)) {
	t.Run("network", func(t *testing.T) { f(t, netResolver(t, resolvertest.Start(t, testZone))) })
	t.Run("zone", func(t *testing.T) { f(t, resolvertest.NewZone(t, testZone)) })
}

func TestLookupTXT(t *testing.T) {
	backends(t, func(t *testing.T, r resolver.Resolver) {
		ctx := context.Background()
		tests := []struct {
			name string
			want []string
		}{
			{"s1._domainkey.example.com", []string{bigKey}},
			{"S1._DomainKey.Example.COM.", []string{bigKey}}, // case-insensitive, FQDN
			{"alias.example.com", []string{bigKey}},          // CNAME chain
			{"two.example.com", []string{"first record", "second record"}},
			{"esc.example.com", []string{`a"b\c;d`}},
		}
		for _, tt := range tests {
			got, err := r.LookupTXT(ctx, tt.name)
			if err != nil {
				t.Errorf("LookupTXT(%s): %v", tt.name, err)
				continue
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("LookupTXT(%s) = %q, want %q", tt.name, got, tt.want)
			}
		}
	})
}

func TestNotFound(t *testing.T) {
	backends(t, func(t *testing.T, r resolver.Resolver) {
		ctx := context.Background()
		tests := []struct {
			name string
			want error
		}{
			{"nosuch.example.com", resolver.ErrNXDOMAIN},
			{"host.example.com", resolver.ErrNODATA},       // exists with A only
			{"_domainkey.example.com", resolver.ErrNODATA}, // empty non-terminal
			{"nosuch._domainkey.example.com", resolver.ErrNXDOMAIN},
		}
		for _, tt := range tests {
			_, err := r.LookupTXT(ctx, tt.name)
			if !errors.Is(err, tt.want) || !resolver.IsNotFound(err) || resolver.IsTemporary(err) {
				t.Errorf("LookupTXT(%s) error = %v, want %v (not found, not temporary)", tt.name, err, tt.want)
			}
			var e *resolver.Error
			if !errors.As(err, &e) || e.Type != "TXT" || e.Name != strings.ToLower(tt.name)+"." {
				t.Errorf("LookupTXT(%s) error = %#v, want *Error naming TXT %s.", tt.name, err, tt.name)
			}
		}
		if _, err := r.LookupMX(ctx, "nosuch.example.com"); !resolver.IsNotFound(err) {
			t.Errorf("LookupMX(nosuch) error = %v, want not found", err)
		}
		if _, err := r.LookupIP(ctx, "nosuch.example.com"); !errors.Is(err, resolver.ErrNXDOMAIN) {
			t.Errorf("LookupIP(nosuch) error = %v, want NXDOMAIN", err)
		}
	})
}

func TestLookupMXIPAddr(t *testing.T) {
	backends(t, func(t *testing.T, r resolver.Resolver) {
		ctx := context.Background()
		mx, err := r.LookupMX(ctx, "example.com")
		if err != nil {
			t.Fatal(err)
		}
		if len(mx) != 2 || mx[0].Host != "mx1.example.com." || mx[0].Pref != 10 || mx[1].Host != "mx2.example.com." {
			t.Errorf("LookupMX = %v %v, want mx1 (10) then mx2 (20)", mx[0], mx[1])
		}
		ips, err := r.LookupIP(ctx, "host.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if len(ips) != 2 || !ips[0].Equal(net.ParseIP("192.0.2.1")) || !ips[1].Equal(net.ParseIP("2001:db8::1")) {
			t.Errorf("LookupIP(host) = %v", ips)
		}
		ips, err = r.LookupIP(ctx, "v4only.example.com")
		if err != nil || len(ips) != 1 {
			t.Errorf("LookupIP(v4only) = %v, %v; want one address", ips, err)
		}
		names, err := r.LookupAddr(ctx, "192.0.2.1")
		if err != nil || !slices.Equal(names, []string{"host.example.com."}) {
			t.Errorf("LookupAddr = %v, %v", names, err)
		}
		if _, err := r.LookupAddr(ctx, "192.0.2.99"); !resolver.IsNotFound(err) {
			t.Errorf("LookupAddr(no PTR) error = %v, want not found", err)
		}
		if _, err := r.LookupAddr(ctx, "not-an-ip"); err == nil || resolver.IsNotFound(err) || resolver.IsTemporary(err) {
			t.Errorf("LookupAddr(not-an-ip) error = %v, want a permanent error", err)
		}
		if _, err := r.LookupTXT(ctx, "bad name..example.com"); err == nil || resolver.IsNotFound(err) || resolver.IsTemporary(err) {
			t.Errorf("LookupTXT(bad name) error = %v, want a permanent error", err)
		}
	})
}

func rcodeHandler(rcode int) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetRcode(req, rcode)
		_ = w.WriteMsg(resp)
	})
}

func TestTemporaryFailures(t *testing.T) {
	ctx := context.Background()
	for _, rcode := range []int{dns.RcodeServerFailure, dns.RcodeRefused} {
		r := netResolver(t, resolvertest.StartHandler(t, rcodeHandler(rcode)))
		_, err := r.LookupTXT(ctx, "example.com")
		if !resolver.IsTemporary(err) || resolver.IsNotFound(err) {
			t.Errorf("%s: error = %v, want temporary", dns.RcodeToString[rcode], err)
		}
		if err == nil || !strings.Contains(err.Error(), dns.RcodeToString[rcode]) {
			t.Errorf("%s: error %q does not name the rcode", dns.RcodeToString[rcode], err)
		}
	}
}

func TestTimeout(t *testing.T) {
	silent := dns.HandlerFunc(func(dns.ResponseWriter, *dns.Msg) {}) // never answers
	addr := resolvertest.StartHandler(t, silent)
	r, err := resolver.New(resolver.Config{Server: addr, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.LookupTXT(context.Background(), "example.com")
	if !resolver.IsTemporary(err) || resolver.IsNotFound(err) {
		t.Fatalf("error = %v, want temporary", err)
	}
	var ne *net.DNSError
	if !errors.As(resolver.AsNetError(err), &ne) || !ne.IsTimeout || !ne.IsTemporary || ne.IsNotFound {
		t.Errorf("AsNetError = %#v, want a temporary timeout", resolver.AsNetError(err))
	}
}

func TestTCPFallback(t *testing.T) {
	var udpQueries, tcpQueries atomic.Int32
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(req)
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			udpQueries.Add(1)
			resp.Truncated = true // as a server with a small buffer would
		} else {
			tcpQueries.Add(1)
			resp.Answer = []dns.RR{&dns.TXT{
				Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
				Txt: []string{"over", "tcp"},
			}}
		}
		_ = w.WriteMsg(resp)
	})
	r := netResolver(t, resolvertest.StartHandler(t, h))
	got, err := r.LookupTXT(context.Background(), "example.com")
	if err != nil || !slices.Equal(got, []string{"overtcp"}) {
		t.Fatalf("LookupTXT = %q, %v; want [overtcp]", got, err)
	}
	if udpQueries.Load() != 1 || tcpQueries.Load() != 1 {
		t.Errorf("queries: %d UDP, %d TCP; want 1 and 1", udpQueries.Load(), tcpQueries.Load())
	}
}

// TestLargeAnswerOverTCP checks that an answer larger than the EDNS0 buffer, truncated by the
// server, still arrives whole.
func TestLargeAnswerOverTCP(t *testing.T) {
	var zone strings.Builder
	var want []string
	for i := range 6 {
		s := fmt.Sprintf("%d%s", i, strings.Repeat("x", 400))
		want = append(want, s)
		fmt.Fprintf(&zone, "big.example. 60 IN TXT %s\n", quoteSplit(s))
	}
	r := netResolver(t, resolvertest.Start(t, zone.String()))
	got, err := r.LookupTXT(context.Background(), "big.example")
	slices.Sort(got)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("LookupTXT = %d records, %v; want %d", len(got), err, len(want))
	}
}

func TestNextServer(t *testing.T) {
	failing := resolvertest.StartHandler(t, rcodeHandler(dns.RcodeServerFailure))
	good := resolvertest.Start(t, testZone)
	r := resolver.NewWithServers([]string{failing, good}, 2*time.Second)
	got, err := r.LookupTXT(context.Background(), "example.com")
	if err != nil || !slices.Equal(got, []string{"v=spf1 -all"}) {
		t.Errorf("LookupTXT = %q, %v; want the second server's answer", got, err)
	}
}

func TestMalformedAnswers(t *testing.T) {
	tests := []struct {
		name string
		h    dns.HandlerFunc
	}{
		{"garbage", func(w dns.ResponseWriter, req *dns.Msg) {
			resp := new(dns.Msg).SetReply(req)
			resp.Answer = []dns.RR{&dns.TXT{
				Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET},
				Txt: []string{"a character-string cut short"},
			}}
			b, _ := resp.Pack()
			_, _ = w.Write(b[:len(b)-5]) // the RR's length now points past the end
		}},
		{"other question", func(w dns.ResponseWriter, req *dns.Msg) {
			resp := new(dns.Msg).SetReply(req)
			resp.Question[0].Name = "other.example."
			_ = w.WriteMsg(resp)
		}},
	}
	for _, tt := range tests {
		r := netResolver(t, resolvertest.StartHandler(t, tt.h))
		_, err := r.LookupTXT(context.Background(), "example.com")
		t.Logf("%s: %v", tt.name, err)
		if err == nil || !strings.Contains(err.Error(), "malformed answer") {
			t.Errorf("%s: error = %v, want a malformed answer error", tt.name, err)
		}
	}
}

func TestZoneSyntaxError(t *testing.T) {
	zone := "$ORIGIN example.com.\n@ IN TXT \"ok\"\nbad IN MX notanumber host.\n"
	_, err := resolver.NewZoneResolver(strings.NewReader(zone), "", "test.zone")
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "test.zone:3:") {
		t.Fatalf("error = %v, want one naming test.zone:3", err)
	}
}

func TestZoneIncludeRefused(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other.zone")
	if err := os.WriteFile(other, []byte("secret.example. IN TXT \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := resolver.NewZoneResolver(strings.NewReader("$INCLUDE "+other+"\n"), "", "main.zone")
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "main.zone:1:") {
		t.Fatalf("error = %v, want $INCLUDE refused at main.zone:1", err)
	}
}

func TestNewZoneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "records.zone")
	if err := os.WriteFile(path, []byte(testZone), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := resolver.New(resolver.Config{ZoneFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.LookupTXT(context.Background(), "example.com"); err != nil || len(got) != 1 {
		t.Errorf("LookupTXT = %q, %v", got, err)
	}
	if _, err := resolver.New(resolver.Config{ZoneFile: path, Server: "127.0.0.1:53"}); err == nil {
		t.Error("New with both a zone and a server: no error")
	}
	if _, err := resolver.New(resolver.Config{ZoneFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("New with a missing zone file: no error")
	}
}

func TestAsNetError(t *testing.T) {
	r := resolvertest.NewZone(t, testZone)
	_, err := r.LookupTXT(context.Background(), "nosuch.example.com")
	var ne *net.DNSError
	if !errors.As(resolver.AsNetError(err), &ne) || !ne.IsNotFound || ne.IsTemporary || ne.Name != "nosuch.example.com." {
		t.Errorf("AsNetError(NXDOMAIN) = %#v", resolver.AsNetError(err))
	}
	if !resolver.IsNotFound(resolver.AsNetError(err)) {
		t.Error("IsNotFound(AsNetError(NXDOMAIN)) = false")
	}
	if resolver.AsNetError(nil) != nil {
		t.Error("AsNetError(nil) != nil")
	}
	other := errors.New("x")
	if resolver.AsNetError(other) != other {
		t.Error("AsNetError changed a foreign error")
	}
}

func TestUnescapeTXT(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:     "plain",
		`a\"b`:      `a"b`,
		`a\\b`:      `a\b`,
		`\059\255x`: ";\xffx",
		`trailing\`: `trailing\`,
		`\25`:       "25",
	} {
		if got := resolver.UnescapeTXT(in); got != want {
			t.Errorf("unescapeTXT(%q) = %q, want %q", in, got, want)
		}
	}
}
