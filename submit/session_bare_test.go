package submit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/internal/smtptest"
	"sealgate/relay"
	"sealgate/sign"
)

// bareServer is an in-process server with one plain-text smart-host listener that trusts
// 127.0.0.0/8, so a raw client can send any bytes after DATA.
type bareServer struct {
	addr     string
	spool    *relay.Spool
	spoolDir string
	files    map[string]bool // regular files in the spool before the test
	log      *lockedLog
}

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// bareDataTimeout is well above the few seconds the tests wait for a reply, so a reply that
// comes only at the DATA timeout fails them.
const bareDataTimeout = 20 * time.Second

// startBareServer starts the server; commandTimeout 0 leaves go-smtp without a read timeout.
func startBareServer(t *testing.T, commandTimeout time.Duration) *bareServer {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	spool, err := relay.OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	logs := &lockedLog{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	srv := &Server{
		Hostname:  "relay.example.test",
		Listeners: []Listener{{Name: "smarthost", Address: "127.0.0.1:0", Mode: ModeSmartHost, Network: true}},
		Limits: Limits{MaxMessageBytes: 4 << 20, MaxRecipients: 10, MaxConnections: 10,
			CommandTimeout: commandTimeout, DataTimeout: bareDataTimeout},
		Networks: []NetworkIdentity{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Identity: NewIdentity("mta", KindClientNetwork, MustParsePatterns("*@client.example"))}},
		Pipeline: &Pipeline{Hostname: "relay.example.test", AuthServID: "relay.example.test", Spool: spool, Log: log,
			KeyRing: mustKeyRing(sign.DomainKeys{Domain: "client.example", Keys: []sign.Key{{Selector: "ed", Signer: edKey}}})},
		Log: log,
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	s := &bareServer{addr: srv.Addrs()[0].String(), spool: spool, spoolDir: dir, log: logs}
	s.files = s.spoolFiles(t)
	return s
}

func (s *bareServer) spoolFiles(t *testing.T) map[string]bool {
	t.Helper()
	files := map[string]bool{}
	err := filepath.WalkDir(s.spoolDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files[p] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// assertNothingSpooled checks that no message was queued and no file was left behind.
func (s *bareServer) assertNothingSpooled(t *testing.T) {
	t.Helper()
	if ids, err := s.spool.List(); err != nil || len(ids) != 0 {
		t.Errorf("spool holds %v (%v), want nothing", ids, err)
	}
	for f := range s.spoolFiles(t) {
		if !s.files[f] {
			t.Errorf("file left in the spool: %s", f)
		}
	}
}

// rawClient speaks SMTP byte by byte (internal/smtptest).
type rawClient = smtptest.Client

// dialRaw connects to address, reads the greeting and says EHLO.
func dialRaw(t *testing.T, address string) *rawClient {
	t.Helper()
	c := smtptest.Dial(t, address)
	c.Greet("mta.client.example")
	return c
}

// startData runs MAIL, RCPT and DATA on c, up to the 354.
func startData(c *rawClient) {
	c.T.Helper()
	for _, step := range []struct{ line, want string }{
		{"MAIL FROM:<billing@client.example>", "250 "},
		{"RCPT TO:<ops@partner.example>", "250 "},
		{"DATA", "354 "},
	} {
		if got := c.Cmd(step.line); !strings.HasPrefix(got, step.want) {
			c.T.Fatalf("%s: %q", step.line, got)
		}
	}
}

const bareHeader = "From: billing@client.example\r\nTo: ops@partner.example\r\nSubject: t\r\n" +
	"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <t@client.example>\r\n"

const smuggled = "MAIL FROM:<billing@client.example>\r\nRCPT TO:<victim@partner.example>\r\nDATA\r\n" +
	"From: billing@client.example\r\nTo: victim@partner.example\r\nSubject: SMUGGLED\r\n\r\nsmuggled\r\n.\r\n"

// TestDataBareLineEndHangsUp checks that DATA holding a bare CR or LF is refused with 550
// 5.6.0 as soon as the bytes arrive, that the connection is then closed, and that nothing is
// spooled, including for CR CR LF . CR LF, in which go-smtp does not see the end of the data.
func TestDataBareLineEndHangsUp(t *testing.T) {
	cases := []struct{ name, payload string }{
		// The client waits for a reply that go-smtp alone would never let us send.
		{"CR CR LF . CR LF in body", bareHeader + "\r\nline one\r\r\n.\r\n"},
		{"CR CR LF . CR LF in body, then smuggled commands", bareHeader + "\r\nline one\r\r\n.\r\n" + smuggled},
		{"CR CR LF . CR LF ends header", bareHeader + "X-Last: x\r\r\n.\r\n"},
		{"bare LF in body", bareHeader + "\r\nline one\nline two\r\n.\r\n"},
		{"bare LF in header", bareHeader + "X-Injected: a\nX-More: b\r\n\r\nbody\r\n.\r\n"},
		{"bare CR in body", bareHeader + "\r\nline one\rline two\r\n.\r\n"},
		// A malformed header is refused too, but the rest is still read through the check,
		// so CR CR LF . CR LF after it does not leave the client waiting.
		{"malformed header, then CR CR LF . CR LF", "this is not a header field\r\n\r\nbody\r\r\n.\r\n"},
		// The client is still sending when we refuse: the reply must not be lost to a RST.
		{"bare LF early in a long body", bareHeader + "\r\nline one\n" + strings.Repeat(strings.Repeat("a", 78)+"\r\n", 12000) + ".\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case waits a second or two, mostly for hangUp's linger
			s := startBareServer(t, bareDataTimeout)
			c := dialRaw(t, s.addr)
			startData(c)
			go func() {
				// In its own goroutine: the server stops reading the long body part way.
				c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c.Conn, tc.payload)
			}()
			want := "550 5.6.0 Message contains a bare CR or LF; lines must end in CRLF (refused to prevent SMTP smuggling); closing connection"
			if got := c.Reply(5 * time.Second); got != want {
				t.Fatalf("reply to the payload:\n got %q\nwant %q", got, want)
			}
			c.AssertClosed()
			s.assertNothingSpooled(t)
			logs := s.log.String()
			if !strings.Contains(logs, "closing connection: bare CR/LF in") {
				t.Errorf("refusal not logged:\n%s", logs)
			}
			for _, leak := range []string{"line one", "SMUGGLED", "X-Injected", "error handling"} {
				if strings.Contains(logs, leak) {
					t.Errorf("log contains %q:\n%s", leak, logs)
				}
			}
		})
	}
}

// TestDataBareLineEndPipelined checks that commands pipelined after a refused DATA, which
// go-smtp already holds in its buffer when we hang up, never start a transaction, even when
// go-smtp has no read timeout and so does not notice the closed connection before it parses
// them.
func TestDataBareLineEndPipelined(t *testing.T) {
	s := startBareServer(t, 0)
	c := dialRaw(t, s.addr)
	startData(c)
	c.Write(bareHeader + "\r\nline one\nline two\r\n.\r\n" + smuggled)
	if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, "550 5.6.0 ") {
		t.Fatalf("reply to the payload: %q", got)
	}
	c.AssertClosed()
	s.assertNothingSpooled(t)
}

