package selftest

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/keys"
)

const domainZone = `client.example. IN TXT "v=spf1 ip4:192.0.2.25 -all"
client.example. IN MX 10 mx.client.example.
mx.client.example. IN A 192.0.2.80
_dmarc.client.example. IN TXT "v=DMARC1; p=reject; rua=mailto:d@reports.example"
client.example._report._dmarc.reports.example. IN TXT "v=DMARC1"
out.relay.example. IN A 192.0.2.25
25.2.0.192.in-addr.arpa. IN PTR out.relay.example.
`

func domainOptions(t *testing.T, zone string) *DomainOptions {
	o := testOptions(t, zone)
	return &DomainOptions{Resolver: o.Resolver, Timeout: o.Timeout,
		Keys:   []LocalKey{{Domain: "client.example", Selector: "s1", Signer: testKey()}},
		Egress: []Egress{{IP: clientIP, HELO: "out.relay.example"}}}
}

func TestDomainReady(t *testing.T) {
	rep, err := Domain(context.Background(), "client.example", domainOptions(t, domainZone+dkimRecord("client.example")))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Ready || len(rep.Records) != 0 {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("not ready:\n%s", b.String())
	}
	findingOf(t, rep.Findings, "dmarc-rua", StatusPass)
}

// A configured selector without its record: the fix is the record of the local key.
func TestDomainMissingDKIM(t *testing.T) {
	rep, err := Domain(context.Background(), "client.example", domainOptions(t, domainZone))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ready {
		t.Fatal("ready without the DKIM record")
	}
	f := findingOf(t, rep.Findings, "dkim", StatusFail)
	want := keys.DNSRecord(testKey().Public(), "s1", "client.example")
	if f.Result != "missing" || f.Fix != "publish this record" || f.Record != want || !strings.Contains(f.Reason, "s1._domainkey.client.example") {
		t.Errorf("dkim finding %+v", f)
	}
	var b strings.Builder
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "; publish (zone-file lines):\n"+want+"\n") {
		t.Errorf("text:\n%s", b.String())
	}
}

// An egress the SPF record does not name, a report address in a domain that did not opt in,
// p=none, a missing MX: each fails or warns with its fix.
func TestDomainProblems(t *testing.T) {
	zone := dkimRecord("client.example") + `client.example. IN TXT "v=spf1 ip4:192.0.2.25 -all"
_dmarc.client.example. IN TXT "v=DMARC1; p=none; adkim=s; rua=mailto:d@reports.example"
out.relay.example. IN A 198.51.100.7
7.100.51.198.in-addr.arpa. IN PTR out.relay.example.
`
	o := domainOptions(t, zone)
	o.Egress = []Egress{{IP: netip.MustParseAddr("198.51.100.7"), HELO: "out.relay.example"}}
	o.SigningDomain = "relay.example"
	rep, err := Domain(context.Background(), "client.example", o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ready {
		t.Fatal("ready")
	}
	f := findingOf(t, rep.Findings, "spf", StatusFail)
	if f.Fix != "add ip4:198.51.100.7 to the SPF record of client.example" ||
		f.Record != `client.example. IN TXT "v=spf1 ip4:192.0.2.25 ip4:198.51.100.7 -all"` {
		t.Errorf("spf %+v", f)
	}
	if f := findingOf(t, rep.Findings, "dmarc-rua", StatusFail); f.Record != `client.example._report._dmarc.reports.example. IN TXT "v=DMARC1"` {
		t.Errorf("rua %+v", f)
	}
	findingOf(t, rep.Findings, "dmarc-policy", StatusWarn)
	if f := findingOf(t, rep.Findings, "dmarc-alignment", StatusFail); !strings.Contains(f.Reason, "d=relay.example") {
		t.Errorf("alignment %+v", f)
	}
	findingOf(t, rep.Findings, "mx", StatusFail)
	findingOf(t, rep.Findings, "helo", StatusPass)
	findingOf(t, rep.Findings, "iprev", StatusPass)
}

// A subdomain without its own record inherits the organisational domain's, whose sp=
// applies; signing with the parent's d= under adkim=s fails.
func TestDomainInheritedDMARC(t *testing.T) {
	zone := dkimRecord("client.example") + `news.client.example. IN TXT "v=spf1 ip4:192.0.2.25 -all"
news.client.example. IN MX 10 mx.client.example.
_dmarc.client.example. IN TXT "v=DMARC1; p=reject; sp=none; adkim=s; rua=mailto:d@client.example"
out.relay.example. IN A 192.0.2.25
25.2.0.192.in-addr.arpa. IN PTR out.relay.example.
`
	o := domainOptions(t, zone)
	o.SigningDomain = "client.example"
	rep, err := Domain(context.Background(), "news.client.example", o)
	if err != nil {
		t.Fatal(err)
	}
	if f := findingOf(t, rep.Findings, "dmarc", StatusPass); f.Result != "inherited" || !strings.Contains(f.Reason, "_dmarc.client.example") {
		t.Errorf("inherited %+v", f)
	}
	if f := findingOf(t, rep.Findings, "dmarc-policy", StatusWarn); f.Result != "sp=none" {
		t.Errorf("policy %+v", f)
	}
	if f := findingOf(t, rep.Findings, "dmarc-alignment", StatusFail); !strings.Contains(f.Reason, "adkim=s needs d=news.client.example, but the relay signs with d=client.example") {
		t.Errorf("alignment %+v", f)
	}
	if rep.Ready {
		t.Error("ready under adkim=s with the parent's d=")
	}
}

// The domain's SPF record never answers: the spf finding is unknown, and the report says
// "could not check SPF (DNS timed out)" instead of READY or NOT READY.
func TestDomainSPFTimedOut(t *testing.T) {
	o := domainOptions(t, domainZone+dkimRecord("client.example"))
	o.Resolver = hangingResolver(t, domainZone+dkimRecord("client.example"), "client.example.", dns.TypeTXT)
	rep, err := Domain(context.Background(), "client.example", o)
	if err != nil {
		t.Fatal(err)
	}
	f := findingOf(t, rep.Findings, "spf", StatusUnknown)
	if f.Result != "temperror" || !strings.Contains(f.Reason, "DNS timed out") {
		t.Errorf("spf finding %+v", f)
	}
	var b strings.Builder
	rep.WriteText(&b)
	if rep.Ready || !rep.SPFTimedOut || !strings.HasSuffix(b.String(), "\nNOT CHECKED: could not check SPF (DNS timed out)\n") {
		t.Errorf("ready %v, timed out %v:\n%s", rep.Ready, rep.SPFTimedOut, b.String())
	}
}
