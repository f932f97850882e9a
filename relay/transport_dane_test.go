package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/internal/smtptest"
	"sealgate/internal/tlsrpt"
)

// daneCert makes a certificate for names, valid from notBefore for a day: self-signed when
// ca is nil, else issued by ca (whose certificate follows the leaf in the chain).
func daneCert(t *testing.T, ca *tls.Certificate, notBefore time.Time, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "dane test"},
		DNSNames: names, NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	parent, signer := tmpl, any(key)
	if ca == nil && len(names) == 0 {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	}
	if ca != nil {
		parent, signer = ca.Leaf, ca.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	if ca != nil {
		c.Certificate = append(c.Certificate, ca.Certificate...)
	}
	return c
}

// daneCA is a CA certificate (for DANE-TA).
func daneCA(t *testing.T) tls.Certificate { return daneCert(t, nil, time.Now().Add(-time.Hour)) }

// tlsaRR is the presentation form of a TLSA record for cert.
func tlsaRR(t *testing.T, owner string, usage, selector, matching uint8, cert *x509.Certificate) string {
	t.Helper()
	data, err := dns.CertificateToDANE(selector, matching, cert)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s 300 IN TLSA %d %d %d %s", owner, usage, selector, matching, data)
}

func TestUsableTLSA(t *testing.T) {
	tests := []struct {
		usage, selector, matching uint8
		want                      bool
	}{
		{3, 1, 1, true}, {3, 0, 1, true}, {3, 1, 2, true}, {3, 0, 0, true}, {2, 0, 1, true}, {2, 1, 2, true},
		{0, 0, 1, false}, {1, 1, 1, false}, // PKIX-TA/EE: unusable for SMTP (RFC 7672 §3.1.3)
		{3, 2, 1, false}, {3, 1, 3, false}, {4, 1, 1, false}, {255, 1, 1, false},
	}
	for _, tt := range tests {
		r := &dns.TLSA{Usage: tt.usage, Selector: tt.selector, MatchingType: tt.matching, Certificate: "00"}
		if got := usableTLSA(r); got != tt.want {
			t.Errorf("TLSA %d %d %d: usable %v, want %v", tt.usage, tt.selector, tt.matching, got, tt.want)
		}
	}
}

