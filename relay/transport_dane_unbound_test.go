package relay

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"sealgate/internal/resolver"
	"sealgate/internal/sealgatetest"
)

// requireDNSTools fails (CI=true) or skips when the Debian tools of the DANE tests are missing.
func requireDNSTools(t *testing.T) {
	t.Helper()
	for tool, pkg := range map[string]string{"unbound": "unbound", "nsd": "nsd", "ldns-signzone": "ldnsutils", "ldns-keygen": "ldnsutils"} {
		if sealgatetest.HaveTool(tool) {
			continue
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (install the Debian package %s; make deps does)", tool, pkg)
		}
		t.Skipf("%s not found (install the Debian package %s; make deps does)", tool, pkg)
	}
}

// DANE against real DNSSEC: a zone signed with ldns-signzone at test time, served by nsd, and
// unbound validating it with the zone's key as trust anchor; an unsigned zone beside it.
func TestTransportDANEUnbound(t *testing.T) {
	requireDNSTools(t)
	dir := t.TempDir()
	// The MX hosts' certificate: self-signed, for another name; only DANE-EE authenticates it.
	cert := daneCert(t, nil, time.Now().Add(-time.Hour), "not-the-mx.example")
	other := daneCert(t, nil, time.Now().Add(-time.Hour), "other.example")
	good := tlsaRR(t, "_25._tcp.mx.good", 3, 1, 1, cert.Leaf)
	wrong := tlsaRR(t, "_25._tcp.mx.wrong", 3, 1, 1, other.Leaf)
	bogus := tlsaRR(t, "_25._tcp.mx.bogus", 3, 1, 1, cert.Leaf)
	signedPath, err := sealgatetest.WriteZone(dir, "signed.test", `
good IN MX 10 mx.good
mx.good IN A 127.0.0.2
`+good+`
wrong IN MX 10 mx.wrong
mx.wrong IN A 127.0.0.3
`+wrong+`
bogus IN MX 10 mx.bogus
mx.bogus IN A 127.0.0.4
`+bogus)
	if err != nil {
		t.Fatal(err)
	}
	signed, anchor, err := sealgatetest.SignZone(signedPath, "signed.test")
	if err != nil {
		t.Fatal(err)
	}
	// Change mx.bogus's TLSA data after signing: its RRSIG no longer matches (bogus).
	data, err := os.ReadFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^(_25\._tcp\.mx\.bogus\.signed\.test\.\s+\d+\s+IN\s+TLSA\s+3 1 1 )([0-9a-f]+)$`)
	if !re.Match(data) {
		t.Fatalf("no TLSA record of mx.bogus in the signed zone:\n%s", data)
	}
	data = re.ReplaceAllFunc(data, func(line []byte) []byte {
		m := re.FindSubmatch(line)
		return append(append([]byte{}, m[1]...), bytes.Repeat([]byte("ab"), len(m[2])/2)...)
	})
	if err := os.WriteFile(signed, data, 0o600); err != nil {
		t.Fatal(err)
	}
	unsigned, err := sealgatetest.WriteZone(dir, "unsigned.test", `
plain IN MX 10 mx.plain
mx.plain IN A 127.0.0.5
`+tlsaRR(t, "_25._tcp.mx.plain", 3, 1, 1, other.Leaf))
	if err != nil {
		t.Fatal(err)
	}
	nsd, err := sealgatetest.StartNSD(dir, map[string]string{"signed.test": signed, "unsigned.test": unsigned})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nsd.Stop)
	unbound, err := sealgatetest.StartUnbound(dir, sealgatetest.UnboundConfig{
		Stubs:        map[string]string{"signed.test": nsd.Addr, "unsigned.test": nsd.Addr},
		TrustAnchors: []string{anchor},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unbound.Stop)

	sinks := map[string]*smtpSink{}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		sinks[ip] = &smtpSink{Name: "mx.test", TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}
	}
	port := startSinks(t, sinks)

	tests := []struct {
		name     string
		dnssec   bool // dns.dnssec: the resolver is marked validating
		rcpt     string
		sink     string
		wantSent bool
		wantDANE string // the hop's DANE status, or its prefix
		wantLog  string // in the attempt's log line
	}{
		{"valid TLSA: delivered, dane-verified", true, "a@good.signed.test", "127.0.0.2", true, DANEVerified, "dane=verified"},
		{"wrong TLSA: deferred, nothing sent", true, "a@wrong.signed.test", "127.0.0.3", false, DANEFailedPrefix, `dane="failed: DANE`},
		{"bogus TLSA: deferred, nothing sent", true, "a@bogus.signed.test", "127.0.0.4", false, "", "SERVFAIL"},
		{"unsigned zone: opportunistic TLS", true, "a@plain.unsigned.test", "127.0.0.5", true, DANEInsecure, "dane=insecure"},
		{"resolver not validating: DANE never claimed", false, "a@good.signed.test", "127.0.0.2", true, DANEInsecure, "dane=insecure"},
		{"resolver not validating: wrong TLSA ignored", false, "a@wrong.signed.test", "127.0.0.3", true, DANEInsecure, "dane=insecure"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := resolver.New(resolver.Config{Server: unbound.Addr, Timeout: 5 * time.Second, DNSSEC: tt.dnssec})
			if err != nil {
				t.Fatal(err)
			}
			tr := &Transport{Resolver: resolver.NewCache(r, time.Minute, 100), HeloName: "relay.sealgate.test",
				MXPort: port, Timeout: 10 * time.Second, Logger: quietLogger()}
			t.Cleanup(tr.Close)
			sink := sinks[tt.sink]
			before := len(sink.transactions())
			env := &Envelope{ID: fmt.Sprint("u", i), From: "s@sender.test", To: []string{tt.rcpt}, ReceivedAt: time.Now()}
			err, hops := deliverWithHops(tr, env)
			sent := sink.transactions()[before:]
			if tt.wantSent {
				if err != nil || len(sent) != 1 || !sent[0].TLS {
					t.Fatalf("Deliver: %v, transactions %+v; want the message sent over TLS", err, sent)
				}
			} else if err == nil || IsPermanent(err) || len(sent) != 0 {
				t.Fatalf("Deliver: %v, %d transactions; want a temporary failure and nothing sent", err, len(sent))
			}
			if tt.wantDANE != "" && (len(hops) != 1 || !strings.HasPrefix(hops[0].DANE, tt.wantDANE)) {
				t.Fatalf("hops %+v; want one with DANE %q", hops, tt.wantDANE)
			}
			// The attempt's log line, as the Runner writes it.
			status, o := StatusSent, outcome{status: StatusSent}
			if err != nil {
				status, o = StatusDeferred, outcome{status: StatusDeferred, err: err}
			}
			evs := attemptEvents(env, env.To, hops, map[string]outcome{tt.rcpt: o}, 1, time.Now(), time.Now())
			if len(evs) != 1 || evs[0].Status != status {
				t.Fatalf("events %+v", evs)
			}
			var buf bytes.Buffer
			logAttempt(slog.New(slog.NewTextHandler(&buf, nil)), evs[0])
			if !strings.Contains(buf.String(), tt.wantLog) {
				t.Errorf("log line %q; want %q in it", buf.String(), tt.wantLog)
			}
		})
	}
}
