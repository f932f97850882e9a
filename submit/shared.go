package submit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// SharedStore is where several nodes behind one load balancer count together:
// package internal/redisstore implements it on Redis. Each method is atomic across
// nodes and fails at once (an error) while the store is unreachable.
type SharedStore interface {
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	Decr(ctx context.Context, key string) error
	// Get returns the count and the time it has left.
	Get(ctx context.Context, key string) (int64, time.Duration, error)
	Allow(ctx context.Context, key string, perMinute int) (bool, error)
	Acquire(ctx context.Context, key, member string, limit int, lease time.Duration) (bool, error)
	Renew(ctx context.Context, key string, members []string, lease time.Duration) error
	Release(ctx context.Context, key, member string) error
}

// SharedCounter is a Counter kept in a SharedStore, so that the AUTH throttle holds
// across nodes: a limit of 5 failures is 5 for the whole cluster, not 5 per node.
//
// Every count is also kept in Local, this node's own counter, and raised there to
// what the store reports whenever the store is read. While the store is unreachable
// the node counts on Local alone; and whatever the store loses (unreachable, or
// restarted without its data), a source this node saw blocked or counted stays so
// until its own expiry: a count is the larger of the two, never the lower.
type SharedCounter struct {
	Store SharedStore
	Local *MemoryCounter
}

// NewSharedCounter returns a SharedCounter with a local counter of 100 000 keys.
func NewSharedCounter(store SharedStore) *SharedCounter {
	return &SharedCounter{Store: store, Local: NewMemoryCounter(100_000)}
}

// Incr implements Counter.
func (c *SharedCounter) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	l, _ := c.Local.Incr(ctx, key, ttl)
	n, err := c.Store.Incr(ctx, key, ttl)
	if err != nil {
		return l, nil
	}
	if n > l {
		c.Local.raise(key, n, ttl)
	}
	return max(n, l), nil
}

// Decr implements Counter.
func (c *SharedCounter) Decr(ctx context.Context, key string) error {
	c.Local.Decr(ctx, key)
	c.Store.Decr(ctx, key)
	return nil
}

// Get implements Counter.
func (c *SharedCounter) Get(ctx context.Context, key string) (int64, error) {
	l, _ := c.Local.Get(ctx, key)
	n, left, err := c.Store.Get(ctx, key)
	if err != nil {
		return l, nil
	}
	if n > l {
		c.Local.raise(key, n, left)
	}
	return max(n, l), nil
}

// Snapshotter is a SharedStore that can list counts by key prefix (redisstore.Store
// through an adapter in cmd/sealgate).
type Snapshotter interface {
	Snapshot(ctx context.Context, prefix string, limit int) (map[string]SharedCount, error)
}

// SharedCount is a count and the time it has left.
type SharedCount struct {
	N    int64
	Left time.Duration
}

// blockPrefix is the key prefix of AuthThrottle's blocks.
const blockPrefix = "authblock|"

// MirrorBlocks copies every AUTH block the store holds into Local, so that a source
// another node blocked stays blocked here if the store then goes away (unreachable,
// or restarted empty). Run it at start and every few seconds (WatchBlocks).
func (c *SharedCounter) MirrorBlocks(ctx context.Context, from Snapshotter) error {
	blocks, err := from.Snapshot(ctx, blockPrefix, 100_000)
	for k, v := range blocks {
		c.Local.raise(k, v.N, v.Left)
	}
	return err
}

// WatchBlocks runs MirrorBlocks every interval until stop is closed.
func (c *SharedCounter) WatchBlocks(from Snapshotter, every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			c.MirrorBlocks(ctx, from)
			cancel()
		}
	}
}

// raise sets key's count to at least n, expiring no sooner than ttl from now.
func (c *MemoryCounter) raise(key string, n int64, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	e, ok := c.entries[key]
	if !ok || !now.Before(e.expires) {
		if !ok && len(c.entries) >= c.max {
			makeRoom(c.entries, c.max, &c.sweeps,
				func(e counterEntry) bool { return !now.Before(e.expires) },
				func(e counterEntry) time.Time { return e.expires })
		}
		e = counterEntry{}
	}
	e.n = max(e.n, n)
	if exp := now.Add(ttl); exp.After(e.expires) {
		e.expires = exp
	}
	c.entries[key] = e
}

