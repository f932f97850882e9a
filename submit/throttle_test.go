package submit

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestAuthThrottle(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	mc := NewMemoryCounter(1000)
	mc.now = clock.now
	th := &AuthThrottle{Counter: mc, Limit: 3, Window: time.Minute, Cooldown: 5 * time.Minute}
	attacker := netip.MustParseAddr("198.51.100.7")
	other := netip.MustParseAddr("198.51.100.8")

	for i := 1; i <= 2; i++ {
		if e := th.Check(ctx, attacker); e != nil {
			t.Fatalf("blocked before failure %d: %v", i, e)
		}
		if e := th.Failure(ctx, attacker); e != nil {
			t.Fatalf("failure %d blocked: %v", i, e)
		}
	}
	e := th.Failure(ctx, attacker)
	if e == nil || e.Code != 421 || e.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) {
		t.Fatalf("third failure: %v", e)
	}
	if e := th.Check(ctx, attacker); e == nil || e.Code != 421 {
		t.Fatalf("not blocked after limit: %v", e)
	}
	if e := th.Check(ctx, other); e != nil {
		t.Fatalf("other source blocked: %v", e)
	}
	clock.advance(4 * time.Minute)
	if e := th.Check(ctx, attacker); e == nil {
		t.Fatal("block lifted before cool-down")
	}
	clock.advance(time.Minute)
	if e := th.Check(ctx, attacker); e != nil {
		t.Fatalf("still blocked after cool-down: %v", e)
	}

	// Failures spread wider than the window do not add up.
	for i := 0; i < 5; i++ {
		if e := th.Failure(ctx, other); e != nil {
			t.Fatalf("failure %d blocked", i)
		}
		clock.advance(31 * time.Second)
		if i%2 == 1 {
			clock.advance(time.Minute)
		}
	}
	if e := th.Check(ctx, other); e != nil {
		t.Fatalf("spread failures blocked: %v", e)
	}
}

// TestAuthThrottleInFlight checks Reserve's accounting: failures plus attempts in
// flight stay within the limit, a success gives its place back, and an attempt
// that finds no place in time gets 454 4.7.0.
func TestAuthThrottleInFlight(t *testing.T) {
	ctx := context.Background()
	th := &AuthThrottle{Counter: NewMemoryCounter(100), Limit: 3, Cooldown: time.Minute, Wait: 10 * time.Millisecond}
	ip := netip.MustParseAddr("192.0.2.9")
	var held []*AuthAttempt
	for i := 0; i < 3; i++ {
		a, e := th.Reserve(ctx, ip)
		if e != nil {
			t.Fatalf("attempt %d: %v", i+1, e)
		}
		held = append(held, a)
	}
	if _, e := th.Reserve(ctx, ip); e == nil || e.Code != 454 || e.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) {
		t.Fatalf("attempt past the limit in flight: %v, want 454 4.7.0", e)
	}
	held[0].Succeeded(ctx)
	held[0].Succeeded(ctx) // a second call gives back nothing more
	a, e := th.Reserve(ctx, ip)
	if e != nil {
		t.Fatalf("attempt after a success: %v", e)
	}
	if _, e := th.Reserve(ctx, ip); e == nil || e.Code != 454 {
		t.Fatalf("place given back twice: %v", e)
	}
	if e := held[1].Failed(ctx); e != nil {
		t.Fatalf("first failure: %v", e)
	}
	if e := held[2].Failed(ctx); e != nil {
		t.Fatalf("second failure: %v", e)
	}
	if e := a.Failed(ctx); e == nil || e.Code != 421 {
		t.Fatalf("third failure: %v, want 421", e)
	}
	if _, e := th.Reserve(ctx, ip); e == nil || e.Code != 421 {
		t.Fatalf("after the limit: %v, want 421", e)
	}
}

