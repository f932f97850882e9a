package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/internal/smtptest"
)

// With PIPELINING the envelope goes out as one group: the server sees MAIL, both
// RCPTs and DATA before it sends a single reply, and per-recipient results still
// come back right.
func TestSmartHostPipelinesEnvelope(t *testing.T) {
	addr, done := smtptest.ServeGreeting(t, "hop.test", []string{"PIPELINING", "8BITMIME"}, func(c *smtptest.Conn) error {
		cmds, err := c.ReadLines(4) // blocks: a client waiting for replies never gets here
		if err != nil {
			return err
		}
		want := []string{"MAIL FROM:<a@x.test>", "RCPT TO:<ok@y.test>", "RCPT TO:<gone@y.test>", "DATA"}
		if strings.Join(cmds, "|") != strings.Join(want, "|") {
			return fmt.Errorf("commands %q, want %q", cmds, want)
		}
		c.Write([]byte("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n"))
		body, err := c.ReadData()
		if err != nil {
			return err
		}
		if body != testMessage {
			return fmt.Errorf("body %q, want %q", body, testMessage)
		}
		c.Write([]byte("250 2.0.0 queued\r\n"))
		cmds, err = c.ReadLines(1)
		if err != nil || cmds[0] != "QUIT" {
			return fmt.Errorf("after the message: %q, %v; want QUIT", cmds, err)
		}
		c.Write([]byte("221 bye\r\n"))
		return nil
	})
	hop := smartHost(addr, 5*time.Second)
	err := hop.Deliver(context.Background(), &Envelope{ID: "p1", From: "a@x.test", To: []string{"ok@y.test", "gone@y.test"}}, strings.NewReader(testMessage))
	var re *RecipientsError
	if !errors.As(err, &re) || len(re.Accepted) != 1 || re.Accepted[0] != "ok@y.test" || len(re.Failed) != 1 || !IsPermanent(re.Failed[0].Err) {
		t.Errorf("Deliver = %v; want ok@y.test accepted and gone@y.test failed permanently", err)
	}
	hop.Close()
	if err := <-done; err != nil {
		t.Error("server:", err)
	}
}

