package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/smtpclient"
)

// received is one transaction the test next hop accepted.
type received struct {
	from   string
	size   int64
	envID  string
	to     []string
	orcpts []string
	data   []byte
	utf8   bool   // MAIL had SMTPUTF8
	body   string // MAIL's BODY
}

// nextHopServer is a go-smtp server on 127.0.0.1:0 acting as the next hop.
// Recipients starting with "temp" get 451, with "perm" 550. dataReply, if set,
// decides the reply to each DATA (counted from 1).
type nextHopServer struct {
	addr string

	mu        sync.Mutex
	got       []received
	dataCalls int
	dataReply func(n int) error
	arrived   chan received
	sessions  int // SMTP sessions opened (connections that sent EHLO)
	conns     []net.Conn
	srv       *smtp.Server
	utf8      bool // offer SMTPUTF8
}

// closeSessions drops every session from the server's side.
func (h *nextHopServer) closeSessions() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

func startNextHop(t *testing.T) *nextHopServer {
	t.Helper()
	h := &nextHopServer{arrived: make(chan received, 100)}
	h.listen(t, "127.0.0.1:0")
	return h
}

// listen starts a go-smtp server for h on addr, stopped when the test ends.
func (h *nextHopServer) listen(t *testing.T, addr string) {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		h.mu.Lock()
		h.sessions++
		h.conns = append(h.conns, c.Conn())
		h.mu.Unlock()
		return &hopSession{h: h}, nil
	}))
	srv.Domain = "nexthop.test"
	srv.MaxMessageBytes = 1 << 20
	srv.EnableDSN = true
	srv.EnableSMTPUTF8 = h.utf8
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String() // listening already: connections queue until Serve accepts
	h.srv = srv
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// restart stops the server (its listener and every session) and starts a new
// one on the same address, as a next hop restarting does.
func (h *nextHopServer) restart(t *testing.T) {
	t.Helper()
	h.srv.Close()
	h.mu.Lock()
	h.conns = nil
	h.mu.Unlock()
	h.listen(t, h.addr)
}

func (h *nextHopServer) transactions() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

type hopSession struct {
	h   *nextHopServer
	cur received
}

