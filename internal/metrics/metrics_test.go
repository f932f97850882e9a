package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// scrape serves m's handler on 127.0.0.1:0 and returns the body and status of GET path.
func scrape(t *testing.T, h http.Handler, path string) (string, int) {
	t.Helper()
	s, err := Listen("127.0.0.1:0", h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	resp, err := http.Get("http://" + s.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

func wantLine(t *testing.T, body, line string) {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		if l == line {
			return
		}
	}
	t.Errorf("no line %q in:\n%s", line, grepSealgate(body))
}

func grepSealgate(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "sealgate_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// testReasons are a few of submit's reason codes (docs/reason-codes.md).
var testReasons = Reasons{All: []string{"sender_not_permitted", "auth_failed", "auth_throttled", "no_dkim_keys"},
	AuthFailed: "auth_failed", AuthThrottled: "auth_throttled"}

func TestCounters(t *testing.T) {
	m := New(testReasons)
	m.Refused("sender_not_permitted")
	m.Refused("sender_not_permitted")
	m.Refused("auth_failed")
	m.Refused("auth_throttled")
	m.Refused("not_a_listed_code")
	m.Accepted(20 * time.Millisecond)
	m.Signed("client.example")
	m.Signed("client.example")
	m.Sealed("relay.example")
	m.TLSIn(tls.VersionTLS13)
	m.Attempt(Attempt{Status: "sent", Sent: true, Host: "alt1.gmail-smtp-in.l.google.com.", TLSVersion: "TLS1.3", Delay: 3 * time.Second})
	m.Attempt(Attempt{Status: "deferred", Host: ""})
	m.Attempt(Attempt{Status: "bounced", Host: "mx.example.net", TLSVersion: ""})
	m.Reloaded(false)
	body, code := scrape(t, m.Handler(), "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, l := range []string{
		`sealgate_refused_total{reason="sender_not_permitted"} 2`,
		`sealgate_refused_total{reason="auth_failed"} 1`,
		`sealgate_refused_total{reason="not_a_listed_code"} 1`,
		`sealgate_refused_total{reason="no_dkim_keys"} 0`,
		`sealgate_auth_failures_total 1`,
		`sealgate_auth_throttled_total 1`,
		`sealgate_messages_accepted_total 1`,
		`sealgate_accept_duration_seconds_count 1`,
		`sealgate_accept_duration_seconds_bucket{le="0.025"} 1`,
		`sealgate_accept_duration_seconds_bucket{le="0.01"} 0`,
		`sealgate_messages_signed_total{domain="client.example"} 2`,
		`sealgate_messages_sealed_total{domain="relay.example"} 1`,
		`sealgate_tls_sessions_in_total{version="TLS1.3"} 1`,
		`sealgate_tls_sessions_out_total{version="TLS1.3"} 1`,
		`sealgate_tls_sessions_out_total{version="none"} 1`,
		`sealgate_delivery_attempts_total{class="google",status="sent"} 1`,
		`sealgate_delivery_attempts_total{class="unreached",status="deferred"} 1`,
		`sealgate_delivery_attempts_total{class="other",status="bounced"} 1`,
		`sealgate_delivery_delay_seconds_count 1`,
		`sealgate_config_reloads_total{result="failed"} 1`,
	} {
		wantLine(t, body, l)
	}
	if !strings.Contains(body, "go_goroutines") {
		t.Error("no Go runtime metrics")
	}
}

func TestDestinationClass(t *testing.T) {
	for host, want := range map[string]string{
		"":                            "unreached",
		"gmail-smtp-in.l.google.com.": "google",
		"example-com.mail.protection.outlook.com": "microsoft",
		"mta5.am0.yahoodns.net":                   "yahoo",
		"mx.example.net":                          "other",
		"notgoogle.com":                           "other",
	} {
		if got := DestinationClass(host); got != want {
			t.Errorf("DestinationClass(%q) = %q, want %q", host, got, want)
		}
	}
}

type fakeQueue map[string]QueueEntry

func (q fakeQueue) List() ([]string, error) {
	var ids []string
	for id := range q {
		ids = append(ids, id)
	}
	return ids, nil
}

func (q fakeQueue) Entry(id string) (QueueEntry, error) {
	if e, ok := q[id]; ok {
		return e, nil
	}
	return QueueEntry{}, errors.New("gone")
}

func TestQueue(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "failed"), 0o700)
	os.WriteFile(filepath.Join(dir, "failed", "a.msg"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "failed", "b.msg"), nil, 0o600)
	now := time.Now()
	m := New(testReasons)
	m.WatchQueue(fakeQueue{
		"1": {ReceivedAt: now.Add(-time.Minute)},
		"2": {ReceivedAt: now.Add(-2 * time.Hour), Attempts: 3},
		"3": {ReceivedAt: now.Add(-time.Second), Attempts: 1},
	}, dir)
	body, _ := scrape(t, m.Handler(), "/metrics")
	wantLine(t, body, `sealgate_queue_messages{state="queued"} 1`)
	wantLine(t, body, `sealgate_queue_messages{state="deferred"} 2`)
	wantLine(t, body, `sealgate_queue_messages{state="failed"} 2`)
	var age float64
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, "sealgate_queue_oldest_seconds "); ok {
			d, err := time.ParseDuration(v + "s")
			if err != nil {
				t.Fatal(err)
			}
			age = d.Seconds()
		}
	}
	if age < 7200 || age > 7300 {
		t.Errorf("oldest %v seconds, want about 7200", age)
	}
}

