package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sealgate/relay"
)

// TestCrashUnderLoad: 8 concurrent authenticated senders; the relay is killed with
// SIGKILL mid-load and restarted on the same directory. Every message that got a
// 250 must be in the spool, header fields and body exactly as the client sent them.
// The next hop is a closed port, so nothing leaves the spool (temporary failures
// are retried with a backoff of minutes).
func TestCrashUnderLoad(t *testing.T) {
	hop := closedPort(t)
	dir := t.TempDir()
	r := startRelay(t, dir, "--next-hop", hop)
	accepted := crashLoad(t, r)

	// Every 250'd id is committed on disk (in the journal, or in its own file once
	// its first attempt failed): open the spool as the restarted relay will.
	sp, err := relay.OpenSpool(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatalf("open the spool after SIGKILL: %v", err)
	}
	for id := range accepted {
		_, rc, err := sp.Open(id)
		if err != nil {
			t.Errorf("message %s answered 250 but is not in the spool after SIGKILL: %v", id, err)
			continue
		}
		rc.Close()
	}
	sp.Close()

	// Restart on the same directory; it must come up (spool lock, recovery) and work.
	r.restart()
	c := dialAuth(t, r)
	stage, rp := c.send(devLogin, []string{"after-restart@partner.example"}, msg("From: demo@example.test\n"+stdTail, "after restart\n"))
	if stage != "END" || rp.Code != 250 {
		t.Errorf("after restart: want 250, got %s at %s", rp, stage)
	}
	c.quit()
	r.stop()

	sp, err = relay.OpenSpool(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatalf("open the spool after the second run: %v", err)
	}
	defer sp.Close()
	if ents, _ := os.ReadDir(filepath.Join(dir, "spool", "corrupt")); len(ents) > 0 {
		t.Errorf("spool has corrupt entries after the crash: %v", ents)
	}
	for id, s := range accepted {
		env, rc, err := sp.Open(id)
		if err != nil {
			t.Errorf("message %s answered 250 is not in the spool: %v", id, err)
			continue
		}
		stored, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Errorf("read %s: %v", id, err)
			continue
		}
		if env.From != devLogin || len(env.To) != 1 || env.To[0] != s.rcpt {
			t.Errorf("%s: envelope from=%q to=%q, want %q %q", id, env.From, env.To, devLogin, s.rcpt)
		}
		hdr, body, ok := bytes.Cut(stored, []byte("\r\n\r\n"))
		if !ok {
			t.Errorf("%s: stored message has no header/body separator", id)
			continue
		}
		if !bytes.Equal(body, s.body) {
			t.Errorf("%s: stored body (%d bytes) differs from the body sent (%d bytes); first difference at %d",
				id, len(body), len(s.body), firstDiff(body, s.body))
		}
		// The relay prepends Received, DKIM-Signature and ARC-*; it must not change
		// the client's fields (all present: no Date/Message-ID added).
		if !bytes.HasSuffix(append(hdr, "\r\n"...), s.header) {
			t.Errorf("%s: stored header does not end with the client's header fields unchanged\nsent:\n%s\nstored:\n%s", id, s.header, hdr)
		}
		if len(headerFields(stored, "DKIM-Signature")) != 2 || len(headerFields(stored, "ARC-Seal")) != 1 {
			t.Errorf("%s: stored message is not signed and sealed", id)
		}
	}
}