func (s *hopSession) Reset()        { s.cur = received{} }
func (s *hopSession) Logout() error { return nil }
func (s *hopSession) Mail(from string, opts *smtp.MailOptions) error {
	s.cur = received{from: from, size: opts.Size, envID: opts.EnvelopeID, utf8: opts.UTF8, body: string(opts.Body)}
	return nil
}
func (s *hopSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "temp"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"}
	case strings.HasPrefix(to, "perm"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.cur.to = append(s.cur.to, to)
	s.cur.orcpts = append(s.cur.orcpts, string(opts.OriginalRecipientType)+";"+opts.OriginalRecipient)
	return nil
}
func (s *hopSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.h.mu.Lock()
	s.h.dataCalls++
	n, reply := s.h.dataCalls, s.h.dataReply
	s.h.mu.Unlock()
	if reply != nil {
		if err := reply(n); err != nil {
			return err
		}
	}
	s.cur.data = b
	s.h.mu.Lock()
	s.h.got = append(s.h.got, s.cur)
	s.h.mu.Unlock()
	s.h.arrived <- s.cur
	return nil
}

const testMessage = "From: a@example.com\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\n\xc3\xa9 8-bit\r\nend.\r\n"

// nextHop is a Transport relaying everything to h as its smart host (plain SMTP: h
// offers no STARTTLS).
func nextHop(h *nextHopServer) *Transport {
	return smartHost(h.addr, 10*time.Second)
}

func smartHost(addr string, timeout time.Duration) *Transport {
	return &Transport{Default: Route{NextHop: addr}, HeloName: "sealgate.test", Timeout: timeout}
}

// keptSessions returns the sessions t keeps between messages.
func keptSessions(t *Transport) []*smtpclient.Client {
	p := t.sessions()
	p.mu.Lock()
	defer p.mu.Unlock()
	var cs []*smtpclient.Client
	for _, list := range p.idle {
		for _, ic := range list {
			cs = append(cs, ic.c)
		}
	}
	return cs
}

func TestSmartHostByteExact(t *testing.T) {
	h := startNextHop(t)
	env := &Envelope{ID: "q1", From: "a@example.com", To: []string{"b@example.net", "c@example.net"},
		EnvID: "id+1", ORcpt: []string{"rfc822;b@example.net", ""}, Size: int64(len(testMessage))}
	if err := nextHop(h).Deliver(context.Background(), env, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	got := h.transactions()
	if len(got) != 1 {
		t.Fatalf("%d transactions", len(got))
	}
	r := got[0]
	if string(r.data) != testMessage {
		t.Errorf("data = %q, want %q", r.data, testMessage)
	}
	if r.from != env.From || !slices.Equal(r.to, env.To) || r.size != env.Size || r.envID != "id+1" {
		t.Errorf("envelope = %+v", r)
	}
	if !strings.EqualFold(r.orcpts[0], "rfc822;b@example.net") {
		t.Errorf("ORCPT = %q", r.orcpts[0])
	}
}

func TestSmartHostAddsFinalCRLF(t *testing.T) {
	h := startNextHop(t)
	env := &Envelope{ID: "q1", From: "", To: []string{"b@example.net"}}
	if err := nextHop(h).Deliver(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nno newline")); err != nil {
		t.Fatal(err)
	}
	if got := h.transactions(); len(got) != 1 || string(got[0].data) != "Subject: x\r\n\r\nno newline\r\n" || got[0].from != "" {
		t.Errorf("got %+v", got)
	}
}

func TestSmartHostRefusesBareLineEnds(t *testing.T) {
	h := startNextHop(t)
	for _, msg := range []string{"Subject: x\r\n\r\nbare\nLF\r\n", "Subject: x\r\n\r\nbare\rCR\r\n"} {
		env := &Envelope{ID: "q1", From: "a@x.test", To: []string{"b@y.test"}}
		err := nextHop(h).Deliver(context.Background(), env, strings.NewReader(msg))
		var re *RecipientsError
		if !errors.As(err, &re) || len(re.Accepted) != 0 || len(re.Failed) != 1 ||
			!IsPermanent(re.Failed[0].Err) || !errors.Is(re.Failed[0].Err, smtpclient.ErrBareLineEnd) {
			t.Errorf("%q: err = %v, want the recipient failed permanently for a bare line end", msg, err)
		}
	}
	// The server must not have accepted anything; a good message afterwards proves it is alive.
	env := &Envelope{ID: "q2", From: "a@x.test", To: []string{"b@y.test"}}
	if err := nextHop(h).Deliver(context.Background(), env, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	if got := h.transactions(); len(got) != 1 {
		t.Errorf("%d transactions, want only the good one", len(got))
	}
}

func TestSmartHostReplies(t *testing.T) {
	h := startNextHop(t)
	env := &Envelope{ID: "q1", From: "a@x.test", To: []string{"ok1@y.test", "perm@y.test", "temp@y.test", "ok2@y.test"}}
	err := nextHop(h).Deliver(context.Background(), env, strings.NewReader(testMessage))
	var rerr *RecipientsError
	if !errors.As(err, &rerr) {
		t.Fatalf("err = %v, want *RecipientsError", err)
	}
	if !slices.Equal(rerr.Accepted, []string{"ok1@y.test", "ok2@y.test"}) || len(rerr.Failed) != 2 {
		t.Fatalf("accepted %v failed %v", rerr.Accepted, rerr.Failed)
	}
	if f := rerr.Failed[0]; f.Rcpt != "perm@y.test" || !IsPermanent(f.Err) || !strings.Contains(f.Err.Error(), "550") {
		t.Errorf("failed[0] = %+v", f)
	}
	if f := rerr.Failed[1]; f.Rcpt != "temp@y.test" || IsPermanent(f.Err) || !strings.Contains(f.Err.Error(), "451") {
		t.Errorf("failed[1] = %+v", f)
	}
	if IsPermanent(err) {
		t.Error("partial delivery reported as permanent")
	}

	// All recipients failing permanently makes the message fail permanently, without DATA.
	env = &Envelope{ID: "q2", From: "a@x.test", To: []string{"perm1@y.test", "perm2@y.test"}}
	if err := nextHop(h).Deliver(context.Background(), env, strings.NewReader(testMessage)); !IsPermanent(err) {
		t.Errorf("all recipients 550: err = %v, want permanent", err)
	}

	for _, tc := range []struct {
		code      int
		permanent bool
	}{{451, false}, {554, true}} {
		h.mu.Lock()
		h.dataReply = func(int) error { return &smtp.SMTPError{Code: tc.code, Message: "data rejected"} }
		h.mu.Unlock()
		env := &Envelope{ID: "q3", From: "a@x.test", To: []string{"b@y.test"}}
		err := nextHop(h).Deliver(context.Background(), env, strings.NewReader(testMessage))
		if err == nil || IsPermanent(err) != tc.permanent {
			t.Errorf("DATA %d: err = %v, want permanent=%v", tc.code, err, tc.permanent)
		}
	}

	// Nobody listening: temporary.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	err = smartHost(addr, 5*time.Second).Deliver(context.Background(), env, strings.NewReader(testMessage))
	if err == nil || IsPermanent(err) {
		t.Errorf("connection refused: err = %v, want temporary", err)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// runRunner starts r.Run and stops it at the end of the test.
func runRunner(t *testing.T, r *Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// waitFor polls cond until it holds; it fails the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func spoolEmpty(s *Spool) func() bool {
	return func() bool { ids, err := s.List(); return err == nil && len(ids) == 0 }
}

func TestRunnerRetriesTemporaryFailure(t *testing.T) {
	h := startNextHop(t)
	h.dataReply = func(n int) error {
		if n == 1 {
			return &smtp.SMTPError{Code: 451, Message: "try again"}
		}
		return nil
	}
	s := testSpool(t, t.TempDir())
	runRunner(t, &Runner{Spool: s, Deliverer: nextHop(h), Logger: quietLogger(),
		Backoff: []time.Duration{time.Millisecond}, PollInterval: time.Hour})

	env := &Envelope{From: "a@x.test", To: []string{"b@y.test"}}
	id := commit(t, s, env, "Subject: retry\r\n", "body\r\n")
	got := <-h.arrived
	if string(got.data) != "Subject: retry\r\n\r\nbody\r\n" {
		t.Errorf("data = %q", got.data)
	}
	waitFor(t, "removal after delivery", spoolEmpty(s))
	h.mu.Lock()
	calls := h.dataCalls
	h.mu.Unlock()
	if calls != 2 {
		t.Errorf("%d DATA attempts, want 2", calls)
	}
	// The runner removes the message after delivery; wait until no file of it is left.
	waitFor(t, "body removal", func() bool { return len(filesOf(t, s.dir, id)) == 0 })
}

func TestRunnerPartialThenRetryRemaining(t *testing.T) {
	h := startNextHop(t)
	s := testSpool(t, t.TempDir())
	// temp@ is deferred on every attempt; use a long backoff and check the stored state.
	runRunner(t, &Runner{Spool: s, Deliverer: nextHop(h), Logger: quietLogger(),
		Backoff: []time.Duration{time.Hour}, PollInterval: time.Hour})

	env := &Envelope{From: "a@x.test", To: []string{"ok@y.test", "perm@y.test", "temp@y.test"},
		Notify: []string{"", "FAILURE", "DELAY"}, ORcpt: []string{"", "rfc822;perm@y.test", "rfc822;temp@y.test"}}
	id := commit(t, s, env, testHeader, "body\r\n")
	if got := <-h.arrived; !slices.Equal(got.to, []string{"ok@y.test"}) {
		t.Errorf("delivered to %v", got.to)
	}
	var stored *Envelope
	waitFor(t, "deferral recorded", func() bool {
		e, err := s.Envelope(id)
		stored = e
		return err == nil && e.Attempts == 1
	})
	if !slices.Equal(stored.To, []string{"temp@y.test"}) || !slices.Equal(stored.Notify, []string{"DELAY"}) ||
		!slices.Equal(stored.ORcpt, []string{"rfc822;temp@y.test"}) {
		t.Errorf("remaining recipients %v %v %v", stored.To, stored.Notify, stored.ORcpt)
	}
	if len(stored.Failed) != 1 || stored.Failed[0].Rcpt != "perm@y.test" || stored.Failed[0].Notify != "FAILURE" ||
		!strings.Contains(stored.Failed[0].Error, "550") {
		t.Errorf("failed = %+v", stored.Failed)
	}
	if stored.NextAttempt.Before(time.Now().Add(50*time.Minute)) || !strings.Contains(stored.LastError, "451") {
		t.Errorf("next attempt %v, last error %q", stored.NextAttempt, stored.LastError)
	}
}

func TestRunnerPermanentFailure(t *testing.T) {
	h := startNextHop(t)
	h.dataReply = func(int) error { return &smtp.SMTPError{Code: 554, Message: "rejected"} }
	s := testSpool(t, t.TempDir())
	runRunner(t, &Runner{Spool: s, Deliverer: nextHop(h), Logger: quietLogger(), PollInterval: time.Hour})

	id := commit(t, s, &Envelope{From: "a@x.test", To: []string{"b@y.test", "c@y.test"}}, testHeader, "body\r\n")
	waitFor(t, "move to failed/", func() bool {
		_, err := os.Stat(filepath.Join(s.dir, "failed", id+".msg"))
		return err == nil
	})
	env, _, err := s.readMeta(dirFailed, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(env.To) != 0 || len(env.Failed) != 2 || !strings.Contains(env.Failed[0].Error, "554") {
		t.Errorf("failed envelope = %+v", env)
	}
	// A journal message is written to failed/ before its done record: it
	// leaves the queue just after.
	waitFor(t, "the queue empty", spoolEmpty(s))
}

// funcDeliverer adapts a function to Deliverer.
type funcDeliverer func(ctx context.Context, env *Envelope, msg io.Reader) error

func (f funcDeliverer) Deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	return f(ctx, env, msg)
}

func TestRunnerGivesUpAfterMaxAge(t *testing.T) {
	s := testSpool(t, t.TempDir())
	runRunner(t, &Runner{Spool: s, Logger: quietLogger(), MaxAge: time.Hour, PollInterval: time.Hour,
		Deliverer: funcDeliverer(func(context.Context, *Envelope, io.Reader) error {
			return errors.New("connection refused")
		})})
	old := time.Now().Add(-2 * time.Hour)
	id := commit(t, s, &Envelope{From: "a@x.test", To: []string{"b@y.test"}, ReceivedAt: old}, testHeader, "body\r\n")
	waitFor(t, "move to failed/", func() bool {
		_, err := os.Stat(filepath.Join(s.dir, "failed", id+".msg"))
		return err == nil
	})
	env, _, err := s.readMeta(dirFailed, id)
	if err != nil {
		t.Fatal(err)
	}
	if env.Attempts != 1 || len(env.Failed) != 1 || !strings.Contains(env.Failed[0].Error, "connection refused") {
		t.Errorf("failed envelope = %+v", env)
	}
}

func TestRunnerPicksUpExistingAndBoundsWorkers(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir)
	const n = 12
	for i := 0; i < n; i++ {
		commit(t, s, &Envelope{From: "a@x.test", To: []string{"b@y.test"}}, testHeader, "body\r\n")
	}
	s.Close()
	s = testSpool(t, dir) // a restart: these are found by the scan, not by Notify

	var mu sync.Mutex
	active, peak, delivered := 0, 0, 0
	release := make(chan struct{})
	runRunner(t, &Runner{Spool: s, Logger: quietLogger(), Workers: 3, PollInterval: time.Hour,
		Deliverer: funcDeliverer(func(ctx context.Context, env *Envelope, msg io.Reader) error {
			mu.Lock()
			active++
			peak = max(peak, active)
			mu.Unlock()
			<-release
			mu.Lock()
			active--
			delivered++
			mu.Unlock()
			return nil
		})})
	waitFor(t, "3 deliveries in flight", func() bool { mu.Lock(); defer mu.Unlock(); return active == 3 })
	close(release)
	waitFor(t, "all delivered", spoolEmpty(s))
	mu.Lock()
	defer mu.Unlock()
	if peak != 3 || delivered != n {
		t.Errorf("peak concurrency %d (want 3), delivered %d (want %d)", peak, delivered, n)
	}
}

func TestRunnerShutdownKeepsInterruptedMessage(t *testing.T) {
	s := testSpool(t, t.TempDir())
	started := make(chan struct{})
	r := &Runner{Spool: s, Logger: quietLogger(), PollInterval: time.Hour,
		Deliverer: funcDeliverer(func(ctx context.Context, env *Envelope, msg io.Reader) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	id := commit(t, s, &Envelope{From: "a@x.test", To: []string{"b@y.test"}}, testHeader, "body\r\n")
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	env, err := s.Envelope(id)
	if err != nil {
		t.Fatal("interrupted message lost:", err)
	}
	if env.Attempts != 0 {
		t.Errorf("interrupted delivery counted as attempt %d", env.Attempts)
	}
}

func TestOutboxSink(t *testing.T) {
	s := testSpool(t, t.TempDir())
	out := filepath.Join(t.TempDir(), "outbox")
	runRunner(t, &Runner{Spool: s, Deliverer: OutboxSink{Dir: out}, Logger: quietLogger(), PollInterval: time.Hour})
	id := commit(t, s, &Envelope{From: "a@x.test", To: []string{"b@y.test"}}, testHeader, "bin\x00ary\r\n", ".dot\r\n")
	p := filepath.Join(out, id+".eml")
	waitFor(t, "outbox file", spoolEmpty(s))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != testHeader+"\r\nbin\x00ary\r\n.dot\r\n" {
		t.Errorf("outbox file = %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Errorf("outbox holds %d files, want 1", len(entries))
	}
}

// A message delivered again after a crash (once completely, once interrupted
// before its rename) ends up in the outbox once: the same name is replaced and
// the interrupted attempt's temporary copy is removed; other files stay.
func TestOutboxSinkRedeliveryLeavesOneCopy(t *testing.T) {
	out := t.TempDir()
	const id = "0123456789abcdefghijklmn"
	msg := testHeader + "\r\nbody\r\n"
	for name, content := range map[string]string{
		id + ".eml":                          msg,      // delivered, not yet removed from the spool
		"." + id + ".eml.tmp1234567":         msg[:10], // an attempt killed while writing
		"." + id + ".eml.tmp7654321":         msg,      // an attempt killed before its rename
		"other.eml":                          "other",  // another message
		".0123456789abcdefghijklmo.eml.tmp1": "other",  // another message's attempt
	} {
		if err := os.WriteFile(filepath.Join(out, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := &Envelope{ID: id, From: "a@x.test", To: []string{"b@y.test"}}
	if err := (OutboxSink{Dir: out}).Deliver(context.Background(), env, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	var names []string
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{".0123456789abcdefghijklmo.eml.tmp1", id + ".eml", "other.eml"}
	if !slices.Equal(names, want) {
		t.Errorf("outbox holds %q, want %q", names, want)
	}
	if b, _ := os.ReadFile(filepath.Join(out, id+".eml")); string(b) != msg {
		t.Errorf("outbox file = %q, want the message", b)
	}
}

// TestSmartHostReusesConnections delivers several messages through one smart host and checks
// they share one SMTP session, that a session the server dropped is replaced, and that
// with MaxIdle < 0 every message gets its own session.
func TestSmartHostReusesConnections(t *testing.T) {
	h := startNextHop(t)
	hop := nextHop(h)
	defer hop.Close()
	ctx := context.Background()
	for i := range 3 {
		env := &Envelope{ID: fmt.Sprint("reuse", i), From: "a@x.test", To: []string{"b@y.test"}}
		if err := hop.Deliver(ctx, env, strings.NewReader(testMessage)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	h.mu.Lock()
	sessions := h.sessions
	h.mu.Unlock()
	if sessions != 1 || len(h.transactions()) != 3 {
		t.Errorf("3 messages used %d sessions (%d transactions), want 1", sessions, len(h.transactions()))
	}

	// The server closes the idle session: the next delivery notices (RSET fails) and dials again.
	kept := keptSessions(hop)
	if len(kept) != 1 {
		t.Fatalf("%d sessions kept, want 1", len(kept))
	}
	kept[0].Close()
	if err := hop.Deliver(ctx, &Envelope{ID: "after-drop", From: "a@x.test", To: []string{"b@y.test"}}, strings.NewReader(testMessage)); err != nil {
		t.Fatalf("after a dropped session: %v", err)
	}

	single := nextHop(h)
	single.MaxIdle = -1
	h.mu.Lock()
	before := h.sessions
	h.mu.Unlock()
	for i := range 2 {
		if err := single.Deliver(ctx, &Envelope{ID: fmt.Sprint("single", i), From: "a@x.test", To: []string{"b@y.test"}}, strings.NewReader(testMessage)); err != nil {
			t.Fatal(err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sessions-before != 2 {
		t.Errorf("MaxIdle -1: %d sessions for 2 messages, want 2", h.sessions-before)
	}
}
