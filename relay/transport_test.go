package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/internal/smtptest"
)

// testResolver serves zone from an in-process DNS server and returns a
// resolver asking it.
func testResolver(t *testing.T, zone string) resolver.Resolver {
	t.Helper()
	r, err := resolver.New(resolver.Config{Server: resolvertest.Start(t, zone), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testTransport is a Transport for MX delivery on port, trusting pki's CA.
func testTransport(t *testing.T, zone string, port int, pki *smtptest.PKI) *Transport {
	tr := &Transport{Resolver: testResolver(t, zone), HeloName: "relay.sealgate.test", MXPort: port,
		Timeout: 10 * time.Second, Logger: quietLogger()}
	if pki != nil {
		tr.RootCAs = pki.Pool
	}
	t.Cleanup(tr.Close)
	return tr
}

// deliverWithHops runs one Deliver as the Runner would and returns its error
// and the hops reported.
func deliverWithHops(tr Deliverer, env *Envelope) (error, []Hop) {
	ctx, rec := withHopRecorder(context.Background())
	err := tr.Deliver(ctx, env, strings.NewReader(testMessage))
	return err, rec.list()
}

var testBody = strings.ReplaceAll(testMessage, "\r\n", "\n")

// Recipients of one domain go in one transaction to that domain's MX; each
// domain gets its own; the server's certificate is verified for the MX name.
func TestTransportMXOneTransactionPerDomain(t *testing.T) {
	pki := smtptest.NewPKI(t, "mx.dest.test", "mx.other.test")
	dest := &smtpSink{Name: "mx.dest.test", TLS: pki.ServerConfig()}
	other := &smtpSink{Name: "mx.other.test"}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": dest, "127.0.0.3": other})
	tr := testTransport(t, `
dest.test. 300 IN MX 10 mx.dest.test.
mx.dest.test. 300 IN A 127.0.0.2
other.test. 300 IN MX 10 mx.other.test.
mx.other.test. 300 IN A 127.0.0.3
`, port, pki)
	env := &Envelope{ID: "m1", From: "s@sender.test", To: []string{"a@dest.test", "c@other.test", "b@DEST.test"}}
	err, hops := deliverWithHops(tr, env)
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	dtx, otx := dest.transactions(), other.transactions()
	if len(dtx) != 1 || !slices.Equal(dtx[0].Rcpts, []string{"a@dest.test", "b@dest.test"}) || dtx[0].Data != testBody {
		t.Errorf("dest.test got %+v; want one transaction for a@ and b@ with the message", dtx)
	}
	if len(otx) != 1 || !slices.Equal(otx[0].Rcpts, []string{"c@other.test"}) {
		t.Errorf("other.test got %+v; want one transaction for c@", otx)
	}
	if !dtx[0].TLS || otx[0].TLS {
		t.Errorf("TLS: dest %v (offered STARTTLS), other %v (did not); want true, false", dtx[0].TLS, otx[0].TLS)
	}
	if dtx[0].Helo != "relay.sealgate.test" {
		t.Errorf("HELO %q", dtx[0].Helo)
	}
	byDomain := map[string]Hop{}
	for _, h := range hops {
		byDomain[h.Domain] = h
	}
	h := byDomain["dest.test"]
	if h.Host != "mx.dest.test" || h.IP != "127.0.0.2" || h.TLS == nil || !h.TLS.Verified || h.Reply == nil || h.Reply.Code != 250 {
		t.Errorf("dest.test hop %+v; want mx.dest.test 127.0.0.2, verified TLS, 250", h)
	}
	if h := byDomain["other.test"]; h.Host != "mx.other.test" || h.TLS != nil {
		t.Errorf("other.test hop %+v; want mx.other.test without TLS", h)
	}
}

// MX hosts are tried by preference; every address of a host comes before the
// next host; a host that refuses connections is passed over.
func TestTransportMXPreferenceAndFallback(t *testing.T) {
	second := &smtpSink{Name: "mx1.dest.test"}
	backup := &smtpSink{Name: "mx2.dest.test"}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.5": second, "127.0.0.6": backup})
	// mx1 has two addresses: nothing listens on 127.0.0.4.
	tr := testTransport(t, `
dest.test. 300 IN MX 20 mx2.dest.test.
dest.test. 300 IN MX 10 mx1.dest.test.
mx1.dest.test. 300 IN A 127.0.0.4
mx1.dest.test. 300 IN A 127.0.0.5
mx2.dest.test. 300 IN A 127.0.0.6
`, port, nil)
	for i := range 3 { // the addresses of a host come in any order
		err, hops := deliverWithHops(tr, &Envelope{ID: fmt.Sprint("p", i), From: "s@sender.test", To: []string{"a@dest.test"}})
		if err != nil {
			t.Fatalf("Deliver: %v", err)
		}
		if len(hops) != 1 || hops[0].IP != "127.0.0.5" || hops[0].Host != "mx1.dest.test" {
			t.Errorf("hops %+v; want mx1.dest.test at 127.0.0.5", hops)
		}
	}
	if n := len(second.transactions()); n != 3 {
		t.Errorf("mx1 took %d messages, want 3", n)
	}
	if n := len(backup.transactions()); n != 0 {
		t.Errorf("mx2 (preference 20) took %d messages while mx1 worked", n)
	}

	// With mx1 down, mx2 takes the mail.
	second.ln.Close()
	tr.Close() // kept sessions to mx1 would still work
	if err, _ := deliverWithHops(tr, &Envelope{ID: "p9", From: "s@sender.test", To: []string{"a@dest.test"}}); err != nil {
		t.Fatalf("Deliver with mx1 down: %v", err)
	}
	if n := len(backup.transactions()); n != 1 {
		t.Errorf("mx2 took %d messages with mx1 down, want 1", n)
	}
}

// Equal preferences are tried in random order; lower preferences always first.
func TestOrderMX(t *testing.T) {
	mxs := []*net.MX{{Host: "c.test.", Pref: 20}, {Host: "a.test.", Pref: 10}, {Host: "b.test.", Pref: 10}}
	seen := map[string]bool{}
	for range 200 {
		got := orderMX(mxs)
		if len(got) != 3 || got[2] != "c.test" {
			t.Fatalf("orderMX = %q; want c.test last", got)
		}
		seen[got[0]] = true
	}
	if !seen["a.test"] || !seen["b.test"] {
		t.Errorf("first hosts seen in 200 orderings: %v; want both a.test and b.test", seen)
	}
}

// A null MX fails its recipients at once with 556 5.1.10; no MX means the
// domain's own address; a domain that does not exist fails permanently.
func TestTransportNullMXImplicitMXAndNXDOMAIN(t *testing.T) {
	implicit := &smtpSink{Name: "plain.test"}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.7": implicit})
	tr := testTransport(t, `
nullmx.test. 300 IN MX 0 .
nullmx.test. 300 IN A 127.0.0.7
plain.test. 300 IN A 127.0.0.7
exists.test. 300 IN TXT "no mail here"
`, port, nil)

	err, hops := deliverWithHops(tr, &Envelope{ID: "n1", From: "s@sender.test", To: []string{"a@nullmx.test", "b@nullmx.test"}})
	var re *RecipientsError
	if !IsPermanent(err) || !errors.As(err, &re) || len(re.Failed) != 2 || !strings.Contains(err.Error(), "556 5.1.10") {
		t.Errorf("null MX: %v; want both recipients failed permanently with 556 5.1.10", err)
	}
	if len(hops) != 1 || hops[0].Host != "" {
		t.Errorf("null MX hops %+v; want one without a host", hops)
	}
	if len(implicit.transactions()) != 0 {
		t.Errorf("a server was contacted for a null MX domain")
	}

	if err, _ := deliverWithHops(tr, &Envelope{ID: "n2", From: "s@sender.test", To: []string{"a@plain.test"}}); err != nil {
		t.Errorf("implicit MX: %v", err)
	}
	if n := len(implicit.transactions()); n != 1 {
		t.Errorf("implicit MX: the domain's address took %d messages, want 1", n)
	}

	err, _ = deliverWithHops(tr, &Envelope{ID: "n3", From: "s@sender.test", To: []string{"a@nosuch.test"}})
	if !IsPermanent(err) || !strings.Contains(err.Error(), "5.1.2") {
		t.Errorf("NXDOMAIN: %v; want a permanent 5.1.2 failure", err)
	}
	err, _ = deliverWithHops(tr, &Envelope{ID: "n4", From: "s@sender.test", To: []string{"a@exists.test"}})
	if !IsPermanent(err) || !strings.Contains(err.Error(), "no MX and no address") {
		t.Errorf("no MX and no address: %v; want a permanent failure", err)
	}
}

// Each recipient gets its own result: accepted, refused for now, refused for good.
func TestTransportPerRecipientResults(t *testing.T) {
	sink := &smtpSink{Name: "mx.dest.test", RcptReply: func(rcpt string) string {
		switch {
		case strings.HasPrefix(rcpt, "busy@"):
			return "451 4.2.0 mailbox busy"
		case strings.HasPrefix(rcpt, "gone@"):
			return "550 5.1.1 no such user"
		}
		return "250 2.1.5 ok"
	}}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": sink})
	tr := testTransport(t, "dest.test. 300 IN MX 10 mx.dest.test.\nmx.dest.test. 300 IN A 127.0.0.2\n", port, nil)
	err, _ := deliverWithHops(tr, &Envelope{ID: "r1", From: "s@sender.test", To: []string{"ok@dest.test", "busy@dest.test", "gone@dest.test"}})
	var re *RecipientsError
	if !errors.As(err, &re) || !slices.Equal(re.Accepted, []string{"ok@dest.test"}) || len(re.Failed) != 2 {
		t.Fatalf("Deliver = %v; want ok@ accepted, two failed", err)
	}
	for _, f := range re.Failed {
		if want := f.Rcpt == "gone@dest.test"; IsPermanent(f.Err) != want {
			t.Errorf("%s: permanent %v, want %v (%v)", f.Rcpt, IsPermanent(f.Err), want, f.Err)
		}
	}
	if tx := sink.transactions(); len(tx) != 1 || !slices.Equal(tx[0].Rcpts, []string{"ok@dest.test"}) {
		t.Errorf("server got %+v; want one transaction for ok@", tx)
	}
}

// startPolicyServer serves MTA-STS policies (policy host -> body) over HTTPS
// with pki's certificate, and returns its address.
func startPolicyServer(t *testing.T, pki *smtptest.PKI, policies map[string]string) (addr string, fetches func(host string) int) {
	var mu sync.Mutex
	count := map[string]int{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(r.Host, ":")
		mu.Lock()
		count[host]++
		mu.Unlock()
		if r.URL.Path != "/.well-known/mta-sts.txt" || policies[host] == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, policies[host])
	}))
	srv.TLS = pki.ServerConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), func(host string) int {
		mu.Lock()
		defer mu.Unlock()
		return count[host]
	}
}