func TestAuthThrottleIPv6Prefix(t *testing.T) {
	ctx := context.Background()
	th := &AuthThrottle{Counter: NewMemoryCounter(100), Limit: 2, Cooldown: time.Minute}
	th.Failure(ctx, netip.MustParseAddr("2001:db8:1:2::1"))
	if e := th.Failure(ctx, netip.MustParseAddr("2001:db8:1:2::ffff")); e == nil {
		t.Fatal("same /64 not counted together")
	}
	if e := th.Check(ctx, netip.MustParseAddr("2001:db8:1:3::1")); e != nil {
		t.Fatal("other /64 blocked")
	}
	if e := th.Check(ctx, netip.MustParseAddr("2001:db8:1:2::9")); e == nil {
		t.Fatal("/64 not blocked")
	}
	// IPv4-mapped addresses count as IPv4.
	th.Failure(ctx, netip.MustParseAddr("192.0.2.1"))
	if e := th.Failure(ctx, netip.MustParseAddr("::ffff:192.0.2.1")); e == nil {
		t.Fatal("mapped address counted separately")
	}
}

func TestMemoryCounterBounded(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	mc := NewMemoryCounter(100)
	mc.now = clock.now
	for i := 0; i < 10_000; i++ {
		mc.Incr(ctx, fmt.Sprint("k", i), time.Hour)
		if mc.Len() > 100 {
			t.Fatalf("holds %d keys after %d inserts", mc.Len(), i+1)
		}
	}
	// After expiry the periodic sweep (every max/4 evictions) clears every expired
	// key; until it runs, a full map evicts sampled keys, so a few fresh ones may go.
	clock.advance(2 * time.Hour)
	for i := range 30 {
		mc.Incr(ctx, fmt.Sprint("fresh", i), time.Hour)
	}
	now := clock.now()
	for k, e := range mc.entries {
		if !now.Before(e.expires) {
			t.Fatalf("expired key %s kept after the sweep", k)
		}
	}
	if mc.Len() < 20 {
		t.Fatalf("only %d of 30 fresh keys kept", mc.Len())
	}
	if n, _ := mc.Get(ctx, "k9999"); n != 0 {
		t.Fatal("expired key counted")
	}
}

func TestMessageRate(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	ml := NewMemoryRateLimiter(100)
	ml.now = clock.now
	r := &MessageRate{Limiter: ml}
	a := NewIdentity("alice", KindLogin, nil)
	a.RatePerMinute = 3
	b := NewIdentity("bob", KindLogin, nil)
	b.RatePerMinute = 3
	for i := 0; i < 3; i++ {
		if e := r.Allow(ctx, a); e != nil {
			t.Fatalf("message %d refused: %v", i, e)
		}
	}
	e := r.Allow(ctx, a)
	if e == nil || e.Code != 451 || e.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
		t.Fatalf("fourth message: %v", e)
	}
	if e := r.Allow(ctx, b); e != nil {
		t.Fatalf("other identity limited: %v", e)
	}
	clock.advance(20 * time.Second) // one token back
	if e := r.Allow(ctx, a); e != nil {
		t.Fatalf("after refill: %v", e)
	}
	if e := r.Allow(ctx, a); e == nil {
		t.Fatal("second message after one refill accepted")
	}
	unlimited := NewIdentity("u", KindLogin, nil)
	for i := 0; i < 1000; i++ {
		if e := r.Allow(ctx, unlimited); e != nil {
			t.Fatal("unlimited identity limited")
		}
	}
	// Same name, other kind: separate budget.
	c := NewIdentity("alice", KindClientNetwork, nil)
	c.RatePerMinute = 1
	if e := r.Allow(ctx, c); e != nil {
		t.Fatal("kind not part of the key")
	}
	for i := 0; i < 10_000; i++ {
		ml.Allow(ctx, fmt.Sprint("k", i), 10)
	}
	if ml.Len() > 100 {
		t.Fatalf("rate limiter holds %d keys", ml.Len())
	}
}