// Without PIPELINING the client waits for each reply before the next command.
func TestSmartHostWithoutPipeliningWaits(t *testing.T) {
	addr, done := smtptest.ServeGreeting(t, "hop.test", []string{"8BITMIME"}, func(c *smtptest.Conn) error {
		for _, want := range []string{"MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"} {
			cmds, err := c.ReadLines(1)
			if err != nil {
				return err
			}
			if cmds[0] != want {
				return fmt.Errorf("got %q, want %q", cmds[0], want)
			}
			// A pipelining client would have sent its next command by now.
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := c.R.Peek(1); err == nil {
				return fmt.Errorf("client sent more after %q before its reply (pipelining not offered)", want)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if want == "DATA" {
				c.Write([]byte("354 go ahead\r\n"))
			} else {
				c.Write([]byte("250 ok\r\n"))
			}
		}
		if _, err := c.ReadData(); err != nil {
			return err
		}
		c.Write([]byte("250 queued\r\n"))
		return nil
	})
	hop := smartHost(addr, 5*time.Second)
	if err := hop.Deliver(context.Background(), &Envelope{ID: "n1", From: "a@x.test", To: []string{"b@y.test"}}, strings.NewReader(testMessage)); err != nil {
		t.Errorf("Deliver: %v", err)
	}
	if err := <-done; err != nil {
		t.Error("server:", err)
	}
}

// Every recipient refused, pipelined: the server refuses the DATA that was
// already sent, no body follows, and the failure is permanent.
func TestSmartHostPipelinedAllRecipientsRefused(t *testing.T) {
	addr, done := smtptest.ServeGreeting(t, "hop.test", []string{"PIPELINING"}, func(c *smtptest.Conn) error {
		if _, err := c.ReadLines(3); err != nil {
			return err
		}
		c.Write([]byte("250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"))
		cmds, err := c.ReadLines(1)
		if err != nil || cmds[0] != "QUIT" {
			return fmt.Errorf("after the refused DATA: %q, %v; want QUIT and no body", cmds, err)
		}
		c.Write([]byte("221 bye\r\n"))
		return nil
	})
	hop := smartHost(addr, 5*time.Second)
	err := hop.Deliver(context.Background(), &Envelope{ID: "r1", From: "a@x.test", To: []string{"gone@y.test"}}, strings.NewReader(testMessage))
	if !IsPermanent(err) {
		t.Errorf("Deliver = %v, want a permanent failure", err)
	}
	hop.Close() // a kept session ends with QUIT
	if err := <-done; err != nil {
		t.Error("server:", err)
	}
}

// A reused session the server has closed meanwhile: the pipelined group's RSET
// gets no reply, so the message goes out on a new session instead of failing.
func TestSmartHostReplacesSessionClosedByServer(t *testing.T) {
	h := startNextHop(t)
	hop := nextHop(h)
	defer hop.Close()
	ctx := context.Background()
	if err := hop.Deliver(ctx, &Envelope{ID: "first", From: "a@x.test", To: []string{"b@y.test"}}, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	h.closeSessions() // whether or not the FIN has arrived, the RSET gets no reply
	if err := hop.Deliver(ctx, &Envelope{ID: "second", From: "a@x.test", To: []string{"b@y.test"}}, strings.NewReader(testMessage)); err != nil {
		t.Fatalf("after the server closed the idle session: %v", err)
	}
	if n := len(h.transactions()); n != 2 {
		t.Errorf("next hop got %d transactions, want 2", n)
	}
}

// The next hop restarts (its listener and every session closed, a new server on
// the same address) while the Transport keeps several sessions: the next message goes
// out at once on a new session, however many dead ones were kept; none is
// deferred.
func TestSmartHostRestartDefersNothing(t *testing.T) {
	h := startNextHop(t)
	hop := nextHop(h)
	hop.MaxIdle = 3
	defer hop.Close()
	ctx := context.Background()

	// Three deliveries at once, each held at DATA until all three have arrived,
	// so three sessions are open together and then kept.
	var arrived sync.WaitGroup
	arrived.Add(3)
	release := make(chan struct{})
	go func() { arrived.Wait(); close(release) }()
	h.mu.Lock()
	h.dataReply = func(int) error { arrived.Done(); <-release; return nil }
	h.mu.Unlock()
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			errs <- hop.Deliver(ctx, &Envelope{ID: fmt.Sprint("before", i), From: "a@x.test", To: []string{"b@y.test"}}, strings.NewReader(testMessage))
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	h.mu.Lock()
	h.dataReply = nil
	h.mu.Unlock()
	kept := len(keptSessions(hop))
	if kept != 3 {
		t.Fatalf("%d sessions kept after three concurrent deliveries, want 3", kept)
	}

	h.restart(t)
	h.mu.Lock()
	sessionsBefore := h.sessions
	h.mu.Unlock()
	for i := range 2 {
		err := hop.Deliver(ctx, &Envelope{ID: fmt.Sprint("after", i), From: "a@x.test", To: []string{"b@y.test"}}, strings.NewReader(testMessage))
		if err != nil {
			t.Fatalf("message %d after the next hop restarted: %v (would be deferred)", i, err)
		}
	}
	if n := len(h.transactions()); n != 5 {
		t.Errorf("next hop got %d transactions, want 5", n)
	}
	h.mu.Lock()
	newSessions := h.sessions - sessionsBefore
	h.mu.Unlock()
	if newSessions != 1 {
		t.Errorf("%d sessions opened after the restart for 2 messages, want 1 (dead ones dropped, the new one reused)", newSessions)
	}
	kept = len(keptSessions(hop))
	if kept != 1 {
		t.Errorf("%d sessions kept after the restart, want 1 (the new one)", kept)
	}
}