func TestVerifyDANE(t *testing.T) {
	ca := daneCA(t)
	otherCA := daneCA(t)
	// DANE-EE ignores names and dates (RFC 7672 §3.1.1): an expired certificate for another name.
	ee := daneCert(t, nil, time.Now().Add(-72*time.Hour), "elsewhere.example")
	issued := daneCert(t, &ca, time.Now().Add(-time.Hour), "mx.dest.test")
	wrongName := daneCert(t, &ca, time.Now().Add(-time.Hour), "other.test")
	leaf := func(c tls.Certificate) *x509.Certificate { return c.Leaf }
	chain := func(c tls.Certificate) []*x509.Certificate {
		var out []*x509.Certificate
		for _, der := range c.Certificate {
			x, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, x)
		}
		return out
	}
	rec := func(usage, sel, match uint8, c *x509.Certificate) *dns.TLSA {
		data, err := dns.CertificateToDANE(sel, match, c)
		if err != nil {
			t.Fatal(err)
		}
		return &dns.TLSA{Usage: usage, Selector: sel, MatchingType: match, Certificate: data}
	}
	tests := []struct {
		name    string
		records []*dns.TLSA
		chain   []*x509.Certificate
		wantErr string // "" for a match
	}{
		{"EE SPKI SHA-256", []*dns.TLSA{rec(3, 1, 1, leaf(ee))}, chain(ee), ""},
		{"EE cert SHA-512", []*dns.TLSA{rec(3, 0, 2, leaf(ee))}, chain(ee), ""},
		{"EE full cert", []*dns.TLSA{rec(3, 0, 0, leaf(ee))}, chain(ee), ""},
		{"EE upper-case hex", []*dns.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Certificate: strings.ToUpper(rec(3, 1, 1, leaf(ee)).Certificate)}}, chain(ee), ""},
		{"EE second record matches", []*dns.TLSA{rec(3, 1, 1, leaf(issued)), rec(3, 1, 1, leaf(ee))}, chain(ee), ""},
		{"EE wrong key", []*dns.TLSA{rec(3, 1, 1, leaf(issued))}, chain(ee), "matches none"},
		{"EE record of the CA does not match the leaf", []*dns.TLSA{rec(3, 1, 1, leaf(ca))}, chain(issued), "matches none"},
		{"TA SPKI of the CA", []*dns.TLSA{rec(2, 1, 1, leaf(ca))}, chain(issued), ""},
		{"TA cert of the CA", []*dns.TLSA{rec(2, 0, 2, leaf(ca))}, chain(issued), ""},
		{"TA: name not the MX host", []*dns.TLSA{rec(2, 1, 1, leaf(ca))}, chain(wrongName), "not issued to the MX host name (DANE-TA, mx.dest.test)"},
		{"TA: another CA", []*dns.TLSA{rec(2, 1, 1, leaf(otherCA))}, chain(issued), "matches none"},
		{"TA: CA not in the chain", []*dns.TLSA{rec(2, 1, 1, leaf(ca))}, chain(issued)[:1], "matches none"},
		{"no certificate", []*dns.TLSA{rec(3, 1, 1, leaf(ee))}, nil, "no certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verifyDANE(&daneHost{status: daneUsable, tlsa: tt.records, names: []string{"mx.dest.test"}}, tt.chain)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("verifyDANE: %v, want a match", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("verifyDANE: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// The RFC 7672 §2.2 decision table, through a validating resolver stand-in.
func TestLookupDANE(t *testing.T) {
	cert := daneCert(t, nil, time.Now(), "mx.dest.test").Leaf
	ee := func(owner string) string { return tlsaRR(t, owner, 3, 1, 1, cert) }
	zone := `
mx.dest.test. 300 IN A 127.0.0.2
notlsa.dest.test. 300 IN A 127.0.0.2
unusable.dest.test. 300 IN A 127.0.0.2
` + tlsaRR(t, "_25._tcp.unusable.dest.test.", 1, 1, 1, cert) + `
_25._tcp.unusable.dest.test. 300 IN TLSA 3 2 1 00ff
mixed.dest.test. 300 IN A 127.0.0.2
` + tlsaRR(t, "_25._tcp.mixed.dest.test.", 0, 0, 1, cert) + `
` + ee("_25._tcp.mixed.dest.test.") + `
` + ee("_25._tcp.mx.dest.test.") + `
insecure-addr.dest.test. 300 IN A 127.0.0.2
` + ee("_25._tcp.insecure-addr.dest.test.") + `
insecure-tlsa.dest.test. 300 IN A 127.0.0.2
` + ee("_25._tcp.insecure-tlsa.dest.test.") + `
bogus.dest.test. 300 IN A 127.0.0.2
` + ee("_25._tcp.bogus.dest.test.") + `
alias.dest.test. 300 IN CNAME mx.hosting.test.
mx.hosting.test. 300 IN A 127.0.0.2
` + ee("_25._tcp.mx.hosting.test.") + `
alias2.dest.test. 300 IN CNAME plain.hosting.test.
plain.hosting.test. 300 IN A 127.0.0.2
` + ee("_25._tcp.alias2.dest.test.") + `
`
	addr := resolvertest.StartValidating(t, resolvertest.Validating{Zone: zone,
		Insecure: []string{"insecure-addr.dest.test.", "_25._tcp.insecure-tlsa.dest.test."},
		Bogus:    []string{"_25._tcp.bogus.dest.test."}})
	tests := []struct {
		host       string
		mxSecure   bool
		dnssec     bool
		wantStatus string
		wantNames  string
		wantErr    bool
	}{
		{"mx.dest.test", true, true, daneUsable, "mx.dest.test", false},
		{"mx.dest.test", false, true, DANEInsecure, "", false},  // MX RRset not validated
		{"mx.dest.test", true, false, DANEInsecure, "", false},  // resolver not marked validating
		{"notlsa.dest.test", true, true, DANENoTLSA, "", false}, // secure denial
		{"unusable.dest.test", true, true, DANEUnusable, "unusable.dest.test", false},
		{"mixed.dest.test", true, true, daneUsable, "mixed.dest.test", false},
		{"insecure-addr.dest.test", true, true, DANEInsecure, "", false},
		{"insecure-tlsa.dest.test", true, true, DANEInsecure, "", false},
		{"bogus.dest.test", true, true, "", "", true}, // not used at all (§2.1.1)
		// §2.2.2: TLSA at the end of the CNAME chain first, then at the MX host name.
		{"alias.dest.test", true, true, daneUsable, "mx.hosting.test alias.dest.test", false},
		{"alias2.dest.test", true, true, daneUsable, "alias2.dest.test", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s mx_secure=%v dnssec=%v", tt.host, tt.mxSecure, tt.dnssec), func(t *testing.T) {
			r, err := resolver.New(resolver.Config{Server: addr, Timeout: 5 * time.Second, DNSSEC: tt.dnssec})
			if err != nil {
				t.Fatal(err)
			}
			ips, err := resolver.LookupIPSecure(t.Context(), r, tt.host)
			if err != nil {
				t.Fatal(err)
			}
			h, err := lookupDANE(t.Context(), r, tt.host, tt.mxSecure, ips)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("lookupDANE: %+v, want an error", h)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.status != tt.wantStatus || strings.Join(h.names, " ") != tt.wantNames {
				t.Errorf("status %q names %q, want %q %q", h.status, h.names, tt.wantStatus, tt.wantNames)
			}
			if h.status == daneUsable && (len(h.tlsa) != 1 || h.tlsa[0].Usage != 3) {
				t.Errorf("usable records %v, want the one DANE-EE record", h.tlsa)
			}
		})
	}
}

