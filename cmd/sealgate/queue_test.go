package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sealgate/internal/smtpclient"
	"sealgate/relay"
)

// refusingDeliverer refuses mail to fail@ for good and to later@ for now, and takes the rest.
type refusingDeliverer struct{}

func (refusingDeliverer) Deliver(ctx context.Context, env *relay.Envelope, msg io.Reader) error {
	io.Copy(io.Discard, msg)
	switch {
	case strings.HasPrefix(env.To[0], "fail@"):
		return &relay.PermanentError{Err: &smtpclient.ReplyError{Command: "RCPT TO:<" + env.To[0] + ">", Code: 550, Message: "5.1.1 unknown user"}}
	case strings.HasPrefix(env.To[0], "later@"):
		return &smtpclient.ReplyError{Command: "RCPT TO:<" + env.To[0] + ">", Code: 451, Message: "4.3.0 busy"}
	}
	return nil
}

// TestQueueCLI runs the queue commands against a Runner serving its control socket, as
// serve does, in the same state directory.
func TestQueueCLI(t *testing.T) {
	dir := t.TempDir()
	stdout, stderr, code := runCLI(t, "queue", "list", "--dir", dir)
	if code == 0 || !strings.Contains(stderr, "sealgate serve is not running") || !strings.Contains(stderr, "nothing was changed") {
		t.Fatalf("list without serve: exit %d, %q %q", code, stdout, stderr)
	}

	spool, err := relay.OpenSpool(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &relay.Runner{Spool: spool, Deliverer: refusingDeliverer{}, Logger: quiet, PollInterval: time.Hour,
		Backoff: []time.Duration{time.Hour}, Control: &relay.ControlServer{Path: controlSocket(dir), Logger: quiet}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		if _, err := os.Stat(controlSocket(dir)); err == nil {
			t.Error("control socket left behind after Run ended")
		}
	}()
	// Run listens on the socket (created aside, then renamed into place) before it
	// serves: wait for it to appear rather than racing the first command against it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(controlSocket(dir)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("control socket did not appear")
		}
	}

	commit := func(to string) string {
		in, err := spool.Create()
		if err != nil {
			t.Fatal(err)
		}
		in.Write([]byte("hello\r\n"))
		id, err := in.Commit(&relay.Envelope{From: "alice@example.com", To: []string{to}},
			[]byte("From: alice@example.com\r\nSubject: cli test\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	failed, deferred := commit("fail@example.org"), commit("later@example.net")
	var entries []relay.QueueEntry
	deadline := time.Now().Add(10 * time.Second)
	for {
		stdout, stderr, code = runCLI(t, "queue", "list", "--json", "--dir", dir)
		if code != 0 {
			t.Fatalf("list --json: exit %d: %s", code, stderr)
		}
		entries = nil
		if err := json.Unmarshal([]byte(stdout), &entries); err != nil {
			t.Fatalf("list --json: %v\n%s", err, stdout)
		}
		// Queued messages first, then failed/.
		if len(entries) == 2 && entries[0].State == relay.StateDeferred && entries[1].State == relay.StateFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list: %+v, want the failed and the deferred message", entries)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if entries[0].ID != deferred || entries[1].ID != failed {
		t.Errorf("list ids %s %s, want %s %s", entries[0].ID, entries[1].ID, deferred, failed)
	}

	stdout, _, code = runCLI(t, "queue", "list", "--dir", dir)
	if code != 0 || !strings.Contains(stdout, failed) || !strings.Contains(stdout, "<later@example.net>") || !strings.Contains(stdout, "2 message(s)") {
		t.Errorf("list: exit %d\n%s", code, stdout)
	}
	stdout, _, code = runCLI(t, "queue", "show", failed, "--dir", dir)
	for _, want := range []string{"State:        failed", "<fail@example.org>", "status 5.1.1", "550 5.1.1 unknown user", "Subject: cli test", "requeue"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("show: exit %d, no %q in\n%s", code, want, stdout)
		}
	}
	stdout, _, code = runCLI(t, "queue", "show", deferred, "--dir", dir)
	if code != 0 || !strings.Contains(stdout, "451 4.3.0 busy") || !strings.Contains(stdout, "Next attempt: 20") {
		t.Errorf("show deferred: exit %d\n%s", code, stdout)
	}
	stdout, _, code = runCLI(t, "queue", "stats", "--json", "--dir", dir)
	var st relay.QueueStats
	if err := json.Unmarshal([]byte(stdout), &st); code != 0 || err != nil || st.ByState["failed"] != 1 || st.ByState["deferred"] != 1 || st.ByDomain["example.net"] != 1 {
		t.Errorf("stats --json: exit %d, %v: %s", code, err, stdout)
	}
	stdout, _, code = runCLI(t, "queue", "stats", "--dir", dir)
	if code != 0 || !strings.Contains(stdout, "messages: 2") || !strings.Contains(stdout, "example.net") {
		t.Errorf("stats: exit %d\n%s", code, stdout)
	}
	stdout, _, code = runCLI(t, "queue", "retry", "--all", "--dir", dir)
	if code != 0 || !strings.Contains(stdout, "1 message(s) scheduled") || !strings.Contains(stdout, deferred) {
		t.Errorf("retry --all: exit %d\n%s", code, stdout)
	}
	_, stderr, code = runCLI(t, "queue", "retry", "--dir", dir)
	if code == 0 || !strings.Contains(stderr, "give one queue id, or --all") {
		t.Errorf("retry without id: exit %d: %s", code, stderr)
	}
	stdout, _, code = runCLI(t, "queue", "delete", failed, "--dir", dir)
	if code != 0 || !strings.Contains(stdout, "deleted "+failed+" (failed") || !strings.Contains(stdout, "<fail@example.org>") {
		t.Errorf("delete: exit %d\n%s", code, stdout)
	}
	_, stderr, code = runCLI(t, "queue", "requeue", failed, "--dir", dir)
	if code == 0 || !strings.Contains(stderr, "no message "+failed+" in failed/") {
		t.Errorf("requeue of a deleted message: exit %d: %s", code, stderr)
	}
}
