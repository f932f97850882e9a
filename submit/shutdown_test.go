package submit

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sealgate/relay"
	"sealgate/sign"
)

// TestShutdownDrains: at Shutdown a client waiting between commands gets 421
// 4.3.2 at once, a client in the middle of DATA has its message received and
// answered 250 first, then 421 4.3.2; Shutdown returns as soon as both are gone.
func TestShutdownDrains(t *testing.T) {
	spool, err := relay.OpenSpool(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &Server{
		Hostname:  "relay.example.test",
		Listeners: []Listener{{Name: "smarthost", Address: "127.0.0.1:0", Mode: ModeSmartHost, Network: true}},
		Limits: Limits{MaxMessageBytes: 4 << 20, MaxRecipients: 10, MaxConnections: 10,
			CommandTimeout: time.Minute, DataTimeout: time.Minute},
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
	addr := srv.Addrs()[0].String()

	// A client that has said nothing since the greeting, one idle after EHLO,
	// and one half-way through a message.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silentR := bufio.NewReader(silent)
	if line, _ := silentR.ReadString('\n'); !strings.HasPrefix(line, "220 ") {
		t.Fatalf("greeting %q", line)
	}
	idle := dialRaw(t, addr)
	sending := dialRaw(t, addr)
	startData(sending)
	sending.Write(bareHeader + "\r\nfirst half\r\n")

	// Every connection is registered before Shutdown, so none is merely refused.
	waitUntil(t, func() bool { srv.mu.Lock(); defer srv.mu.Unlock(); return len(srv.conns) == 3 })

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()

	if got := idle.Reply(5 * time.Second); !strings.HasPrefix(got, "421 4.3.2 ") {
		t.Errorf("idle client got %q, want 421 4.3.2", got)
	}
	idle.AssertClosed()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := silentR.ReadString('\n'); !strings.HasPrefix(line, "421 4.3.2 ") {
		t.Errorf("silent client got %q (%v), want 421 4.3.2", line, err)
	}

	// The message being sent is taken, then the session ends.
	sending.Write("second half\r\n.\r\n")
	if got := sending.Reply(5 * time.Second); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("end of data during shutdown: %q, want 250", got)
	}
	if got := sending.Reply(5 * time.Second); !strings.HasPrefix(got, "421 4.3.2 ") {
		t.Errorf("after the message: %q, want 421 4.3.2", got)
	}
	sending.AssertClosed()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v, want nil (every session ended)", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown still waiting 15 s after every client was told 421")
	}
	if ids, err := spool.List(); err != nil || len(ids) != 1 {
		t.Errorf("spool holds %v (%v), want the one message answered 250", ids, err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("still accepting connections after Shutdown")
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A connection's context, which its session's DNS, Redis and flow-control calls take,
// ends when the connection is closed (by the client, a timeout or the server's shutdown).
func TestClientConnContextEndsAtClose(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	cc := newClientConn(a, &Server{Log: slog.New(slog.DiscardHandler)}, Listener{Name: "smarthost"}, netip.MustParseAddr("127.0.0.1"))
	ctx := cc.context()
	if ctx.Err() != nil {
		t.Fatalf("context of an open connection: %v", ctx.Err())
	}
	cc.Close()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the connection's context did not end at Close")
	}
}