// Delivery to MX hosts with DANE: what is sent where, and what the hop says.
func TestTransportDANE(t *testing.T) {
	ca := daneCA(t)
	// A self-signed certificate for another name: only DANE-EE can authenticate it.
	self := daneCert(t, nil, time.Now().Add(-time.Hour), "not-the-mx.example")
	issued := daneCert(t, &ca, time.Now().Add(-time.Hour), "mx.dest.test")
	zoneFor := func(tlsa ...string) string {
		return "dest.test. 300 IN MX 10 mx.dest.test.\nmx.dest.test. 300 IN A 127.0.0.2\n" + strings.Join(tlsa, "\n") + "\n"
	}
	const owner = "_25._tcp.mx.dest.test."
	tests := []struct {
		name     string
		zone     string
		insecure []string
		bogus    []string
		dnssec   bool
		cert     *tls.Certificate // the sink's; nil: no STARTTLS
		wantSent bool
		wantDANE string // the hop's, or its prefix for failures
	}{
		{"DANE-EE matches", zoneFor(tlsaRR(t, owner, 3, 1, 1, self.Leaf)), nil, nil, true, &self, true, DANEVerified},
		{"DANE-TA matches", zoneFor(tlsaRR(t, owner, 2, 1, 1, ca.Leaf)), nil, nil, true, &issued, true, DANEVerified},
		{"wrong TLSA: deferred", zoneFor(tlsaRR(t, owner, 3, 1, 1, issued.Leaf)), nil, nil, true, &self, false, DANEFailedPrefix},
		{"TLSA but no STARTTLS: deferred", zoneFor(tlsaRR(t, owner, 3, 1, 1, self.Leaf)), nil, nil, true, nil, false, DANEFailedPrefix},
		{"only unusable records: TLS, unauthenticated", zoneFor(tlsaRR(t, owner, 1, 1, 1, self.Leaf)), nil, nil, true, &self, true, DANEUnusable},
		{"only unusable records, no STARTTLS: deferred", zoneFor(tlsaRR(t, owner, 1, 1, 1, self.Leaf)), nil, nil, true, nil, false, DANEFailedPrefix},
		{"no TLSA: plain text as without DANE", zoneFor(), nil, nil, true, nil, true, DANENoTLSA},
		{"bogus TLSA: deferred", zoneFor(tlsaRR(t, owner, 3, 1, 1, self.Leaf)), nil, []string{owner}, true, &self, false, ""},
		{"unsigned zone: opportunistic", zoneFor(tlsaRR(t, owner, 3, 1, 1, issued.Leaf)), []string{"dest.test."}, nil, true, &self, true, DANEInsecure},
		{"resolver not validating: DANE never claimed", zoneFor(tlsaRR(t, owner, 3, 1, 1, self.Leaf)), nil, nil, false, &self, true, DANEInsecure},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &smtpSink{Name: "mx.dest.test"}
			if tt.cert != nil {
				sink.TLS = &tls.Config{Certificates: []tls.Certificate{*tt.cert}}
			}
			port := startSinks(t, map[string]*smtpSink{"127.0.0.2": sink})
			addr := resolvertest.StartValidating(t, resolvertest.Validating{Zone: tt.zone, Insecure: tt.insecure, Bogus: tt.bogus})
			r, err := resolver.New(resolver.Config{Server: addr, Timeout: 5 * time.Second, DNSSEC: tt.dnssec})
			if err != nil {
				t.Fatal(err)
			}
			tr := &Transport{Resolver: r, HeloName: "relay.sealgate.test", MXPort: port, Timeout: 10 * time.Second, Logger: quietLogger()}
			t.Cleanup(tr.Close)
			err, hops := deliverWithHops(tr, &Envelope{ID: fmt.Sprint("d", i), From: "s@sender.test", To: []string{"a@dest.test"}})
			txs := sink.transactions()
			if tt.wantSent {
				if err != nil || len(txs) != 1 {
					t.Fatalf("Deliver: %v, %d transactions; want the message sent", err, len(txs))
				}
				if txs[0].TLS != (tt.cert != nil) {
					t.Errorf("sent with TLS %v, want %v", txs[0].TLS, tt.cert != nil)
				}
			} else {
				if err == nil || IsPermanent(err) || len(txs) != 0 {
					t.Fatalf("Deliver: %v, %d transactions; want a temporary failure and nothing sent", err, len(txs))
				}
			}
			if tt.wantDANE == "" {
				return
			}
			if len(hops) != 1 || !strings.HasPrefix(hops[0].DANE, tt.wantDANE) {
				t.Fatalf("hops %+v; want one with DANE %q", hops, tt.wantDANE)
			}
		})
	}
}