// REQUIRETLS: never sent without verified TLS to an MX host an MTA-STS policy
// names (RFC 8689 §4.1); passed on when offered.
func TestTransportRequireTLS(t *testing.T) {
	pki := smtptest.NewPKI(t, "mx.tls.test", "mta-sts.tls.test", "mta-sts.plain.test")
	plain := &smtpSink{Name: "mx.plain.test", Extensions: []string{"REQUIRETLS"}}
	secure := &smtpSink{Name: "mx.tls.test", TLS: pki.ServerConfig(), Extensions: []string{"REQUIRETLS"}}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": plain, "127.0.0.3": secure})
	policyAddr, _ := startPolicyServer(t, pki, map[string]string{
		"mta-sts.tls.test":   "version: STSv1\nmode: testing\nmx: mx.tls.test\nmax_age: 600\n",
		"mta-sts.plain.test": "version: STSv1\nmode: testing\nmx: mx.plain.test\nmax_age: 600\n",
	})
	zone := `
plain.test. 300 IN MX 10 mx.plain.test.
mx.plain.test. 300 IN A 127.0.0.2
_mta-sts.plain.test. 300 IN TXT "v=STSv1; id=1"
tls.test. 300 IN MX 10 mx.tls.test.
mx.tls.test. 300 IN A 127.0.0.3
_mta-sts.tls.test. 300 IN TXT "v=STSv1; id=1"
nosts.test. 300 IN MX 10 mx.tls.test.
`
	withSTS := func(tr *Transport) *Transport {
		tr.MTASTS = &MTASTS{Resolver: tr.Resolver, RootCAs: pki.Pool, DialAddr: policyAddr, Logger: quietLogger()}
		return tr
	}
	tr := withSTS(testTransport(t, zone, port, pki))

	err, _ := deliverWithHops(tr, &Envelope{ID: "t1", From: "s@sender.test", To: []string{"a@plain.test"}, RequireTLS: true})
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "REQUIRETLS") {
		t.Errorf("REQUIRETLS over plain text: %v; want a temporary failure naming REQUIRETLS", err)
	}
	if n := len(plain.transactions()); n != 0 {
		t.Errorf("a REQUIRETLS message went over plain text (%d transactions)", n)
	}

	if err, _ := deliverWithHops(tr, &Envelope{ID: "t2", From: "s@sender.test", To: []string{"a@tls.test"}, RequireTLS: true}); err != nil {
		t.Fatalf("REQUIRETLS over verified TLS: %v", err)
	}
	tx := secure.transactions()
	if len(tx) != 1 || !tx[0].TLS || !strings.HasSuffix(tx[0].Mail, " REQUIRETLS") {
		t.Errorf("got %+v; want one transaction under TLS with MAIL ... REQUIRETLS", tx)
	}

	// The same server, but the domain's MX is not validated by a policy.
	err, _ = deliverWithHops(tr, &Envelope{ID: "t3", From: "s@sender.test", To: []string{"a@nosts.test"}, RequireTLS: true})
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "no MTA-STS policy") {
		t.Errorf("REQUIRETLS without an MTA-STS policy: %v; want a temporary failure", err)
	}

	// A certificate that does not verify (no trusted CA) is not enough.
	untrusting := withSTS(testTransport(t, zone, port, nil))
	err, _ = deliverWithHops(untrusting, &Envelope{ID: "t4", From: "s@sender.test", To: []string{"a@tls.test"}, RequireTLS: true})
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "REQUIRETLS") {
		t.Errorf("REQUIRETLS with an unverified certificate: %v; want a temporary failure", err)
	}
	if n := len(secure.transactions()); n != 1 {
		t.Errorf("%d transactions, want still 1", n)
	}
	// Without REQUIRETLS the same server takes the mail, the certificate recorded as unverified.
	err, hops := deliverWithHops(untrusting, &Envelope{ID: "t5", From: "s@sender.test", To: []string{"a@tls.test"}})
	if err != nil || len(hops) != 1 || hops[0].TLS == nil || hops[0].TLS.Verified {
		t.Errorf("opportunistic TLS with an unverified certificate: %v, hops %+v; want delivered, TLS unverified", err, hops)
	}
}

