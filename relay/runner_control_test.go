package relay

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sealgate/internal/smtpclient"
)

// controlRelay is a Runner serving a control socket over a spool, whose
// deliverer refuses per recipient as told and counts what it delivered.
type controlRelay struct {
	s      *Spool
	sock   string
	mu     sync.Mutex
	refuse map[string]*smtpclient.ReplyError
	sent   atomic.Int32
}

func (c *controlRelay) Deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	io.Copy(io.Discard, msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rcpt := range env.To {
		if re := c.refuse[rcpt]; re != nil {
			if re.Permanent() {
				return &PermanentError{Err: re}
			}
			return re
		}
	}
	c.sent.Add(1)
	return nil
}

func (c *controlRelay) setRefusal(rcpt string, re *smtpclient.ReplyError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse[rcpt] = re
}

func startControlRelay(t *testing.T) *controlRelay {
	t.Helper()
	dir := t.TempDir()
	c := &controlRelay{s: testSpool(t, dir), sock: filepath.Join(dir, "control.sock"), refuse: map[string]*smtpclient.ReplyError{}}
	r := &Runner{Spool: c.s, Deliverer: c, Logger: quietLogger(), PollInterval: time.Hour,
		Backoff: []time.Duration{time.Hour}, Control: &ControlServer{Path: c.sock, Logger: quietLogger()}}
	runRunner(t, r)
	waitFor(t, "the control socket", func() bool { _, err := os.Stat(c.sock); return err == nil })
	return c
}

func (c *controlRelay) call(t *testing.T, cmd string, args, result any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ControlCall(ctx, c.sock, cmd, args, result)
}

func (c *controlRelay) entries(t *testing.T) map[string]QueueEntry {
	t.Helper()
	var list []QueueEntry
	if err := c.call(t, "queue.list", nil, &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]QueueEntry{}
	for _, e := range list {
		out[e.ID] = e
	}
	return out
}

