package submit

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"
)

// Counter counts events per key in fixed windows. It is the storage behind
// AuthThrottle; the in-memory MemoryCounter serves one node, and a shared store
// can replace it for several (Incr = Redis INCR + PEXPIRE NX, Get = GET, Decr = a
// script that runs DECR only while the key exists and is above zero). Incr is
// atomic and returns the new count, so a caller can count an event and check the
// limit in one step: concurrent callers, on one node or several, each see a
// different count.
type Counter interface {
	// Incr adds one to key's count and returns the new count. A new count
	// expires ttl after its first increment.
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	// Decr takes one from key's count if the key exists and its count is above
	// zero; it never creates a key and leaves the expiry alone.
	Decr(ctx context.Context, key string) error
	// Get returns key's current count, 0 if absent or expired.
	Get(ctx context.Context, key string) (int64, error)
}

// MemoryCounter is a Counter in process memory holding at most a fixed number of
// keys. When full it drops expired keys (in an amortised sweep) or the sampled key
// that expires soonest, so memory stays bounded under a flood of sources.
type MemoryCounter struct {
	mu      sync.Mutex
	max     int
	entries map[string]counterEntry
	sweeps  int
	now     func() time.Time
}

type counterEntry struct {
	n       int64
	expires time.Time
}

// NewMemoryCounter returns a MemoryCounter holding at most maxKeys keys
// (minimum 16).
func NewMemoryCounter(maxKeys int) *MemoryCounter {
	return &MemoryCounter{max: max(maxKeys, 16), entries: make(map[string]counterEntry), now: time.Now}
}

// Incr implements Counter.
func (c *MemoryCounter) Incr(_ context.Context, key string, ttl time.Duration) (int64, error) {
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
		e = counterEntry{expires: now.Add(ttl)}
	}
	e.n++
	c.entries[key] = e
	return e.n, nil
}

// Decr implements Counter.
func (c *MemoryCounter) Decr(_ context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if ok && c.now().Before(e.expires) && e.n > 0 {
		e.n--
		c.entries[key] = e
	}
	return nil
}

// Get implements Counter.
func (c *MemoryCounter) Get(_ context.Context, key string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.now().Before(e.expires) {
		return 0, nil
	}
	return e.n, nil
}

// Len returns the number of keys held, expired or not.
func (c *MemoryCounter) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// makeRoom frees one slot of a full map. Every max/4 calls it first drops every
// expired key (amortised O(1) per insert); otherwise, among a few keys taken in Go's
// random map order, it drops the one whose time (expiry or last use) is earliest, as
// Redis approximates LRU. A flood of new keys therefore never costs a scan per insert.
func makeRoom[V any](m map[string]V, max int, sweeps *int, expired func(V) bool, when func(V) time.Time) {
	if *sweeps++; *sweeps >= max/4 {
		*sweeps = 0
		for k, v := range m {
			if expired(v) {
				delete(m, k)
			}
		}
		if len(m) < max {
			return
		}
	}
	var victim string
	var earliest time.Time
	i := 0
	for k, v := range m {
		if t := when(v); i == 0 || t.Before(earliest) {
			victim, earliest = k, t
		}
		if i++; i == 8 {
			break
		}
	}
	delete(m, victim)
}

// AuthThrottle blocks AUTH from a source address after repeated failures:
// once Limit failures fall within Window, every AUTH from that source gets
// 421 4.7.0 for Cooldown. IPv6 sources are counted per /64, since one host
// usually holds a whole /64.
//
// The limit also holds for attempts whose password is still being checked: an
// attempt is counted as in flight before its check starts (Reserve), and a check
// starts only while failures plus attempts in flight stay within Limit. Each
// count is one atomic increment, so this holds across connections and, with a
// shared Counter, across nodes. Sixty connections sending AUTH at the same
// moment get Limit password checks between them, not sixty: the others wait for
// a free place (a success gives its place back at once), and are refused
// without a check once the failures reach the limit.
//
// A success does not count and does not reset the failures: a mail client
// authenticates on every connection, and an office behind one NAT address must
// not lock itself out by logging in; and a client sharing the address must not
// be able to clear an attacker's failures, nor an attacker to clear its own
// with a throwaway account.
type AuthThrottle struct {
	Counter  Counter
	Limit    int           // failures allowed in Window before blocking (default 5)
	Window   time.Duration // failure counting window (default Cooldown)
	Cooldown time.Duration // how long a blocked source stays blocked (default 5m)
	// Wait is how long an attempt waits for a free place among the attempts in
	// flight before it is refused with 454 4.7.0 (default 10s).
	Wait time.Duration
}