// SUBMITTER carries the PRA of the header when the server offers it.
func TestTransportSubmitter(t *testing.T) {
	with := &smtpSink{Name: "mx.with.test", Extensions: []string{"SUBMITTER"}}
	without := &smtpSink{Name: "mx.without.test"}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": with, "127.0.0.3": without})
	tr := testTransport(t, `
with.test. 300 IN MX 10 mx.with.test.
mx.with.test. 300 IN A 127.0.0.2
without.test. 300 IN MX 10 mx.without.test.
mx.without.test. 300 IN A 127.0.0.3
`, port, nil)
	tests := []struct {
		name, header, domain, want string
	}{
		{"From only", "From: Alice <alice@org.test>\r\n", "with.test", " SUBMITTER=alice@org.test"},
		{"Sender present", "From: alice@org.test\r\nSender: Bot <bot+list@org.test>\r\n", "with.test", " SUBMITTER=bot+2Blist@org.test"},
		{"Resent block", "Resent-From: fwd@resend.test\r\nResent-Sender: agent@resend.test\r\nFrom: alice@org.test\r\n", "with.test", " SUBMITTER=agent@resend.test"},
		{"malformed Sender", "From: alice@org.test\r\nSender: not an address\r\n", "with.test", ""},
		{"server without SUBMITTER", "From: alice@org.test\r\n", "without.test", ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr, err := dkimcore.ReadHeader(bufio.NewReader(strings.NewReader(tc.header+"\r\n")), true)
			if err != nil {
				t.Fatal(err)
			}
			env := &Envelope{ID: fmt.Sprint("s", i), From: "bounce@org.test", To: []string{"r@" + tc.domain}}
			if pra, _, ok := addr.PRA(hdr); ok {
				env.Submitter = pra.String()
			}
			sink := with
			if tc.domain == "without.test" {
				sink = without
			}
			before := len(sink.transactions())
			if err, _ := deliverWithHops(tr, env); err != nil {
				t.Fatal(err)
			}
			txs := sink.transactions()
			if len(txs) != before+1 {
				t.Fatalf("%d transactions, want %d", len(txs), before+1)
			}
			if want := "MAIL FROM:<bounce@org.test>" + tc.want; txs[before].Mail != want {
				t.Errorf("MAIL line %q, want %q", txs[before].Mail, want)
			}
		})
	}
}