func TestControlQueueRoundTrips(t *testing.T) {
	c := startControlRelay(t)
	if fi, err := os.Stat(c.sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket %v (%v): want a socket, mode 0600", fi.Mode(), err)
	}
	c.setRefusal("later@example.net", &smtpclient.ReplyError{Code: 451, Message: "4.3.0 try later"})
	c.setRefusal("never@example.org", &smtpclient.ReplyError{Code: 550, Message: "5.1.1 no such user"})
	hdr := "From: a@example.com\r\nSubject: control test\r\n"
	deferred := commit(t, c.s, &Envelope{From: "a@example.com", To: []string{"later@example.net"}}, hdr, "body\r\n")
	failed := commit(t, c.s, &Envelope{From: "a@example.com", To: []string{"never@example.org"}}, hdr, "body\r\n")
	waitFor(t, "one deferred, one failed", func() bool {
		e := c.entries(t)
		return e[deferred].State == StateDeferred && e[failed].State == StateFailed
	})

	e := c.entries(t)[deferred]
	if e.Attempts != 1 || e.NextAttempt.Before(time.Now().Add(50*time.Minute)) || !strings.Contains(e.LastError, "451") {
		t.Errorf("deferred entry %+v: want 1 attempt, next in about an hour, the 451", e)
	}

	var m QueueMessage
	if err := c.call(t, "queue.show", QueueIDArgs{ID: failed}, &m); err != nil {
		t.Fatal(err)
	}
	if m.State != StateFailed || !strings.Contains(m.Header, "Subject: control test") ||
		len(m.Envelope.Failed) != 1 || m.Envelope.Failed[0].Status != "5.1.1" || m.Envelope.Failed[0].Reply != "550 5.1.1 no such user" {
		t.Errorf("show failed: %+v, envelope %+v", m, m.Envelope)
	}

	var st QueueStats
	if err := c.call(t, "queue.stats", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Total != 2 || st.ByState[StateDeferred] != 1 || st.ByState[StateFailed] != 1 ||
		st.ByDomain["example.net"] != 1 || len(st.ByDomain) != 1 || st.OldestAgeSeconds <= 0 {
		t.Errorf("stats %+v", st)
	}

	// retry: the deferred message goes now, and is delivered.
	c.setRefusal("later@example.net", nil)
	var ch QueueChange
	if err := c.call(t, "queue.retry", QueueIDArgs{ID: deferred}, &ch); err != nil || len(ch.IDs) != 1 {
		t.Fatalf("retry: %v %+v", err, ch)
	}
	waitFor(t, "the retried message delivered", func() bool { _, ok := c.entries(t)[deferred]; return !ok })
	if c.sent.Load() != 1 {
		t.Errorf("%d delivered, want 1", c.sent.Load())
	}

	// retry of a failed message says to requeue; requeue delivers it.
	var ce *ControlError
	if err := c.call(t, "queue.retry", QueueIDArgs{ID: failed}, nil); !errors.As(err, &ce) || !strings.Contains(err.Error(), "requeue") {
		t.Errorf("retry of a failed message: %v", err)
	}
	c.setRefusal("never@example.org", nil)
	if err := c.call(t, "queue.requeue", QueueIDArgs{ID: failed}, &ch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the requeued message delivered", func() bool { return c.sent.Load() == 2 })
	waitFor(t, "the queue empty", func() bool { return len(c.entries(t)) == 0 })

	// delete takes a message out and says what it was.
	c.setRefusal("later@example.net", &smtpclient.ReplyError{Code: 451, Message: "4.3.0 try later"})
	gone := commit(t, c.s, &Envelope{From: "b@example.com", To: []string{"later@example.net"}}, hdr, "body\r\n")
	waitFor(t, "the message deferred", func() bool { return c.entries(t)[gone].State == StateDeferred })
	if err := c.call(t, "queue.delete", QueueIDArgs{ID: gone}, &ch); err != nil {
		t.Fatal(err)
	}
	if len(ch.Removed) != 1 || ch.Removed[0].From != "b@example.com" {
		t.Errorf("delete said %+v", ch)
	}
	if ids, _ := c.s.List(); len(ids) != 0 {
		t.Errorf("queue holds %v after delete", ids)
	}
	if err := c.call(t, "queue.show", QueueIDArgs{ID: gone}, nil); err == nil || !strings.Contains(err.Error(), "no message") {
		t.Errorf("show of a deleted message: %v", err)
	}

	if err := c.call(t, "queue.bogus", nil, nil); !errors.As(err, &ce) || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v", err)
	}
	if err := c.call(t, "queue.show", QueueIDArgs{ID: "../../etc/passwd"}, nil); err == nil || !strings.Contains(err.Error(), "invalid queue id") {
		t.Errorf("bad id: %v", err)
	}
}

func TestControlCallWithoutServer(t *testing.T) {
	err := ControlCall(context.Background(), filepath.Join(t.TempDir(), "control.sock"), "queue.list", nil, nil)
	if !errors.Is(err, ErrNotRunning) {
		t.Errorf("ControlCall without a server: %v, want ErrNotRunning", err)
	}
}

// blockingDeliverer holds each delivery until released or its context ends.
type blockingDeliverer struct {
	started chan string
	release chan struct{}
}

func (b *blockingDeliverer) Deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	b.started <- env.ID
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestRunnerDrainFinishesInFlight: after Run's context ends, a delivery in
// flight may finish within DrainTimeout (and the message leaves the queue);
// past it, it is cancelled and the message stays queued.
func TestRunnerDrainFinishesInFlight(t *testing.T) {
	for _, tt := range []struct {
		name    string
		drain   time.Duration
		release bool
		queued  int
	}{
		{"finished", time.Minute, true, 0},
		{"cancelled at the deadline", 50 * time.Millisecond, false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpool(t, t.TempDir())
			b := &blockingDeliverer{started: make(chan string, 1), release: make(chan struct{})}
			r := &Runner{Spool: s, Deliverer: b, Logger: quietLogger(), PollInterval: time.Hour, DrainTimeout: tt.drain}
			commit(t, s, &Envelope{From: "a@example.com", To: []string{"x@example.net"}}, "From: a@example.com\r\n", "b\r\n")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			<-b.started
			cancel()
			if tt.release {
				select {
				case <-done:
					t.Fatal("Run returned before the delivery in flight ended, within DrainTimeout")
				case <-time.After(100 * time.Millisecond):
				}
				close(b.release)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run still waiting 10 s after its context ended")
			}
			if ids, _ := s.List(); len(ids) != tt.queued {
				t.Errorf("%d queued after shutdown, want %d", len(ids), tt.queued)
			}
		})
	}
}
