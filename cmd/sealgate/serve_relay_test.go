package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/config"
	"sealgate/internal/tlsrpt"
)

// mxSink is an MX host for the test: a go-smtp server that records each message.
type mxSink struct {
	mu   sync.Mutex
	got  []string // "from rcpt: data"
	from []string // client address of each message
	done chan struct{}
}

type mxSession struct {
	s          *mxSink
	remote     string
	from, rcpt string
}

func (m *mxSession) Reset()        {}
func (m *mxSession) Logout() error { return nil }
func (m *mxSession) Mail(from string, _ *smtp.MailOptions) error {
	m.from = from
	return nil
}
func (m *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	m.rcpt = to
	return nil
}
func (m *mxSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.s.mu.Lock()
	m.s.got = append(m.s.got, m.from+" "+m.rcpt+": "+string(b))
	m.s.from = append(m.s.from, m.remote)
	m.s.mu.Unlock()
	m.s.done <- struct{}{}
	return nil
}

// mxTest is serve delivering to an MX host of the test's: dest.test's MX mx.dest.test
// at 127.0.0.2, a go-smtp server that records what it gets.
type mxTest struct {
	sink        *mxSink
	port        int    // the MX host's port (relay.mx_port)
	zone        []byte // the dev zone with dest.test's MX and address added
	dir, keyDir string
}

// newMXTest starts the MX host (with STARTTLS when tlsCfg is set) and dev keys.
func newMXTest(t *testing.T, tlsCfg *tls.Config) *mxTest {
	t.Helper()
	dir := t.TempDir()
	st, err := prepareDev(filepath.Join(dir, "dev"), devOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sink := &mxSink{done: make(chan struct{}, 1)}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		host, _, _ := net.SplitHostPort(c.Conn().RemoteAddr().String())
		return &mxSession{s: sink, remote: host}, nil
	}))
	srv.Domain = "mx.dest.test"
	srv.TLSConfig = tlsCfg
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	zone, err := os.ReadFile(st.zoneFile)
	if err != nil {
		t.Fatal(err)
	}
	zone = append(zone, "\ndest.test. 300 IN MX 10 mx.dest.test.\nmx.dest.test. 300 IN A 127.0.0.2\n"...)
	return &mxTest{sink: sink, port: l.Addr().(*net.TCPAddr).Port, zone: zone, dir: dir, keyDir: filepath.Join(st.dir, "keys")}
}

// serve runs serve on a smart-host listener trusting 127.0.0.1 for example.test, with
// relay.mx_port set and the rest of the configuration given (relay keys first); it
// returns the configuration, the listener's address and the log so far.
func (m *mxTest) serve(t *testing.T, rest string) (*config.Config, string, func() string) {
	t.Helper()
	cfg := fmt.Sprintf(`hostname: relay.example.test
dir: %[1]s/state
listeners:
  - name: smarthost
    address: "127.0.0.1:0"
    mode: smarthost
    auth: [network]
client_networks:
  - name: partner-mta
    cidrs: ["127.0.0.1/32"]
    may_send_as: ["*@example.test"]
domains:
  - domain: example.test
    keys:
      - selector: ed2026
        key_file: %[2]s/ed2026.example.test.key
arc:
  domain: example.test
  selector: arc2026
  key_file: %[2]s/arc2026.example.test.key
relay:
  mx_port: %[3]d
  mta_sts: false
`, m.dir, m.keyDir, m.port) + rest
	file := filepath.Join(m.dir, "sealgate.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, res, err := loadAndOpen(file)
	if err != nil {
		t.Fatalf("config.LoadAndOpen: %v", err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	s, runner, _, cleanup, err := buildMetered(c, res, log, nil)
	if err != nil {
		t.Fatalf("buildMetered: %v", err)
	}
	t.Cleanup(cleanup)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran; s.Close() })
	return c, s.Addrs()[0].String(), func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.String()
	}
}

// delivered submits one message for b@dest.test and waits for the MX host to get it
// and for serve's attempt line, which it returns.
func (m *mxTest) delivered(t *testing.T, addr string, logs func() string) string {
	t.Helper()
	msg := "From: a@example.test\r\nTo: b@dest.test\r\nSubject: mx\r\n\r\nhello\r\n"
	if err := submitPlain(addr, "a@example.test", "b@dest.test", msg); err != nil {
		t.Fatalf("submit: %v", err)
	}
	select {
	case <-m.sink.done:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery to the MX host")
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		text := logs()
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, `status=sent rcpts=b@dest.test domain=dest.test host=mx.dest.test ip=127.0.0.2`) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivery attempt line in the log:\n%s", text)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A configuration without next_hop or outbox delivers to the recipients' MX hosts,
// looked up in the configured DNS, on relay.mx_port, from relay.source_ip, and logs
// one delivery attempt line.
func TestServeDeliversToMX(t *testing.T) {
	m := newMXTest(t, nil)
	zoneFile := filepath.Join(m.dir, "mx.zone")
	if err := os.WriteFile(zoneFile, m.zone, 0o600); err != nil {
		t.Fatal(err)
	}
	c, addr, logs := m.serve(t, `  source_ip: 127.0.0.3
dns:
  zone_file: `+zoneFile+`
tlsrpt:
  enabled: true
  flush_interval: 1s
`)
	m.delivered(t, addr, logs)
	m.sink.mu.Lock()
	got, from := m.sink.got[0], m.sink.from[0]
	m.sink.mu.Unlock()
	if !strings.HasPrefix(got, "a@example.test b@dest.test: ") || !strings.Contains(got, "DKIM-Signature:") || !strings.HasSuffix(got, "hello\r\n") {
		t.Errorf("MX host got %q", got)
	}
	if from != "127.0.0.3" {
		t.Errorf("connection from %s, want relay.source_ip 127.0.0.3", from)
	}
	// TLS reporting: the session without STARTTLS is counted (no policy found) and saved
	// within tlsrpt.flush_interval.
	for deadline := time.Now().Add(10 * time.Second); ; {
		// The session's day, also when midnight (UTC) passed meanwhile.
		d, err := tlsrpt.ReadDay(c.TLSRPTDir(), time.Now().UTC().Format(tlsrpt.DayFormat))
		if err == nil && len(d.Policies) == 0 {
			d, err = tlsrpt.ReadDay(c.TLSRPTDir(), time.Now().UTC().Add(-time.Hour).Format(tlsrpt.DayFormat))
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Policies) == 1 {
			pc := d.Policies[0]
			if pc.Policy.Type != tlsrpt.PolicyNone || pc.Policy.Domain != "dest.test" || pc.Failed != 1 ||
				pc.Failures[0].ResultType != tlsrpt.ResultSTARTTLSNotSupported || pc.Failures[0].SendingMTAIP != "127.0.0.3" {
				t.Errorf("TLS report counts %+v, failures %+v", pc, pc.Failures[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS report counts saved in %s", c.TLSRPTDir())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// submitPlain sends one message over plain SMTP (the smart-host listener trusts the
// network).
func submitPlain(addr, from, to, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