// A smart host with STARTTLS required and AUTH: the upstream-ESP case. Without
// TLS on offer, no credentials are sent and nothing is delivered.
func TestTransportSmartHostAuth(t *testing.T) {
	pki := smtptest.NewPKI(t, "smtp.esp.test")
	esp := (&smtpSink{Name: "smtp.esp.test", TLS: pki.ServerConfig(), Login: "acme:s3cret"}).start(t, "127.0.0.1:0")
	noTLS := (&smtpSink{Name: "smtp.esp.test", Login: "acme:s3cret"}).start(t, "127.0.0.1:0")
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		tr := &Transport{HeloName: "relay.sealgate.test", RootCAs: pki.Pool, Logger: quietLogger(), Timeout: 10 * time.Second,
			Default: Route{NextHop: fmt.Sprintf("smtp.esp.test:%d", esp.port()), TLS: TLSRequired,
				Auth: &Credentials{Mechanism: mech, Username: "acme", Password: "s3cret"}}}
		t.Cleanup(tr.Close)
		// smtp.esp.test is not in DNS: the next hop is the sink's address, in
		// the certificate as an IP address name.
		tr.Default.NextHop = net.JoinHostPort("127.0.0.1", fmt.Sprint(esp.port()))
		if err, _ := deliverWithHops(tr, &Envelope{ID: "a-" + mech, From: "s@acme.test", To: []string{"x@far.test", "y@other.test"}}); err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
	}
	txs := esp.transactions()
	if len(txs) != 2 || txs[0].AuthUser != "acme" || !txs[0].TLS || len(txs[0].Rcpts) != 2 {
		t.Errorf("smart host got %+v; want two transactions under TLS as acme, both recipients in one", txs)
	}

	tr := &Transport{HeloName: "relay.sealgate.test", Logger: quietLogger(), Timeout: 10 * time.Second,
		Default: Route{NextHop: net.JoinHostPort("127.0.0.1", fmt.Sprint(noTLS.port())), TLS: TLSRequired,
			Auth: &Credentials{Username: "acme", Password: "s3cret"}}}
	t.Cleanup(tr.Close)
	err, _ := deliverWithHops(tr, &Envelope{ID: "a-plain", From: "s@acme.test", To: []string{"x@far.test"}})
	if err == nil || IsPermanent(err) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("TLS required, not offered: %v; want a temporary failure without the password", err)
	}
	if len(noTLS.transactions()) != 0 {
		t.Error("delivered without the required TLS")
	}
}