// DANE outranks MTA-STS (RFC 8461 §2): a domain with both is held to its TLSA records, not to a
// policy that would refuse its MX host; REQUIRETLS is met by DANE (RFC 8689 §4.1).
func TestTransportDANEOutranksMTASTS(t *testing.T) {
	pki := smtptest.NewPKI(t, "mta-sts.both.test")
	self := daneCert(t, nil, time.Now().Add(-time.Hour), "not-the-mx.example")
	sink := &smtpSink{Name: "mx.both.test", TLS: &tls.Config{Certificates: []tls.Certificate{self}}, Extensions: []string{"REQUIRETLS"}}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": sink})
	policyAddr, fetches := startPolicyServer(t, pki, map[string]string{
		"mta-sts.both.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.elsewhere.test\r\nmax_age: 86400\r\n",
	})
	zone := `
both.test. 300 IN MX 10 mx.both.test.
mx.both.test. 300 IN A 127.0.0.2
_mta-sts.both.test. 300 IN TXT "v=STSv1; id=1;"
` + tlsaRR(t, "_25._tcp.mx.both.test.", 3, 1, 1, self.Leaf)
	for _, dnssec := range []bool{true, false} {
		r, err := resolver.New(resolver.Config{Server: resolvertest.StartValidating(t, resolvertest.Validating{Zone: zone}),
			Timeout: 5 * time.Second, DNSSEC: dnssec})
		if err != nil {
			t.Fatal(err)
		}
		tr := &Transport{Resolver: r, HeloName: "relay.sealgate.test", MXPort: port, Timeout: 10 * time.Second, Logger: quietLogger(),
			MTASTS: &MTASTS{Resolver: r, RootCAs: pki.Pool, DialAddr: policyAddr, Logger: quietLogger()}}
		t.Cleanup(tr.Close)
		before, fetched := len(sink.transactions()), fetches("mta-sts.both.test")
		for i, requireTLS := range []bool{false, true} {
			env := &Envelope{ID: fmt.Sprint("both", dnssec, i), From: "s@x.test", To: []string{"a@both.test"}, RequireTLS: requireTLS}
			err, hops := deliverWithHops(tr, env)
			switch {
			case dnssec && (err != nil || len(hops) != 1 || hops[0].DANE != DANEVerified):
				t.Errorf("DANE, REQUIRETLS %v: %v, hops %+v; want delivered, DANE verified", requireTLS, err, hops)
			case !dnssec && (err == nil || IsPermanent(err)):
				t.Errorf("no DANE, REQUIRETLS %v: %v; want deferred (the MTA-STS policy names another MX)", requireTLS, err)
			}
		}
		sent := len(sink.transactions()) - before
		switch {
		case dnssec && (sent != 2 || fetches("mta-sts.both.test") != fetched):
			t.Errorf("DANE: %d sent, policy fetched %d times; want 2 and none", sent, fetches("mta-sts.both.test")-fetched)
		case !dnssec && sent != 0:
			t.Errorf("MTA-STS without DANE: %d sent, want 0", sent)
		}
	}
}