func TestResolverCountsFailures(t *testing.T) {
	addr := resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(req)
		switch req.Question[0].Name {
		case "broken.example.":
			resp.Rcode = dns.RcodeServerFailure
		case "missing.example.":
			resp.Rcode = dns.RcodeNameError
		default:
			resp.Answer = append(resp.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{"v=1"}})
		}
		resolvertest.Reply(w, req, resp)
	}))
	r, err := resolver.New(resolver.Config{Server: addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m := New(testReasons)
	cr := m.Resolver(r)
	ctx := context.Background()
	if _, err := cr.LookupTXT(ctx, "ok.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := cr.LookupTXT(ctx, "broken.example"); err == nil {
		t.Fatal("SERVFAIL: no error")
	}
	if _, err := cr.LookupTXT(ctx, "missing.example"); !resolver.IsNotFound(err) {
		t.Fatalf("NXDOMAIN: %v", err)
	}
	body, _ := scrape(t, m.Handler(), "/metrics")
	wantLine(t, body, `sealgate_dns_lookup_errors_total{kind="temporary",type="TXT"} 1`)
	if strings.Contains(body, `kind="notfound"`) || strings.Contains(body, `kind="permanent"`) {
		t.Errorf("NXDOMAIN counted as an error:\n%s", grepSealgate(body))
	}
}

// The counting resolver passes the DNSSEC status on: DANE behind it still sees it.
func TestResolverPassesDNSSECStatus(t *testing.T) {
	addr := resolvertest.StartValidating(t, resolvertest.Validating{Zone: "mx.signed.example. 300 IN A 192.0.2.1\nmx.plain.example. 300 IN A 192.0.2.2\n",
		Insecure: []string{"plain.example."}})
	r, err := resolver.New(resolver.Config{Server: addr, Timeout: 2 * time.Second, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	cr := New(testReasons).Resolver(r)
	if _, ok := cr.(resolver.SecureResolver); !ok {
		t.Fatalf("%T is not a resolver.SecureResolver", cr)
	}
	for name, want := range map[string]bool{"mx.signed.example": true, "mx.plain.example": false} {
		a, err := resolver.LookupSecure(context.Background(), cr, name, dns.TypeA)
		if err != nil || a.Secure != want {
			t.Errorf("%s: Secure %v (err %v), want %v", name, a.Secure, err, want)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	m := New(testReasons)
	fail := errors.New("spool not writable")
	var spoolErr error
	h := m.Handler(
		Check{Name: "spool", Func: func(context.Context) error { return spoolErr }},
		Check{Name: "keys", Func: func(context.Context) error { return nil }},
	)
	if body, code := scrape(t, h, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if body, code := scrape(t, h, "/readyz"); code != 200 || body != "ok spool\nok keys\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	spoolErr = fail
	if body, code := scrape(t, h, "/readyz"); code != 503 || body != "failed spool: spool not writable\nok keys\n" {
		t.Errorf("/readyz with a failing check: %d %q", code, body)
	}
}
