package submit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/relay"
	"sealgate/sign"
)

// fakeBacklog is a DeliveryBacklog the test sets.
type fakeBacklog struct {
	mu    sync.Mutex
	n     int
	level int
	ch    chan struct{} // closed once n <= level
}

func (b *fakeBacklog) Backlog() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func (b *fakeBacklog) BacklogAtMost(n int) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.level, b.ch = n, make(chan struct{})
	if b.n <= n {
		close(b.ch)
		b.ch = nil
	}
	return b.ch
}

func (b *fakeBacklog) set(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n = n
	if b.ch != nil && n <= b.level {
		close(b.ch)
		b.ch = nil
	}
}

// flowClock hands out one timer channel per After call and reports the delay asked for.
type flowClock struct {
	asked chan time.Duration
	fire  chan time.Time
}

func newFlowClock() *flowClock {
	return &flowClock{asked: make(chan time.Duration, 10), fire: make(chan time.Time)}
}

func (c *flowClock) After(d time.Duration) <-chan time.Time {
	c.asked <- d
	return c.fire
}

// noClock fails the test if flow control starts a wait.
func noClock(t *testing.T) func(time.Duration) <-chan time.Time {
	return func(d time.Duration) <-chan time.Time {
		t.Errorf("flow control waited (%v) with the backlog at or under the threshold", d)
		return nil
	}
}

func TestFlowControlWait(t *testing.T) {
	t.Run("under the threshold", func(t *testing.T) {
		for _, n := range []int{0, 10} {
			f := &FlowControl{Backlog: &fakeBacklog{n: n}, Threshold: 10, Delay: time.Second, After: noClock(t)}
			if f.Wait(context.Background()) {
				t.Errorf("backlog %d: waited", n)
			}
		}
	})
	t.Run("off", func(t *testing.T) {
		var none *FlowControl
		for _, f := range []*FlowControl{none, {Backlog: &fakeBacklog{n: 1000}, After: noClock(t)}, {Delay: time.Second, After: noClock(t)}} {
			if f.Wait(context.Background()) {
				t.Errorf("%+v: waited", f)
			}
		}
	})
	t.Run("over the threshold until the delay", func(t *testing.T) {
		clock := newFlowClock()
		f := &FlowControl{Backlog: &fakeBacklog{n: DefaultFlowThreshold + 1}, Delay: 1500 * time.Millisecond, After: clock.After}
		done := make(chan bool)
		go func() { done <- f.Wait(context.Background()) }()
		if d := <-clock.asked; d != 1500*time.Millisecond {
			t.Errorf("waits for %v, want the configured 1.5s", d)
		}
		select {
		case <-done:
			t.Fatal("returned before the clock fired, with the backlog still over the threshold")
		default:
		}
		clock.fire <- time.Now()
		if !<-done {
			t.Error("Wait did not report its wait")
		}
	})
	t.Run("over the threshold until delivery catches up", func(t *testing.T) {
		clock := newFlowClock()
		b := &fakeBacklog{n: 50}
		f := &FlowControl{Backlog: b, Threshold: 20, Delay: time.Second, After: clock.After}
		done := make(chan bool)
		go func() { done <- f.Wait(context.Background()) }()
		<-clock.asked
		b.set(30) // fell, still over: waits on
		select {
		case <-done:
			t.Fatal("returned with the backlog still over the threshold")
		default:
		}
		b.set(20)
		if !<-done { // the clock never fires: only the fall can end the wait
			t.Error("Wait did not report its wait")
		}
	})
}

// MAIL waits on the clock while the backlog is over the threshold, then is accepted:
// delayed, never refused. Under the threshold it is answered at once.
func TestMailDelayedByFlowControl(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	spool, err := relay.OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	backlog := &fakeBacklog{n: 0}
	clock := newFlowClock()
	srv := &Server{
		Hostname:  "relay.example.test",
		Listeners: []Listener{{Name: "smarthost", Address: "127.0.0.1:0", Mode: ModeSmartHost, Network: true}},
		Limits: Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 10, MaxConnections: 10,
			CommandTimeout: time.Minute, DataTimeout: time.Minute},
		Networks: []NetworkIdentity{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Identity: NewIdentity("mta", KindClientNetwork, MustParsePatterns("*@client.example"))}},
		Pipeline: &Pipeline{Hostname: "relay.example.test", AuthServID: "relay.example.test", Spool: spool, Log: log,
			KeyRing: mustKeyRing(sign.DomainKeys{Domain: "client.example", Keys: []sign.Key{{Selector: "ed", Signer: edKey}}})},
		Flow: &FlowControl{Backlog: backlog, Threshold: 5, Delay: time.Second, After: clock.After},
		Log:  log,
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	c := dialRaw(t, srv.Addrs()[0].String())

	if got := c.Cmd("MAIL FROM:<a@client.example>"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("MAIL with no backlog: %q", got)
	}
	select {
	case d := <-clock.asked:
		t.Errorf("MAIL with no backlog waited %v", d)
	default:
	}
	if got := c.Cmd("RSET"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("RSET: %q", got)
	}

	backlog.set(6)
	c.Write("MAIL FROM:<a@client.example>\r\n")
	if d := <-clock.asked; d != time.Second {
		t.Errorf("MAIL waits up to %v, want 1s", d)
	}
	clock.fire <- time.Now()
	if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("MAIL after the wait: %q, want 250 (delayed, not refused)", got)
	}
}
