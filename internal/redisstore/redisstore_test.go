package redisstore

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"sealgate/internal/sealgatetest"
)

// startRedis runs a real redis-server (Debian package redis-server) for the test:
// skipped when it is missing, failed when CI=true.
func startRedis(t *testing.T) *sealgatetest.Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found (install the Debian package redis-server; make deps does)")
		}
		t.Skip("redis-server not found (install the Debian package redis-server)")
	}
	r, err := sealgatetest.StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func TestStoreOnRedis(t *testing.T) {
	r := startRedis(t)
	var mu sync.Mutex
	var changes []bool
	s, err := Open(Options{URL: r.URL(), Prefix: "t:", OnChange: func(up bool, _ error) {
		mu.Lock()
		changes = append(changes, up)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if !s.Up() {
		t.Fatalf("redis at %s not up: %v", r.Addr, s.Status())
	}

	// Counts are atomic across concurrent callers: each sees a different value.
	seen := make(map[int64]bool)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.Incr(ctx, "k", time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen[n] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(seen) != 50 || !seen[1] || !seen[50] {
		t.Errorf("50 concurrent Incr saw %d distinct counts, want 1..50", len(seen))
	}
	n, left, err := s.Get(ctx, "k")
	if err != nil || n != 50 || left <= 0 || left > time.Minute {
		t.Errorf("Get = %d, %v, %v; want 50 with up to a minute left", n, left, err)
	}
	for range 60 {
		s.Decr(ctx, "k")
	}
	if n, _, _ := s.Get(ctx, "k"); n != 0 {
		t.Errorf("after 60 Decr of 50: %d, want 0 (never below zero)", n)
	}
	if err := s.Decr(ctx, "absent"); err != nil {
		t.Error(err)
	}
	if n, _, _ := s.Get(ctx, "absent"); n != 0 {
		t.Errorf("Decr created a key: %d", n)
	}

	// A new count expires after its TTL.
	s.Incr(ctx, "short", 50*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, _, _ := s.Get(ctx, "short")
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a count with a 50ms TTL still there after 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A token bucket of 3 a minute allows 3 at once.
	allowed := 0
	for range 5 {
		if ok, err := s.Allow(ctx, "rate", 3); err != nil {
			t.Fatal(err)
		} else if ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("Allow at 3/min: %d of 5, want 3", allowed)
	}

	// Leases: at most the limit held; a released lease frees its place; renewing keeps one.
	for i, want := range []bool{true, true, false} {
		ok, err := s.Acquire(ctx, "conn", []string{"a/1", "b/1", "a/2"}[i], 2, time.Minute)
		if err != nil || ok != want {
			t.Errorf("Acquire %d = %v, %v; want %v", i, ok, err, want)
		}
	}
	s.Release(ctx, "conn", "a/1")
	if ok, _ := s.Acquire(ctx, "conn", "a/3", 2, time.Minute); !ok {
		t.Error("no place after a release")
	}
	// A lease that is not renewed runs out (a node that died).
	s.Acquire(ctx, "dead", "x/1", 1, 100*time.Millisecond)
	renewed := 0
	for i := 0; i < 100; i++ {
		if ok, _ := s.Acquire(ctx, "dead", "y/1", 1, time.Minute); ok {
			break
		}
		renewed++
		time.Sleep(20 * time.Millisecond)
	}
	if renewed == 100 {
		t.Error("a lease of 100ms never ran out")
	}
	s.Acquire(ctx, "kept", "k/1", 1, 300*time.Millisecond)
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		if err := s.Renew(ctx, "kept", []string{"k/1"}, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := s.Acquire(ctx, "kept", "k/2", 1, time.Minute); ok {
		t.Error("a renewed lease ran out")
	}

	// Redis stops: calls fail at once with ErrUnavailable, Up turns false, and the
	// change is reported once; it comes back when Redis answers again.
	r.Stop()
	if _, err := s.Incr(ctx, "k", time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Incr with redis stopped: %v, want ErrUnavailable", err)
	}
	if s.Up() || s.Status() == nil {
		t.Error("still up with redis stopped")
	}
	for range 20 {
		if _, err := s.Incr(ctx, "k", time.Minute); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Incr while down: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || !changes[0] || changes[1] {
		t.Errorf("state changes %v, want [true false]", changes)
	}
}