// TLS reporting (RFC 8460) counts each new session with an MX host under its policy.
func TestTransportTLSReport(t *testing.T) {
	ca := daneCA(t)
	self := daneCert(t, nil, time.Now().Add(-time.Hour), "not-the-mx.example")
	wrongName := daneCert(t, &ca, time.Now().Add(-time.Hour), "elsewhere.example")
	pki := smtptest.NewPKI(t, "mx.enf.test", "mta-sts.stst.test", "mta-sts.enf.test")
	sinks := map[string]*smtpSink{
		"127.0.0.2": {Name: "mx.good.test", TLS: &tls.Config{Certificates: []tls.Certificate{self}}},
		"127.0.0.3": {Name: "mx.wrong.test", TLS: &tls.Config{Certificates: []tls.Certificate{self}}},
		"127.0.0.4": {Name: "mx.ta.test", TLS: &tls.Config{Certificates: []tls.Certificate{wrongName}}},
		"127.0.0.5": {Name: "mx.plain.test"},
		"127.0.0.7": {Name: "mx.stst.test", TLS: &tls.Config{Certificates: []tls.Certificate{daneCert(t, nil, time.Now().Add(-time.Hour), "mx.stst.test")}}},
		"127.0.0.8": {Name: "mx.enf.test", TLS: pki.ServerConfig()},
	}
	port := startSinks(t, sinks)
	policyAddr, _ := startPolicyServer(t, pki, map[string]string{
		"mta-sts.stst.test": "version: STSv1\nmode: testing\nmx: mx.stst.test\nmax_age: 86400\n",
		"mta-sts.enf.test":  "version: STSv1\nmode: enforce\nmx: mx.enf.test\nmax_age: 86400\n",
	})
	zone := `
good.test. 300 IN MX 10 mx.good.test.
mx.good.test. 300 IN A 127.0.0.2
` + tlsaRR(t, "_25._tcp.mx.good.test.", 3, 1, 1, self.Leaf) + `
wrong.test. 300 IN MX 10 mx.wrong.test.
mx.wrong.test. 300 IN A 127.0.0.3
` + tlsaRR(t, "_25._tcp.mx.wrong.test.", 3, 1, 1, ca.Leaf) + `
ta.test. 300 IN MX 10 mx.ta.test.
mx.ta.test. 300 IN A 127.0.0.4
` + tlsaRR(t, "_25._tcp.mx.ta.test.", 2, 1, 1, ca.Leaf) + `
plain.test. 300 IN MX 10 mx.plain.test.
mx.plain.test. 300 IN A 127.0.0.5
bogus.test. 300 IN MX 10 mx.bogus.test.
mx.bogus.test. 300 IN A 127.0.0.6
stst.test. 300 IN MX 10 mx.stst.test.
mx.stst.test. 300 IN A 127.0.0.7
_mta-sts.stst.test. 300 IN TXT "v=STSv1; id=1;"
enf.test. 300 IN MX 10 mx.enf.test.
mx.enf.test. 300 IN A 127.0.0.8
_mta-sts.enf.test. 300 IN TXT "v=STSv1; id=2;"
`
	r, err := resolver.New(resolver.Config{Server: resolvertest.StartValidating(t, resolvertest.Validating{Zone: zone,
		Bogus: []string{"_25._tcp.mx.bogus.test."}}), Timeout: 5 * time.Second, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec, err := tlsrpt.Open(dir, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	tr := &Transport{Resolver: r, HeloName: "relay.sealgate.test", MXPort: port, Timeout: 10 * time.Second, Logger: quietLogger(), TLSRPT: rec,
		RootCAs: pki.Pool, MTASTS: &MTASTS{Resolver: r, RootCAs: pki.Pool, DialAddr: policyAddr, Logger: quietLogger()}}
	t.Cleanup(tr.Close)
	for i, rcpt := range []string{"a@good.test", "b@good.test", "a@wrong.test", "a@ta.test", "a@plain.test", "a@bogus.test", "a@stst.test", "a@enf.test"} {
		deliverWithHops(tr, &Envelope{ID: fmt.Sprint("r", i), From: "s@x.test", To: []string{rcpt}})
	}
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	// The sessions' day: also the one before when midnight (UTC) passed meanwhile.
	var policies []*tlsrpt.PolicyCounts
	for _, when := range []time.Time{time.Now().Add(-time.Minute), time.Now()} {
		day, err := tlsrpt.ReadDay(dir, when.UTC().Format(tlsrpt.DayFormat))
		if err != nil {
			t.Fatal(err)
		}
		policies = append(policies, day.Policies...)
		if when.UTC().Format(tlsrpt.DayFormat) == time.Now().UTC().Format(tlsrpt.DayFormat) {
			break
		}
	}
	got := map[string]string{}
	for _, pc := range policies {
		var results []string
		for _, f := range pc.Failures {
			results = append(results, fmt.Sprintf("%s@%s x%d", f.ResultType, f.ReceivingMXHostname, f.Count))
		}
		got[pc.Policy.Domain] = fmt.Sprintf("%s ok=%d failed=%d %s records=%d", pc.Policy.Type, pc.Successes, pc.Failed, strings.Join(results, ","), len(pc.Policy.Strings))
	}
	want := map[string]string{
		// The second message reuses the session: one session, one success.
		"good.test":  "tlsa ok=1 failed=0  records=1",
		"wrong.test": "tlsa ok=0 failed=1 validation-failure@mx.wrong.test x1 records=1",
		"ta.test":    "tlsa ok=0 failed=1 certificate-host-mismatch@mx.ta.test x1 records=1",
		"plain.test": "no-policy-found ok=0 failed=1 starttls-not-supported@mx.plain.test x1 records=0",
		"bogus.test": "tlsa ok=0 failed=1 dnssec-invalid@mx.bogus.test x1 records=0",
		// MTA-STS testing: delivered, but the unverified certificate is a failure.
		"stst.test": "sts ok=0 failed=1 certificate-not-trusted@mx.stst.test x1 records=4",
		"enf.test":  "sts ok=1 failed=0  records=4",
	}
	for dom, w := range want {
		if got[dom] != w {
			t.Errorf("%s: %q, want %q", dom, got[dom], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("policies %v, want %d", got, len(want))
	}
}

// An MX host that is a CNAME: the TLSA records at the end of the chain apply, and the
// session names that TLSA base domain in SNI (RFC 7672 §2.2.2, §8.1).
func TestTransportDANECNAMEAndSNI(t *testing.T) {
	self := daneCert(t, nil, time.Now().Add(-time.Hour), "not-the-mx.example")
	sni := make(chan string, 4)
	sink := &smtpSink{Name: "mx.hosting.test", TLS: &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		sni <- h.ServerName
		return &self, nil
	}}}
	port := startSinks(t, map[string]*smtpSink{"127.0.0.2": sink})
	zone := `
dest.test. 300 IN MX 10 mx.dest.test.
mx.dest.test. 300 IN CNAME mx.hosting.test.
mx.hosting.test. 300 IN A 127.0.0.2
` + tlsaRR(t, "_25._tcp.mx.hosting.test.", 3, 1, 1, self.Leaf)
	r, err := resolver.New(resolver.Config{Server: resolvertest.StartValidating(t, resolvertest.Validating{Zone: zone}), Timeout: 5 * time.Second, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := &Transport{Resolver: r, HeloName: "relay.sealgate.test", MXPort: port, Timeout: 10 * time.Second, Logger: quietLogger()}
	t.Cleanup(tr.Close)
	err, hops := deliverWithHops(tr, &Envelope{ID: "cname", From: "s@x.test", To: []string{"a@dest.test"}})
	if err != nil || len(hops) != 1 || hops[0].DANE != DANEVerified || len(sink.transactions()) != 1 {
		t.Fatalf("Deliver: %v, hops %+v; want delivered, DANE verified", err, hops)
	}
	if got := <-sni; got != "mx.hosting.test" {
		t.Errorf("SNI %q, want the TLSA base domain mx.hosting.test", got)
	}
}