// Implicit TLS to a smart host (RFC 8314).
func TestTransportSmartHostImplicitTLS(t *testing.T) {
	pki := smtptest.NewPKI(t, "smtps.esp.test")
	esp := (&smtpSink{Name: "smtps.esp.test", TLS: pki.ServerConfig(), Implicit: true}).start(t, "127.0.0.1:0")
	tr := &Transport{HeloName: "relay.sealgate.test", RootCAs: pki.Pool, Logger: quietLogger(), Timeout: 10 * time.Second,
		Default: Route{NextHop: net.JoinHostPort("127.0.0.1", fmt.Sprint(esp.port())), TLS: TLSImplicit}}
	t.Cleanup(tr.Close)
	err, hops := deliverWithHops(tr, &Envelope{ID: "i1", From: "s@acme.test", To: []string{"x@far.test"}})
	if err != nil || len(hops) != 1 || hops[0].TLS == nil || !hops[0].TLS.Verified {
		t.Fatalf("implicit TLS: %v, hops %+v", err, hops)
	}
	if txs := esp.transactions(); len(txs) != 1 || !txs[0].TLS {
		t.Errorf("got %+v", txs)
	}
}

// A route's source address is the one the server sees; identity and domain
// routes pick their own HELO name and smart host.
func TestTransportRoutesAndSourceIP(t *testing.T) {
	mx := &smtpSink{Name: "mx.dest.test"}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.3": mx})
	hop := (&smtpSink{Name: "hop.test"}).start(t, "127.0.0.1:0")
	tr := testTransport(t, "dest.test. 300 IN MX 10 mx.dest.test.\nmx.dest.test. 300 IN A 127.0.0.3\n", port, nil)
	tr.Identities = map[string]Route{"acme": {HeloName: "out.acme.test", SourceIP: net.ParseIP("127.0.0.2")}}
	tr.Domains = map[addr.Domain]Route{"partner.test": {NextHop: net.JoinHostPort("127.0.0.1", fmt.Sprint(hop.port()))}}

	err, _ := deliverWithHops(tr, &Envelope{ID: "o1", Identity: "acme", From: "s@acme.test", To: []string{"a@dest.test", "b@partner.test"}})
	if err != nil {
		t.Fatal(err)
	}
	txs := mx.transactions()
	if len(txs) != 1 || txs[0].Remote != "127.0.0.2" || txs[0].Helo != "out.acme.test" {
		t.Errorf("MX got %+v; want one transaction from 127.0.0.2 with HELO out.acme.test", txs)
	}
	if h := hop.transactions(); len(h) != 1 || !slices.Equal(h[0].Rcpts, []string{"b@partner.test"}) {
		t.Errorf("the partner.test route got %+v; want b@partner.test", h)
	}
	// Another identity uses the default route.
	if err, _ := deliverWithHops(tr, &Envelope{ID: "o2", Identity: "other", From: "s@x.test", To: []string{"a@dest.test"}}); err != nil {
		t.Fatal(err)
	}
	if txs := mx.transactions(); len(txs) != 2 || txs[1].Remote == "127.0.0.2" || txs[1].Helo != "relay.sealgate.test" {
		t.Errorf("default route: %+v", txs[1])
	}
}