// TestBDATBareLineEnd checks that under BDAT, whose chunk sizes leave no doubt where the
// message ends, a bare LF is refused with 550 5.6.0 and the session goes on.
func TestBDATBareLineEnd(t *testing.T) {
	s := startBareServer(t, bareDataTimeout)
	c := dialRaw(t, s.addr)
	for _, step := range []string{"MAIL FROM:<billing@client.example>", "RCPT TO:<ops@partner.example>"} {
		if got := c.Cmd(step); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("%s: %q", step, got)
		}
	}
	msg := bareHeader + "\r\nline one\nline two\r\n"
	c.Write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg))
	if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, "550 5.6.0 ") || strings.Contains(got, "closing") {
		t.Fatalf("reply to BDAT with a bare LF: %q, want 550 5.6.0 without closing", got)
	}
	if got := c.Cmd("NOOP"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("NOOP after the refusal: %q", got)
	}
	s.assertNothingSpooled(t)
}

// TestDataCleanMessages is the control: clean messages are queued and the session stays
// usable, also when the client pauses longer than dataPoll right after a CR, so that the
// CR ends one chunk and its LF starts the next.
func TestDataCleanMessages(t *testing.T) {
	s := startBareServer(t, bareDataTimeout)
	c := dialRaw(t, s.addr)
	bodies := []string{"first message\r\n", "second message\r\nline two\r\n"}
	for i, body := range bodies {
		startData(c)
		payload := bareHeader + "\r\n" + body + ".\r\n"
		if i == 1 {
			cut := strings.Index(payload, "message\r") + len("message\r")
			c.Write(payload[:cut])
			time.Sleep(dataPoll + dataPoll/2) // the stimulus: a client pausing mid-line end
			payload = payload[cut:]
		}
		c.Write(payload)
		if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, "250 2.0.0 OK queued as ") {
			t.Fatalf("message %d: %q", i+1, got)
		}
	}
	if got := c.Cmd("NOOP"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("NOOP: %q", got)
	}
	ids, err := s.spool.List()
	if err != nil || len(ids) != len(bodies) {
		t.Fatalf("spooled %v (%v), want %d messages", ids, err, len(bodies))
	}
	var got []string
	for _, id := range ids {
		_, rc, err := s.spool.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		_, body, _ := bytes.Cut(b, []byte("\r\n\r\n"))
		got = append(got, string(body))
	}
	for _, want := range bodies {
		if !strings.Contains(strings.Join(got, "|"), want) {
			t.Errorf("no spooled body is %q; got %q", want, got)
		}
	}
}