// TestCrashUnderLoadOutboxExactlyOnce: the same load and SIGKILL, delivering to
// the dev outbox all the while, then a restart that drains the queue. SMTP
// allows a crash to repeat a delivery (RFC 5321 §6.1), but the outbox is local
// and can be exact: every message answered 250 is in the outbox once, as
// <queue id>.eml with the content sent, and no file in the outbox (temporary
// ones included) holds a Message-ID that another file holds too.
func TestCrashUnderLoadOutboxExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	r := startRelay(t, dir)
	accepted := crashLoad(t, r)
	outbox := filepath.Join(dir, "outbox")
	before, _ := os.ReadDir(outbox)
	t.Logf("%d files in the outbox at the kill", len(before))

	r.restart()
	for id := range accepted {
		r.waitOutbox(t, id)
	}
	r.stop()
	// Messages still queued (committed at the kill but never answered 250, not
	// yet redelivered) may have a temporary file from the killed attempt: their
	// next delivery removes it. Any other temporary file is a leftover copy.
	sp, err := relay.OpenSpool(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	queued, err := sp.List()
	sp.Close()
	if err != nil {
		t.Fatal(err)
	}

	ents, err := os.ReadDir(outbox)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]string{} // Message-ID -> outbox files holding it
	for _, e := range ents {
		if id, temp := strings.CutPrefix(e.Name(), "."); temp {
			id, _, _ = strings.Cut(id, ".")
			if slices.Contains(queued, id) {
				continue
			}
			t.Errorf("temporary file %s left in the outbox, and its message is no longer queued", e.Name())
		}
		b, err := os.ReadFile(filepath.Join(outbox, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		mid := ""
		if f := headerFields(b, "Message-ID"); len(f) == 1 {
			mid = f[0]
		}
		files[mid] = append(files[mid], e.Name())
	}
	for mid, names := range files {
		if len(names) > 1 || mid == "" {
			t.Errorf("Message-ID %q is in %d outbox files: %q", mid, len(names), names)
		}
	}
	dups := 0
	for id, s := range accepted {
		mid := headerFields(append(s.header, "\r\n"...), "Message-ID")[0]
		names := files[mid]
		if len(names) != 1 || names[0] != id+".eml" {
			dups++
			t.Errorf("message %s (Message-ID %s) answered 250: outbox files %q, want exactly %s.eml", id, mid, names, id)
			continue
		}
		b, err := os.ReadFile(filepath.Join(outbox, names[0]))
		if err != nil {
			t.Fatal(err)
		}
		_, body, _ := bytes.Cut(b, []byte("\r\n\r\n"))
		if !bytes.Equal(body, s.body) {
			t.Errorf("%s: outbox body (%d bytes) differs from the body sent (%d bytes)", id, len(body), len(s.body))
		}
	}
	t.Logf("%d messages answered 250, %d outbox files, %d duplicated or missing", len(accepted), len(ents), dups)
}

// sentMessage is what a sender of crashLoad sent and got 250 for.
type sentMessage struct {
	header, body []byte
	rcpt         string
}

// crashLoad runs 8 concurrent authenticated senders against r for 1.5 s, then
// kills r with SIGKILL while they still send, and returns what was answered 250,
// by queue id. Senders stop at their first error and do not retry, so every
// message (and Message-ID) is submitted once.
func crashLoad(t *testing.T, r *relayProc) map[string]sentMessage {
	t.Helper()
	var (
		mu       sync.Mutex
		accepted = map[string]sentMessage{}
		stop     atomic.Bool // workers finish
		killing  atomic.Bool // errors from now on are the kill's doing
		wg       sync.WaitGroup
		errsMu   sync.Mutex
		errs     []string
	)
	const workers = 8
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for n := 0; !stop.Load(); {
				c, err := loadSession(t, r, w%2 == 1)
				if err != nil {
					if !killing.Load() {
						errsMu.Lock()
						errs = append(errs, fmt.Sprintf("worker %d: %v", w, err))
						errsMu.Unlock()
					}
					return
				}
				for i := 0; i < 20 && !stop.Load(); i++ {
					n++
					rcpt := fmt.Sprintf("rcpt%d-%d@partner.example", w, n)
					hdr, body := crashMessage(rng, w, n, rcpt)
					id, err := c.sendQuiet(devLogin, rcpt, append(append([]byte{}, hdr...), append([]byte("\r\n"), body...)...))
					if err != nil {
						c.conn.Close()
						if !killing.Load() {
							errsMu.Lock()
							errs = append(errs, fmt.Sprintf("worker %d: %v", w, err))
							errsMu.Unlock()
						}
						return // the relay is gone (or broken): stop this worker
					}
					mu.Lock()
					accepted[id] = sentMessage{hdr, body, rcpt}
					mu.Unlock()
				}
				c.conn.Close()
			}
		}()
	}

	// Let the load run, then kill without warning while it still runs.
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	n := len(accepted)
	mu.Unlock()
	killing.Store(true)
	r.kill()
	stop.Store(true)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("senders did not notice the killed relay within 20 s")
	}
	if len(errs) > 0 {
		t.Errorf("errors before the kill: %q", errs)
	}
	t.Logf("%d messages answered 250 before SIGKILL (%d at the moment of the kill)", len(accepted), n)
	if len(accepted) < 8 {
		t.Fatalf("only %d messages accepted before the kill: no real load; relay log:\n%s", len(accepted), r.logs)
	}

	return accepted
}