// A kept session that died meanwhile (the server restarted) is replaced, and
// the message goes out in the same attempt.
func TestTransportReplacesStaleSession(t *testing.T) {
	sink := &smtpSink{Name: "mx.dest.test"}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": sink})
	tr := testTransport(t, "dest.test. 300 IN MX 10 mx.dest.test.\nmx.dest.test. 300 IN A 127.0.0.2\n", port, nil)
	tr.MaxIdle = 3
	// Three sessions kept at once.
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err, _ := deliverWithHops(tr, &Envelope{ID: fmt.Sprint("k", i), From: "s@x.test", To: []string{"a@dest.test"}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := len(tr.sessions().idle); n != 1 {
		t.Fatalf("%d pool keys kept, want 1", n)
	}
	// The server restarts: every kept session is closed from its end, which
	// the client learns only when it next writes.
	sink.ln.Close()
	sink.closeSessions()
	restart := (&smtpSink{Name: "mx.dest.test"}).start(t, fmt.Sprintf("127.0.0.2:%d", port))
	if err, _ := deliverWithHops(tr, &Envelope{ID: "k9", From: "s@x.test", To: []string{"a@dest.test"}}); err != nil {
		t.Fatalf("after the restart: %v; want delivered at once", err)
	}
	if n := len(restart.transactions()); n != 1 {
		t.Errorf("restarted server took %d messages, want 1", n)
	}
}

// MTA-STS enforce: only the MX hosts the policy names, and only over verified
// TLS; a policy in testing mode lets delivery go on.
func TestTransportMTASTS(t *testing.T) {
	pki := smtptest.NewPKI(t, "mx1.sts.test", "mx2.sts.test", "mta-sts.sts.test", "mta-sts.testing.test", "mx.testing.test")
	rogue := &smtpSink{Name: "mx1.sts.test", TLS: pki.ServerConfig()}
	good := &smtpSink{Name: "mx2.sts.test", TLS: pki.ServerConfig()}
	plainTesting := &smtpSink{Name: "mx.testing.test"}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": rogue, "127.0.0.3": good, "127.0.0.4": plainTesting})

	policyAddr, fetches := startPolicyServer(t, pki, map[string]string{
		"mta-sts.sts.test":     "version: STSv1\r\nmode: enforce\r\nmx: mx2.sts.test\r\nmax_age: 86400\r\n",
		"mta-sts.testing.test": "version: STSv1\nmode: testing\nmx: *.elsewhere.test\nmax_age: 86400\n",
	})

	tr := testTransport(t, `
sts.test. 300 IN MX 10 mx1.sts.test.
sts.test. 300 IN MX 20 mx2.sts.test.
mx1.sts.test. 300 IN A 127.0.0.2
mx2.sts.test. 300 IN A 127.0.0.3
_mta-sts.sts.test. 300 IN TXT "v=STSv1; id=20261129T1;"
testing.test. 300 IN MX 10 mx.testing.test.
mx.testing.test. 300 IN A 127.0.0.4
_mta-sts.testing.test. 300 IN TXT "v=STSv1; id=t1"
`, port, pki)
	tr.MTASTS = &MTASTS{Resolver: tr.Resolver, RootCAs: pki.Pool, DialAddr: policyAddr, Logger: quietLogger()}

	for i := range 2 {
		err, hops := deliverWithHops(tr, &Envelope{ID: fmt.Sprint("sts", i), From: "s@x.test", To: []string{"a@sts.test"}})
		if err != nil {
			t.Fatalf("enforce: %v", err)
		}
		if len(hops) != 1 || hops[0].Host != "mx2.sts.test" || hops[0].TLS == nil || !hops[0].TLS.Verified {
			t.Errorf("enforce: hops %+v; want mx2.sts.test over verified TLS", hops)
		}
	}
	if len(rogue.transactions()) != 0 || len(good.transactions()) != 2 {
		t.Errorf("enforce: mx1 (not in the policy) took %d, mx2 took %d; want 0 and 2", len(rogue.transactions()), len(good.transactions()))
	}
	if n := fetches("mta-sts.sts.test"); n != 1 {
		t.Errorf("policy fetched %d times for two messages, want 1 (cached until max_age)", n)
	}

	// Without a trusted CA the policy's MX certificate does not verify: deferred.
	untrusting := testTransport(t, `
sts.test. 300 IN MX 20 mx2.sts.test.
mx2.sts.test. 300 IN A 127.0.0.3
`, port, nil)
	untrusting.MTASTS = tr.MTASTS // the policy is cached there
	untrusting.MTASTS.Resolver = tr.Resolver
	err, _ := deliverWithHops(untrusting, &Envelope{ID: "sts-bad", From: "s@x.test", To: []string{"a@sts.test"}})
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "MTA-STS") {
		t.Errorf("enforce with an unverified certificate: %v; want a temporary failure naming MTA-STS", err)
	}

	// testing: neither the MX name nor plain text stop delivery.
	if err, _ := deliverWithHops(tr, &Envelope{ID: "sts-t", From: "s@x.test", To: []string{"a@testing.test"}}); err != nil {
		t.Errorf("testing mode: %v; want delivered", err)
	}
	if len(plainTesting.transactions()) != 1 {
		t.Error("testing mode: not delivered")
	}
}

func TestParseSTSPolicy(t *testing.T) {
	p, err := ParseSTSPolicy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\nextension: x\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != STSModeEnforce || p.MaxAge != 7*24*time.Hour || len(p.MX) != 2 {
		t.Errorf("parsed %+v", p)
	}
	for host, want := range map[string]bool{
		"mail.example.com": true, "MAIL.example.com.": true, "mx1.example.net": true,
		"a.b.example.net": false, "example.net": false, "other.example.com": false,
	} {
		if got := p.MatchesMX(host); got != want {
			t.Errorf("MatchesMX(%q) = %v, want %v", host, got, want)
		}
	}
	for _, bad := range []string{
		"mode: enforce\nmx: a.test\nmax_age: 1\n",                        // no version
		"version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",        // wrong version
		"version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",         // bad mode
		"version: STSv1\nmode: enforce\nmax_age: 1\n",                    // no mx
		"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",       // bad max_age
		"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 99999999\n", // too long
		"version: STSv1\nmode: enforce\nmx: a.test\n",                    // no max_age
	} {
		if _, err := ParseSTSPolicy(bad); err == nil {
			t.Errorf("ParseSTSPolicy(%q) succeeded", bad)
		}
	}
	for txt, want := range map[string]string{"v=STSv1; id=abc123;": "abc123", "v=STSv1;id=x": "x", "v=spf1 -all": ""} {
		id, _, err := parseSTSRecord(txt)
		if id != want || (want != "" && err != nil) {
			t.Errorf("parseSTSRecord(%q) = %q, %v; want %q", txt, id, err, want)
		}
	}
}

// A policy fetch is refused on a redirect, a wrong content type or a body
// over 64 KiB: then no policy applies.
func TestMTASTSFetchLimits(t *testing.T) {
	pki := smtptest.NewPKI(t, "mta-sts.redirect.test", "mta-sts.html.test", "mta-sts.big.test")
	var requests atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		switch strings.Split(r.Host, ":")[0] {
		case "mta-sts.redirect.test":
			http.Redirect(w, r, "https://mta-sts.html.test/.well-known/mta-sts.txt", http.StatusFound)
		case "mta-sts.html.test":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 60\n")
		case "mta-sts.big.test":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 60\n")
			fmt.Fprint(w, strings.Repeat("x: y\n", 70<<10/5))
		}
	}))
	srv.TLS = pki.ServerConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	r := testResolver(t, `
_mta-sts.redirect.test. 300 IN TXT "v=STSv1; id=1"
_mta-sts.html.test. 300 IN TXT "v=STSv1; id=1"
_mta-sts.big.test. 300 IN TXT "v=STSv1; id=1"
`)
	m := &MTASTS{Resolver: r, RootCAs: pki.Pool, DialAddr: srv.Listener.Addr().String(), Logger: quietLogger()}
	for _, d := range []string{"redirect.test", "html.test", "big.test"} {
		if p := m.Policy(context.Background(), d); p != nil {
			t.Errorf("%s: policy %+v; want none", d, p)
		}
		if _, err := m.fetch(context.Background(), d); err == nil {
			t.Errorf("%s: fetch succeeded", d)
		}
	}
	// A failed fetch is not repeated for every message.
	if n := requests.Load(); n != 6 {
		t.Errorf("%d requests, want 6", n)
	}
	m.Policy(context.Background(), "html.test")
	if n := requests.Load(); n != 6 {
		t.Errorf("a failed fetch was repeated at once (%d requests)", n)
	}
}