// NewAuthThrottle returns an AuthThrottle on a MemoryCounter of 100 000 keys.
func NewAuthThrottle(limit int, cooldown time.Duration) *AuthThrottle {
	return &AuthThrottle{Counter: NewMemoryCounter(100_000), Limit: limit, Window: cooldown, Cooldown: cooldown}
}

func (t *AuthThrottle) params() (limit int64, window, cooldown time.Duration) {
	limit, window, cooldown = int64(t.Limit), t.Window, t.Cooldown
	if limit <= 0 {
		limit = 5
	}
	if cooldown <= 0 {
		cooldown = 5 * time.Minute
	}
	if window <= 0 {
		window = cooldown
	}
	return
}

// How often a waiting attempt looks again, and how long an in-flight count
// lives if the node holding it dies before giving it back.
const (
	authWaitPoll    = 50 * time.Millisecond
	inFlightTTL     = 2 * time.Minute
	defaultAuthWait = 10 * time.Second
)

func sourceKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func errAuthBlocked(cooldown time.Duration) *Refusal {
	// 421 closes the connection (RFC 5321 §3.8); 4.7.0 = temporary security condition.
	return refusal(ReasonAuthThrottled, 421, smtp.EnhancedCode{4, 7, 0},
		fmt.Sprintf("too many failed authentications from your address; try again in %s", cooldown))
}

// errAuthSourceBusy answers an attempt that found no free place in time: 454 4.7.0,
// temporary authentication failure (RFC 4954 §6).
var errAuthSourceBusy = refusal(ReasonAuthThrottled, 454, smtp.EnhancedCode{4, 7, 0},
	"too many authentications in progress from your address; try again later")

// Check returns 421 4.7.0 if ip is blocked, else nil. Call it before running a
// SASL exchange. A storage error fails open (nil): the throttle is a defence
// against guessing, not an authentication step.
func (t *AuthThrottle) Check(ctx context.Context, ip netip.Addr) *Refusal {
	_, _, cooldown := t.params()
	n, err := t.Counter.Get(ctx, blockPrefix+sourceKey(ip))
	if err == nil && n > 0 {
		return errAuthBlocked(cooldown)
	}
	return nil
}

// AuthAttempt is one AUTH attempt in flight, between Reserve and the outcome of
// its password check.
type AuthAttempt struct {
	t    *AuthThrottle
	key  string
	done bool
}

// Reserve counts one AUTH attempt from ip as in flight before its password is
// checked, waiting up to Wait for failures plus attempts in flight to leave it a
// place within Limit. It returns 421 4.7.0 when ip is blocked or its failures
// reach the limit meanwhile, and 454 4.7.0 when no place came free in time; the
// caller must then not check the password. Otherwise the caller checks it and
// reports the outcome with Succeeded or Failed.
func (t *AuthThrottle) Reserve(ctx context.Context, ip netip.Addr) (*AuthAttempt, *Refusal) {
	limit, _, cooldown := t.params()
	key := sourceKey(ip)
	wait := t.Wait
	if wait <= 0 {
		wait = defaultAuthWait
	}
	deadline := time.Now().Add(wait)
	for {
		if e := t.Check(ctx, ip); e != nil {
			return nil, e
		}
		failures, err := t.Counter.Get(ctx, "authfail|"+key)
		if err == nil && failures >= limit {
			t.Counter.Incr(ctx, blockPrefix+key, cooldown)
			return nil, errAuthBlocked(cooldown)
		}
		inFlight, err := t.Counter.Incr(ctx, "authtry|"+key, inFlightTTL)
		if err != nil || failures+inFlight <= limit {
			return &AuthAttempt{t: t, key: key}, nil
		}
		t.Counter.Decr(ctx, "authtry|"+key)
		if !time.Now().Before(deadline) {
			return nil, errAuthSourceBusy
		}
		select {
		case <-ctx.Done():
			return nil, errAuthSourceBusy
		case <-time.After(authWaitPoll):
		}
	}
}

// Succeeded ends a successful attempt: its place is given back, nothing counted.
func (a *AuthAttempt) Succeeded(ctx context.Context) {
	if !a.done {
		a.done = true
		a.t.Counter.Decr(ctx, "authtry|"+a.key)
	}
}

