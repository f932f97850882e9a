package verify

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver/resolvertest"
)

// spfZone publishes the SPF cases of TestSPF.
const spfZone = `
pass.example.        TXT "v=spf1 ip4:192.0.2.0/24 -all"
fail.example.        TXT "v=spf1 ip4:198.51.100.7 -all"
soft.example.        TXT "v=spf1 ~all"
neutral.example.     TXT "v=spf1 ip4:198.51.100.7"
nospf.example.       TXT "google-site-verification=abc"
malformed.example.   TXT "v=spf1 ip4:192.0.2.0/24 bogus:x -all"
badmask.example.     TXT "v=spf1 ip4:192.0.2.0/99 -all"
two.example.         TXT "v=spf1 -all"
two.example.         TXT "v=spf1 +all"
a.example.           TXT "v=spf1 a -all"
a.example.           A   192.0.2.25
a.example.           AAAA 2001:db8::99
mx.example.          TXT "v=spf1 mx -all"
mx.example.          MX  10 mail.mx.example.
mail.mx.example.     A   192.0.2.25
inc.example.         TXT "v=spf1 include:_spf.inc.example -all"
_spf.inc.example.    TXT "v=spf1 include:_spf2.inc.example -all"
_spf2.inc.example.   TXT "v=spf1 ip4:192.0.2.25 -all"
incnone.example.     TXT "v=spf1 include:nothing.example -all"
redir.example.       TXT "v=spf1 redirect=pass.example"
void.example.        TXT "v=spf1 a:n1.void.example a:n2.void.example a:n3.void.example -all"
nodata.example.      A   192.0.2.1
macro.example.       TXT "v=spf1 exists:%{ir}.%{l}._spf.%{d} -all"
25.2.0.192.b._spf.macro.example. A 127.0.0.2
hang.example.        TXT "v=spf1 include:slow.example -all"
nullmx.example.      TXT "v=spf1 mx -all"
nullmx.example.      MX  0 .
`

// overLimitZone is an include chain of 11 DNS-querying terms, one over the limit of 10
// (RFC 7208 §4.6.4), and one of exactly 10.
func overLimitZone() string {
	var b strings.Builder
	for i := 0; i < 11; i++ {
		fmt.Fprintf(&b, "l%d.chain.example. TXT \"v=spf1 include:l%d.chain.example -all\"\n", i, i+1)
	}
	b.WriteString("l11.chain.example. TXT \"v=spf1 ip4:192.0.2.25 -all\"\n")
	return b.String()
}

func TestSPF(t *testing.T) {
	addr := startDNS(t, spfZone+overLimitZone(), "slow.example")
	r := testResolver(t, addr)
	ip := net.ParseIP("192.0.2.25")
	for _, tc := range []struct {
		name, domain, sender string
		result, reason       string
		lookups, voids       int
	}{
		{"pass", "pass.example", "", "pass", "matched ip", 0, 0},
		{"fail", "fail.example", "", "fail", "matched all", 0, 0},
		{"softfail", "soft.example", "", "softfail", "", 0, 0},
		{"neutral", "neutral.example", "", "neutral", "no mechanism matched", 0, 0},
		{"no record", "nospf.example", "", "none", "no SPF record", 0, 0},
		{"no such domain", "nx.example", "", "none", "no SPF record", 0, 0},
		{"unknown mechanism", "malformed.example", "", "permerror", "unknown mechanism", 0, 0},
		{"bad mask", "badmask.example", "", "permerror", "not a prefix length", 0, 0},
		{"two records", "two.example", "", "permerror", "more than one v=spf1 record", 0, 0},
		{"a", "a.example", "", "pass", "matched a", 1, 0},
		{"mx", "mx.example", "", "pass", "matched mx", 1, 0},
		{"include chain", "inc.example", "", "pass", "", 2, 0},
		{"include of a domain without SPF", "incnone.example", "", "permerror", "has no SPF record", 1, 0},
		{"redirect", "redir.example", "", "pass", "matched ip", 1, 0},
		{"include chain over the limit", "l0.chain.example", "", "permerror", "more than 10 DNS-querying terms", 10, 0},
		{"include chain at the limit", "l1.chain.example", "", "pass", "", 10, 0},
		{"void lookups over the limit", "void.example", "", "permerror", "more than 2 void lookups", 3, 3},
		{"macro", "macro.example", "b@macro.example", "pass", "matched exists", 1, 0},
		{"temperror", "hang.example", "", "temperror", "", 1, 0},
		{"null MX", "nullmx.example", "", "fail", "matched all", 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sender := tc.sender
			if sender == "" {
				sender = "bounce@" + tc.domain
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			res := checkSPF(ctx, r, ip, "mailfrom", "relay.example", sender, tc.domain)
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			if res.Result != tc.result || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("got %s (%s), want %s (%s)", res.Result, res.Reason, tc.result, tc.reason)
			}
			if res.Lookups != tc.lookups || res.VoidLookups != tc.voids {
				t.Errorf("lookups %d void %d, want %d and %d", res.Lookups, res.VoidLookups, tc.lookups, tc.voids)
			}
		})
	}
}