// The Runner logs one line per recipient group and attempt, and hands each
// event to OnAttempt.
func TestRunnerAttemptEvents(t *testing.T) {
	sink := &smtpSink{Name: "mx.dest.test", RcptReply: func(rcpt string) string {
		if strings.HasPrefix(rcpt, "gone@") {
			return "550 5.1.1 no such user"
		}
		return "250 2.1.5 ok"
	}}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": sink})
	tr := testTransport(t, "dest.test. 300 IN MX 10 mx.dest.test.\nmx.dest.test. 300 IN A 127.0.0.2\nnullmx.test. 300 IN MX 0 .\n", port, nil)
	spool := testSpool(t, t.TempDir())
	var mu sync.Mutex
	var events []AttemptEvent
	r := &Runner{Spool: spool, Deliverer: tr, Logger: quietLogger(), OnAttempt: func(ev AttemptEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}}
	commit(t, spool, &Envelope{From: "s@x.test", Identity: "acme", To: []string{"a@dest.test", "gone@dest.test", "b@dest.test", "n@nullmx.test"},
		HeaderFrom: "x.test", DKIM: []DKIMSignature{{Domain: "x.test", Selector: "s1"}}},
		"Subject: events\r\n", "body\r\n")
	runRunner(t, r)
	waitFor(t, "four recipients settled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, ev := range events {
			n += len(ev.Rcpts)
		}
		return n == 4
	})
	mu.Lock()
	defer mu.Unlock()
	byStatus := map[string]AttemptEvent{}
	for _, ev := range events {
		if _, dup := byStatus[ev.Status+ev.Domain]; dup {
			t.Errorf("two events for %s %s", ev.Status, ev.Domain)
		}
		byStatus[ev.Status+ev.Domain] = ev
	}
	sent := byStatus[StatusSent+"dest.test"]
	if !slices.Equal(sent.Rcpts, []string{"a@dest.test", "b@dest.test"}) || sent.Host != "mx.dest.test" || sent.IP != "127.0.0.2" ||
		sent.Code != 250 || sent.EnhancedCode != "2.0.0" || !strings.HasPrefix(sent.Text, "queued as") || sent.Attempt != 1 || sent.Identity != "acme" ||
		sent.SourceIP != "127.0.0.1" || sent.HeaderFrom != "x.test" || !slices.Equal(sent.DKIM, []DKIMSignature{{Domain: "x.test", Selector: "s1"}}) {
		t.Errorf("sent event %+v", sent)
	}
	bounced := byStatus[StatusBounced+"dest.test"]
	if !slices.Equal(bounced.Rcpts, []string{"gone@dest.test"}) || bounced.Code != 550 || bounced.EnhancedCode != "5.1.1" || bounced.Text != "no such user" {
		t.Errorf("bounced event %+v", bounced)
	}
	null := byStatus[StatusBounced+"nullmx.test"]
	if !slices.Equal(null.Rcpts, []string{"n@nullmx.test"}) || null.Code != 556 || null.EnhancedCode != "5.1.10" || null.Host != "" {
		t.Errorf("null MX event %+v", null)
	}
}