// closedPort returns 127.0.0.1:1 when nothing listens there, else another port
// that was just released.
func closedPort(t *testing.T) string {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:1", time.Second); err != nil {
		return "127.0.0.1:1"
	} else {
		c.Close()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// loadSession opens an authenticated session on the STARTTLS or the implicit-TLS port.
func loadSession(t testing.TB, r *relayProc, implicit bool) (*quietClient, error) {
	c := &quietClient{}
	var err error
	if implicit {
		c.smtpClient, err = dialErr(t, r.Submissions, dialOpts{implicitTLS: true})
	} else {
		c.smtpClient, err = dialErr(t, r.Submission, dialOpts{})
	}
	if err != nil {
		return nil, err
	}
	if err := c.step("EHLO client.e2e.test", 250); err != nil {
		return nil, err
	}
	if !implicit {
		if err := c.step("STARTTLS", 220); err != nil {
			return nil, err
		}
		tc := tlsClient(c.smtpClient)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		c.useTLS(tc)
		if err := c.step("EHLO client.e2e.test", 250); err != nil {
			return nil, err
		}
	}
	creds := "AUTH PLAIN " + b64("\x00"+devLogin+"\x00"+r.password)
	if err := c.step(creds, 235); err != nil {
		return nil, err
	}
	return c, nil
}

// quietClient returns errors instead of failing the test (it runs in goroutines)
// and keeps no transcript.
type quietClient struct{ *smtpClient }

func (c *quietClient) step(line string, want int) error {
	if err := c.write([]byte(line + "\r\n")); err != nil {
		return err
	}
	r, err := c.readReply()
	c.trace.Reset()
	if err != nil {
		return err
	}
	if r.Code != want {
		return fmt.Errorf("%s: want %d, got %s", strings.Fields(line)[0], want, r)
	}
	return nil
}

func (c *quietClient) sendQuiet(from, rcpt string, m []byte) (string, error) {
	if err := c.step("MAIL FROM:<"+from+">", 250); err != nil {
		return "", err
	}
	if err := c.step("RCPT TO:<"+rcpt+">", 250); err != nil {
		return "", err
	}
	if err := c.step("DATA", 354); err != nil {
		return "", err
	}
	if err := c.write(append(dotStuff(m), ".\r\n"...)); err != nil {
		return "", err
	}
	r, err := c.readReply()
	c.trace.Reset()
	if err != nil {
		return "", err
	}
	mm := queuedRE.FindStringSubmatch(r.Text())
	if r.Code != 250 || mm == nil {
		return "", fmt.Errorf("end of DATA: want 250 OK queued as <id>, got %s", r)
	}
	return mm[1], nil
}

// crashMessage returns a header block (fields with CRLF, no blank line) and a body
// of 1-40 KB with lines that need dot-stuffing, trailing spaces and long lines.
func crashMessage(rng *rand.Rand, w, n int, rcpt string) (hdr, body []byte) {
	hdr = []byte(fmt.Sprintf("From: Demo <%s>\r\nTo: %s\r\nSubject: crash test %d-%d\r\n"+
		"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <crash-%d-%d@e2e.test>\r\n"+
		"X-Folded: first\r\n\tsecond  \r\n", devLogin, rcpt, w, n, w, n))
	var b bytes.Buffer
	size := 1024 + rng.IntN(40*1024)
	for i := 0; b.Len() < size; i++ {
		switch rng.IntN(8) {
		case 0:
			b.WriteString(".leading dot line\r\n")
		case 1:
			b.WriteString("..two dots\r\n")
		case 2:
			b.WriteString("trailing spaces and tab \t \r\n")
		case 3:
			b.WriteString("\r\n")
		default:
			l := 1 + rng.IntN(900)
			for j := 0; j < l; j++ {
				b.WriteByte(byte('!' + rng.IntN(94)))
			}
			b.WriteString("\r\n")
		}
	}
	fmt.Fprintf(&b, "end of message %d-%d\r\n", w, n)
	return hdr, b.Bytes()
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