// SharedRateLimiter is a RateLimiter kept in a SharedStore, falling back to Local
// (each node's own budget) while the store is unreachable.
type SharedRateLimiter struct {
	Store SharedStore
	Local *MemoryRateLimiter
}

// NewSharedRateLimiter returns a SharedRateLimiter with a local limiter of 100 000 keys.
func NewSharedRateLimiter(store SharedStore) *SharedRateLimiter {
	return &SharedRateLimiter{Store: store, Local: NewMemoryRateLimiter(100_000)}
}

// Allow implements RateLimiter.
func (r *SharedRateLimiter) Allow(ctx context.Context, key string, perMinute int) (bool, error) {
	ok, err := r.Store.Allow(ctx, key, perMinute)
	if err != nil {
		return r.Local.Allow(ctx, key, perMinute)
	}
	return ok, nil
}

// SharedConnections counts the connections from each client address (IPv6: /64)
// across nodes, against Limits.MaxConnectionsPerIP. A connection holds a lease in the
// store, renewed while it lasts; a node that dies stops renewing, and its leases run
// out after Lease. While the store is unreachable each node counts on its own.
type SharedConnections struct {
	Store SharedStore
	// Node names this node in lease names (its hostname: unique per node).
	Node string
	// Lease is how long a lease lives unrenewed (default 2 minutes); leases are
	// renewed every Lease/3.
	Lease time.Duration

	seq   atomic.Uint64
	mu    sync.Mutex
	live  map[string]map[string]struct{} // key -> members held by this node
	start sync.Once
	stop  chan struct{}
}

const defaultConnLease = 2 * time.Minute

func (c *SharedConnections) lease() time.Duration {
	if c.Lease > 0 {
		return c.Lease
	}
	return defaultConnLease
}

// acquire takes a lease for one more connection from source key, unless limit are
// held. ok is true when the store could not be asked (err set): the node's own
// count, checked before, is what holds then.
func (c *SharedConnections) acquire(ctx context.Context, key string, limit int) (member string, ok bool, err error) {
	c.start.Do(func() {
		c.stop = make(chan struct{})
		go c.renew(c.stop)
	})
	member = fmt.Sprintf("%s/%d", c.Node, c.seq.Add(1))
	got, err := c.Store.Acquire(ctx, "conn|"+key, member, limit, c.lease())
	if err != nil {
		return "", true, err
	}
	if !got {
		return "", false, nil
	}
	c.mu.Lock()
	if c.live == nil {
		c.live = make(map[string]map[string]struct{})
	}
	if c.live[key] == nil {
		c.live[key] = make(map[string]struct{})
	}
	c.live[key][member] = struct{}{}
	c.mu.Unlock()
	return member, true, nil
}

// release gives a lease back.
func (c *SharedConnections) release(ctx context.Context, key, member string) {
	if member == "" {
		return
	}
	c.mu.Lock()
	if m := c.live[key]; m != nil {
		delete(m, member)
		if len(m) == 0 {
			delete(c.live, key)
		}
	}
	c.mu.Unlock()
	c.Store.Release(ctx, "conn|"+key, member)
}

func (c *SharedConnections) renew(stop <-chan struct{}) {
	t := time.NewTicker(c.lease() / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		held := make(map[string][]string, len(c.live))
		for k, m := range c.live {
			for member := range m {
				held[k] = append(held[k], member)
			}
		}
		c.mu.Unlock()
		for k, members := range held {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c.Store.Renew(ctx, "conn|"+k, members, c.lease())
			cancel()
		}
	}
}

// Stop ends the renewal of leases (at the end of serve).
func (c *SharedConnections) Stop() {
	c.start.Do(func() {})
	if c.stop != nil {
		close(c.stop)
	}
}