// The pool lets at most perDest sessions carry a transaction to one server
// address, and at most max in all; a release lets a waiting one go.
func TestPoolLimits(t *testing.T) {
	p := newPool(2, 1, 2)
	ctx := context.Background()
	relA, err := p.acquire(ctx, "a:25")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.acquire(short, "a:25"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second session to a:25 = %v; want to wait (per-destination limit 1)", err)
	}
	relB, err := p.acquire(ctx, "b:25")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		rel, err := p.acquire(ctx, "c:25")
		if err == nil {
			rel()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("third session with 2 busy = %v; want to wait (overall limit 2)", err)
	case <-time.After(50 * time.Millisecond):
	}
	relA()
	relA() // a second call changes nothing
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	relB()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy != 0 || len(p.busyTo) != 0 {
		t.Errorf("after every release: busy %d, per destination %v", p.busy, p.busyTo)
	}
}

// A temporary failure is logged as deferred with the next attempt; past
// MaxAge as expired.
func TestRunnerAttemptEventsDeferredAndExpired(t *testing.T) {
	sink := &smtpSink{Name: "mx.dest.test", RcptReply: func(string) string { return "451 4.2.0 mailbox busy" }}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": sink})
	for _, tc := range []struct {
		maxAge time.Duration
		want   string
	}{{time.Hour, StatusDeferred}, {time.Nanosecond, StatusExpired}} {
		tr := testTransport(t, "dest.test. 300 IN MX 10 mx.dest.test.\nmx.dest.test. 300 IN A 127.0.0.2\n", port, nil)
		spool := testSpool(t, t.TempDir())
		events := make(chan AttemptEvent, 10)
		r := &Runner{Spool: spool, Deliverer: tr, Logger: quietLogger(), Backoff: []time.Duration{time.Hour},
			MaxAge: tc.maxAge, PollInterval: time.Hour, OnAttempt: func(ev AttemptEvent) { events <- ev }}
		commit(t, spool, &Envelope{From: "s@x.test", To: []string{"a@dest.test"}}, "Subject: x\r\n", "body\r\n")
		start := time.Now()
		runRunner(t, r)
		ev := <-events
		if ev.Status != tc.want || ev.Code != 451 || ev.EnhancedCode != "4.2.0" || ev.Host != "mx.dest.test" {
			t.Errorf("max age %v: event %+v; want %s with the 451 reply", tc.maxAge, ev, tc.want)
		}
		if next := ev.Next; (tc.want == StatusDeferred) != !next.IsZero() || (!next.IsZero() && next.Before(start.Add(time.Hour))) {
			t.Errorf("max age %v: next attempt %v", tc.maxAge, next)
		}
	}
}

// A server that hangs up while the message is being sent: the rest of the
// message is not sent to the next MX host (it would arrive cut short); the
// attempt is deferred and the next one reads the message from the start.
func TestTransportNoPartialMessageToNextMX(t *testing.T) {
	broken := &smtpSink{Name: "mx1.dest.test", HangUp: true}
	next := &smtpSink{Name: "mx2.dest.test"}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": broken, "127.0.0.3": next})
	tr := testTransport(t, `
dest.test. 300 IN MX 10 mx1.dest.test.
dest.test. 300 IN MX 20 mx2.dest.test.
mx1.dest.test. 300 IN A 127.0.0.2
mx2.dest.test. 300 IN A 127.0.0.3
`, port, nil)
	big := "From: a@x.test\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 8<<10) // 8 MB
	ctx, rec := withHopRecorder(context.Background())
	err := tr.Deliver(ctx, &Envelope{ID: "h1", From: "s@x.test", To: []string{"a@dest.test"}}, strings.NewReader(big))
	if err == nil || IsPermanent(err) {
		t.Errorf("Deliver = %v; want a temporary failure", err)
	}
	if txs := next.transactions(); len(txs) != 0 {
		t.Errorf("mx2 got %d transactions (%d bytes); want none after mx1 took part of the message", len(txs), len(txs[0].Data))
	}
	if hops := rec.list(); len(hops) != 1 || hops[0].Host != "mx1.dest.test" {
		t.Errorf("hops %+v; want the attempt on mx1", hops)
	}
}

// A recipient that cannot be written as an RFC 5321 path fails alone; the
// others of its domain are delivered.
func TestTransportUnsendableRecipientFailsAlone(t *testing.T) {
	sink := &smtpSink{Name: "mx.dest.test"}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": sink})
	tr := testTransport(t, "dest.test. 300 IN MX 10 mx.dest.test.\nmx.dest.test. 300 IN A 127.0.0.2\n", port, nil)
	err, _ := deliverWithHops(tr, &Envelope{ID: "u1", From: "s@x.test", To: []string{"ok@dest.test", "bad\r\nx@dest.test"}})
	var re *RecipientsError
	if !errors.As(err, &re) || !slices.Equal(re.Accepted, []string{"ok@dest.test"}) || len(re.Failed) != 1 || !IsPermanent(re.Failed[0].Err) {
		t.Fatalf("Deliver = %v; want ok@ delivered and the bad address failed permanently", err)
	}
	if txs := sink.transactions(); len(txs) != 1 || !slices.Equal(txs[0].Rcpts, []string{"ok@dest.test"}) {
		t.Errorf("server got %+v", txs)
	}
}
