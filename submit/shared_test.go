package submit

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStore is a SharedStore in memory that can be taken down and can lose its data,
// as a Redis server can.
type fakeStore struct {
	mu     sync.Mutex
	down   bool
	counts *MemoryCounter
}

var errDown = errors.New("store down")

func newFakeStore() *fakeStore { return &fakeStore{counts: NewMemoryCounter(1000)} }

func (f *fakeStore) check() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errDown
	}
	return nil
}

func (f *fakeStore) setDown(d bool) { f.mu.Lock(); f.down = d; f.mu.Unlock() }
func (f *fakeStore) wipe()          { f.mu.Lock(); f.counts = NewMemoryCounter(1000); f.mu.Unlock() }
func (f *fakeStore) c() *MemoryCounter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts
}

func (f *fakeStore) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if err := f.check(); err != nil {
		return 0, err
	}
	return f.c().Incr(ctx, key, ttl)
}
func (f *fakeStore) Decr(ctx context.Context, key string) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.c().Decr(ctx, key)
}
func (f *fakeStore) Get(ctx context.Context, key string) (int64, time.Duration, error) {
	if err := f.check(); err != nil {
		return 0, 0, err
	}
	n, _ := f.c().Get(ctx, key)
	return n, time.Minute, nil
}
func (f *fakeStore) Allow(context.Context, string, int) (bool, error) { return false, f.check() }
func (f *fakeStore) Acquire(context.Context, string, string, int, time.Duration) (bool, error) {
	return false, f.check()
}
func (f *fakeStore) Renew(context.Context, string, []string, time.Duration) error { return f.check() }
func (f *fakeStore) Release(context.Context, string, string) error                { return f.check() }

// Two nodes' throttles on one store block an address once between them; the block
// stays on a node that saw it when the store goes down, and when it comes back empty.
func TestSharedAuthThrottle(t *testing.T) {
	ctx := context.Background()
	store := newFakeStore()
	nodeA := &AuthThrottle{Counter: NewSharedCounter(store), Limit: 4, Cooldown: time.Minute}
	nodeB := &AuthThrottle{Counter: NewSharedCounter(store), Limit: 4, Cooldown: time.Minute}
	ip := netip.MustParseAddr("192.0.2.7")
	checks := 0
	for i := 0; i < 20; i++ {
		node := nodeA
		if i%2 == 1 {
			node = nodeB
		}
		a, refused := node.Reserve(ctx, ip)
		if refused != nil {
			continue
		}
		checks++ // the password would be checked now, and it is wrong
		a.Failed(ctx)
	}
	if checks != 4 {
		t.Errorf("%d password checks across two nodes, want the limit, 4", checks)
	}
	for name, node := range map[string]*AuthThrottle{"A": nodeA, "B": nodeB} {
		if node.Check(ctx, ip) == nil {
			t.Errorf("node %s does not see the block", name)
		}
	}
	store.setDown(true)
	for name, node := range map[string]*AuthThrottle{"A": nodeA, "B": nodeB} {
		if node.Check(ctx, ip) == nil {
			t.Errorf("store down: node %s lets the blocked address in", name)
		}
	}
	store.setDown(false)
	store.wipe() // a Redis restarted without its data
	for name, node := range map[string]*AuthThrottle{"A": nodeA, "B": nodeB} {
		if node.Check(ctx, ip) == nil {
			t.Errorf("store emptied: node %s lets the blocked address in", name)
		}
	}
	// While the store is down, a node still counts, on its own.
	store.setDown(true)
	other := netip.MustParseAddr("192.0.2.8")
	for i := 0; i < 4; i++ {
		if a, refused := nodeA.Reserve(ctx, other); refused == nil {
			a.Failed(ctx)
		}
	}
	if nodeA.Check(ctx, other) == nil {
		t.Error("store down: four failures on node A did not block the address there")
	}
}

func TestSharedRateLimiterFallsBack(t *testing.T) {
	store := newFakeStore()
	r := NewSharedRateLimiter(store)
	if ok, _ := r.Allow(context.Background(), "k", 2); ok {
		t.Fatal("the store's answer (no) was not used")
	}
	store.setDown(true)
	n := 0
	for i := 0; i < 5; i++ {
		if ok, _ := r.Allow(context.Background(), "k", 2); ok {
			n++
		}
	}
	if n != 2 {
		t.Errorf("store down: %d of 5 allowed at 2 a minute by the local limiter, want 2", n)
	}
}

func (f *fakeStore) Snapshot(_ context.Context, prefix string, limit int) (map[string]SharedCount, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	c := f.c()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]SharedCount{}
	for k, e := range c.entries {
		if strings.HasPrefix(k, prefix) && len(out) < limit {
			out[k] = SharedCount{N: e.n, Left: time.Until(e.expires)}
		}
	}
	return out, nil
}

// A node that never looked at a blocked source (it started after the block) has the
// block from MirrorBlocks, and keeps it when the store goes down.
func TestMirrorBlocks(t *testing.T) {
	ctx := context.Background()
	store := newFakeStore()
	nodeA := &AuthThrottle{Counter: NewSharedCounter(store), Limit: 2, Cooldown: time.Minute}
	ip := netip.MustParseAddr("2001:db8::7")
	for range 2 {
		if a, refused := nodeA.Reserve(ctx, ip); refused == nil {
			a.Failed(ctx)
		}
	}
	counterB := NewSharedCounter(store)
	nodeB := &AuthThrottle{Counter: counterB, Limit: 2, Cooldown: time.Minute}
	if err := counterB.MirrorBlocks(ctx, store); err != nil {
		t.Fatal(err)
	}
	store.setDown(true)
	if nodeB.Check(ctx, netip.MustParseAddr("2001:db8::8")) == nil { // same /64
		t.Error("store down: node B lets in a source that node A blocked")
	}
	if nodeB.Check(ctx, netip.MustParseAddr("2001:db9::8")) != nil {
		t.Error("node B blocks a source nobody blocked")
	}
}