// TestSPFAddressType: an a term asks the client's address type only (RFC 7208 §5.3), so a
// query of the other type that never gets an answer does not make it temperror.
func TestSPFAddressType(t *testing.T) {
	zone := `dual.example. TXT "v=spf1 a -all"
dual.example. A 192.0.2.25
dual.example. AAAA 2001:db8::25
`
	for _, tc := range []struct {
		client string
		hang   uint16
	}{{"192.0.2.25", dns.TypeAAAA}, {"2001:db8::25", dns.TypeA}} {
		r := testResolver(t, startTypeHang(t, startDNS(t, zone), tc.hang))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		res := checkSPF(ctx, r, net.ParseIP(tc.client), "mailfrom", "h.example", "b@dual.example", "dual.example")
		cancel()
		if res.Result != "pass" {
			t.Errorf("client %s, %s never answered: %s (%s), want pass", tc.client, dns.TypeToString[tc.hang], res.Result, res.Reason)
		}
	}
	// The type that matters never answering is temperror.
	r := testResolver(t, startTypeHang(t, startDNS(t, zone), dns.TypeA))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if res := checkSPF(ctx, r, net.ParseIP("192.0.2.25"), "mailfrom", "h.example", "b@dual.example", "dual.example"); res.Result != "temperror" {
		t.Errorf("IPv4 client, A never answered: %s (%s), want temperror", res.Result, res.Reason)
	}
}

// TestCheckSPF: the exported form picks the identity: MAIL FROM, or HELO for the null
// reverse-path.
func TestCheckSPF(t *testing.T) {
	r := testResolver(t, startDNS(t, spfZone))
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.25")
	if res := CheckSPF(ctx, r, ip, "h.example", "b@pass.example"); res.Identity != "mailfrom" || res.Domain != "pass.example" || res.Result != "pass" {
		t.Errorf("MAIL FROM: %+v", res)
	}
	if res := CheckSPF(ctx, r, ip, "a.example", ""); res.Identity != "helo" || res.Sender != "postmaster@a.example" || res.Result != "pass" {
		t.Errorf("HELO: %+v", res)
	}
	// go-smtp hands over "ops@partner.example"@pass.example unquoted: the domain is the one
	// after the last '@', although the library would take the first.
	if res := CheckSPF(ctx, r, ip, "h.example", "ops@partner.example@pass.example"); res.Domain != "pass.example" || res.Result != "pass" {
		t.Errorf("local part with '@': %+v", res)
	}
	if res := CheckSPF(ctx, r, netip.MustParseAddr("::ffff:192.0.2.26"), "a.example", ""); res.Result != "fail" {
		t.Errorf("IPv4-mapped client: %+v", res)
	}
}