// Failed counts the failure, gives the place back, and returns 421 4.7.0 if the
// source has now reached its limit (the caller then answers with it instead of
// 535).
func (a *AuthAttempt) Failed(ctx context.Context) *Refusal {
	if a.done {
		return nil
	}
	a.done = true
	limit, window, cooldown := a.t.params()
	// Counted before the place is given back, so that failures plus attempts in
	// flight never read lower than they are.
	n, err := a.t.Counter.Incr(ctx, "authfail|"+a.key, window)
	a.t.Counter.Decr(ctx, "authtry|"+a.key)
	if err != nil || n < limit {
		return nil
	}
	a.t.Counter.Incr(ctx, blockPrefix+a.key, cooldown)
	return errAuthBlocked(cooldown)
}

// Failure records a failed AUTH from ip that was not reserved, and returns 421
// 4.7.0 if this failure blocks the source.
func (t *AuthThrottle) Failure(ctx context.Context, ip netip.Addr) *Refusal {
	if e := t.Check(ctx, ip); e != nil {
		return e
	}
	a := &AuthAttempt{t: t, key: sourceKey(ip)}
	a.t.Counter.Incr(ctx, "authtry|"+a.key, inFlightTTL)
	return a.Failed(ctx)
}

// RateLimiter decides whether one more event for key fits a per-minute budget.
// MemoryRateLimiter is the in-process version; a shared store can replace it.
type RateLimiter interface {
	Allow(ctx context.Context, key string, perMinute int) (bool, error)
}

// MemoryRateLimiter is a token-bucket RateLimiter (golang.org/x/time/rate) per
// key, refilling perMinute tokens a minute with a burst of perMinute. It holds at
// most a fixed number of keys; a key idle for a minute has a full bucket again,
// so dropping it loses nothing.
type MemoryRateLimiter struct {
	mu       sync.Mutex
	max      int
	limiters map[string]*rateEntry
	sweeps   int
	now      func() time.Time
}

type rateEntry struct {
	lim       *rate.Limiter
	perMinute int
	last      time.Time
}

// NewMemoryRateLimiter returns a MemoryRateLimiter holding at most maxKeys keys
// (minimum 16).
func NewMemoryRateLimiter(maxKeys int) *MemoryRateLimiter {
	return &MemoryRateLimiter{max: max(maxKeys, 16), limiters: make(map[string]*rateEntry), now: time.Now}
}

// Allow implements RateLimiter. perMinute <= 0 always allows.
func (m *MemoryRateLimiter) Allow(_ context.Context, key string, perMinute int) (bool, error) {
	if perMinute <= 0 {
		return true, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	e, ok := m.limiters[key]
	if !ok || e.perMinute != perMinute {
		if !ok && len(m.limiters) >= m.max {
			makeRoom(m.limiters, m.max, &m.sweeps,
				func(e *rateEntry) bool { return now.Sub(e.last) >= time.Minute }, // idle a minute: bucket full again
				func(e *rateEntry) time.Time { return e.last })
		}
		e = &rateEntry{lim: rate.NewLimiter(rate.Limit(float64(perMinute)/60), perMinute), perMinute: perMinute}
		m.limiters[key] = e
	}
	e.last = now
	return e.lim.AllowN(now, 1), nil
}

// Len returns the number of keys held.
func (m *MemoryRateLimiter) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.limiters)
}

// MessageRate applies each identity's RatePerMinute.
type MessageRate struct {
	Limiter RateLimiter
}

// NewMessageRate returns a MessageRate on a MemoryRateLimiter of 100 000 keys.
func NewMessageRate() *MessageRate {
	return &MessageRate{Limiter: NewMemoryRateLimiter(100_000)}
}

func errRateLimited(id *Identity) *Refusal {
	// 451 4.7.1: temporary policy deferral (RFC 3463 X.7.1); the client retries.
	return refusal(ReasonRateLimited, 451, smtp.EnhancedCode{4, 7, 1},
		fmt.Sprintf("%s may send %d messages per minute; try again later", id, id.RatePerMinute))
}

// Allow takes one message from id's budget and returns 451 4.7.1 when it is
// spent. Call it once per message (at MAIL FROM). Identities are keyed by kind
// and name; a storage error fails open.
func (r *MessageRate) Allow(ctx context.Context, id *Identity) *Refusal {
	if id == nil || id.RatePerMinute <= 0 {
		return nil
	}
	ok, err := r.Limiter.Allow(ctx, fmt.Sprintf("%d|%s", id.Kind, id.Name), id.RatePerMinute)
	if err == nil && !ok {
		return errRateLimited(id)
	}
	return nil
}
