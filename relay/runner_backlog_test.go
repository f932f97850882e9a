package relay

import (
	"context"
	"io"
	"testing"
	"time"
)

// The backlog counts messages due now that wait for a worker: not the one in
// flight, not a deferred one.
func TestRunnerBacklogCountsDueMessagesOnly(t *testing.T) {
	s := testSpool(t, t.TempDir())
	// A deferred message: attempted once, next attempt in an hour.
	deferred := commit(t, s, &Envelope{From: "a@x.test", To: []string{"b@y.test"}}, testHeader, "body\r\n")
	env, err := s.Envelope(deferred)
	if err != nil {
		t.Fatal(err)
	}
	env.Attempts, env.NextAttempt, env.LastError = 1, time.Now().Add(time.Hour), "451 try later"
	if err := s.Update(env); err != nil {
		t.Fatal(err)
	}
	var due []string
	for range 3 {
		due = append(due, commit(t, s, &Envelope{From: "a@x.test", To: []string{"b@y.test"}}, testHeader, "body\r\n"))
	}
	s.takeCommitted() // as after a restart: the Runner finds all four by its scan

	started := make(chan string, 10)
	release := make(chan struct{})
	r := &Runner{Spool: s, Logger: quietLogger(), Workers: 1, PollInterval: time.Hour, Backoff: []time.Duration{time.Hour},
		Deliverer: funcDeliverer(func(ctx context.Context, env *Envelope, msg io.Reader) error {
			started <- env.ID
			<-release
			return nil
		})}
	if n := r.Backlog(); n != 0 {
		t.Errorf("backlog %d before Run, want 0", n)
	}
	runRunner(t, r)

	if id := <-started; id != due[0] {
		t.Errorf("first delivery %s, want the oldest due message %s", id, due[0])
	}
	waitFor(t, "backlog 2", func() bool { return r.Backlog() == 2 })
	fell := r.BacklogAtMost(1)
	if n := r.Backlog(); n != 2 {
		t.Fatalf("backlog %d, want 2: the two due messages no worker has taken (not the deferred one, not the one in flight)", n)
	}
	select {
	case <-fell:
		t.Fatal("BacklogAtMost(1) closed with the backlog at 2")
	case <-r.BacklogAtMost(2):
	}
	release <- struct{}{} // the first delivery ends, the worker takes the next
	select {
	case <-fell:
	case <-time.After(10 * time.Second):
		t.Fatal("BacklogAtMost(1) not closed when a worker took a message")
	}
	if id := <-started; id != due[1] {
		t.Errorf("second delivery %s, want %s", id, due[1])
	}
	waitFor(t, "backlog 1", func() bool { return r.Backlog() == 1 })
	close(release)
	waitFor(t, "the due messages delivered", func() bool {
		ids, err := s.List()
		return err == nil && len(ids) == 1 && ids[0] == deferred
	})
	if n := r.Backlog(); n != 0 {
		t.Errorf("backlog %d with only a deferred message queued, want 0", n)
	}
}

// The schedule's count of messages never attempted follows every change.
func TestScheduleFreshCount(t *testing.T) {
	q := &schedule{index: map[string]*scheduled{}}
	now := time.Now()
	q.set("a", time.Time{})
	q.set("b", time.Time{})
	q.set("c", now.Add(time.Hour))
	if q.fresh != 2 {
		t.Fatalf("fresh %d after 2 new and 1 deferred, want 2", q.fresh)
	}
	q.set("c", time.Time{}) // requeued
	q.set("a", now)         // retry now: attempted before
	if q.fresh != 2 {
		t.Errorf("fresh %d after requeue and retry, want 2", q.fresh)
	}
	if id, ok := q.popDue(now); !ok || id != "b" {
		t.Errorf("popDue = %q %v, want b", id, ok)
	}
	q.remove("c")
	if q.fresh != 0 {
		t.Errorf("fresh %d after pop and remove, want 0", q.fresh)
	}
	q.set("d", time.Time{})
	q.retain(map[string]bool{"a": true})
	if q.fresh != 0 || q.Len() != 1 {
		t.Errorf("fresh %d, %d queued after retain, want 0 and 1", q.fresh, q.Len())
	}
}