// TestSPFTimedOut: a query that never gets an answer, at the top or inside an include, is
// temperror with TimedOut; a SERVFAIL is temperror without it.
func TestSPFTimedOut(t *testing.T) {
	zone := `hang.example. TXT "v=spf1 include:slow.example -all"
servfail.example. TXT "v=spf1 include:broken.example -all"
`
	upstream := startDNS(t, zone, "slow.example", "top.example")
	addr := resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		if len(req.Question) == 1 && strings.EqualFold(req.Question[0].Name, "broken.example.") {
			resp := new(dns.Msg)
			resp.SetRcode(req, dns.RcodeServerFailure)
			w.WriteMsg(resp)
			return
		}
		resp, err := dns.Exchange(req, upstream)
		if err == nil {
			resolvertest.Reply(w, req, resp)
		}
	}))
	r := testResolver(t, addr)
	for _, tc := range []struct {
		domain   string
		timedOut bool
	}{{"top.example", true}, {"hang.example", true}, {"servfail.example", false}} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		res := CheckSPF(ctx, r, clientIP, "h.example", "b@"+tc.domain)
		cancel()
		if res.Result != "temperror" || res.TimedOut != tc.timedOut {
			t.Errorf("%s: %s timed out %v (%s), want temperror timed out %v", tc.domain, res.Result, res.TimedOut, res.Reason, tc.timedOut)
		}
		if tc.timedOut && !strings.Contains(res.Reason, "DNS timed out") {
			t.Errorf("%s: reason %q does not say the DNS timed out", tc.domain, res.Reason)
		}
	}
}

// TestVerifySPFInitialProcessing: Verify does not refuse a reverse-path SPF can evaluate
// (RFC 7208 §4.3): a malformed domain gives none, no local part is postmaster, a HELO
// address literal gives none; a receiver still refuses the path at MAIL.
func TestVerifySPFInitialProcessing(t *testing.T) {
	o := testOptions(t, `example.net. TXT "v=spf1 -all"
`)
	for _, tc := range []struct {
		mailFrom, helo        string
		result, sender, stage string
	}{
		{"@example.net", "h.example", "fail", "postmaster@example.net", "mail"},
		{"b@a" + strings.Repeat("1", 63) + ".example.net", "h.example", "none", "", "mail"},
		{"b@a...example.net", "h.example", "none", "", "mail"},
		{"<>", "[192.0.2.25]", "none", "postmaster@[192.0.2.25]", "data"},
	} {
		rep := run(t, Envelope{IP: clientIP, HELO: tc.helo, MailFrom: tc.mailFrom}, message("a@example.net"), o)
		s := rep.SPF
		if tc.mailFrom == "<>" {
			s = rep.SPFHELO
		}
		if s == nil || s.Result != tc.result || tc.sender != "" && s.Sender != tc.sender {
			t.Errorf("MAIL FROM %s HELO %s: SPF %+v, want %s", tc.mailFrom, tc.helo, s, tc.result)
			continue
		}
		if rep.Verdict.Stage != Stage(tc.stage) || tc.stage == "mail" && !strings.HasPrefix(rep.Verdict.Reply, "501 5.1.7") {
			t.Errorf("MAIL FROM %s: verdict %+v, want a refusal at %s", tc.mailFrom, rep.Verdict, tc.stage)
		}
	}
}

// TestSPFPMacro: the adapter's p macro keeps the other macros and escapes for the library
// and applies the transformers of RFC 7208 §7.3.
func TestSPFPMacro(t *testing.T) {
	s := &spfResolver{pNames: []string{"mx.example.com", "mail.a.example.org"}}
	for _, tc := range []struct{ term, domain, want string }{
		{"exists:%{p}.ok.%{d}", "example.net", "exists:mx.example.com.ok.%{d}"},
		{"exists:%{p}.ok", "a.example.org", "exists:mail.a.example.org.ok"},
		{"exists:%{p2}.%{pr}.x", "example.net", "exists:example.com.com.example.mx.x"},
		{"a:%%{p}.%{P1}.x", "example.net", "a:%%{p}.com.x"},
		{"exists:%{ir}.%_.%-.x", "example.net", "exists:%{ir}.%_.%-.x"},
	} {
		if got := s.expandPTerm(context.Background(), tc.term, tc.domain); got != tc.want {
			t.Errorf("%s for %s: %s, want %s", tc.term, tc.domain, got, tc.want)
		}
	}
	if got := (&spfResolver{pNames: []string{}}).validatedName(context.Background(), "example.net"); got != "unknown" {
		t.Errorf("no validated name: %s, want unknown", got)
	}
}
