// Package redisstore keeps the counters that several sealgate nodes share in Redis:
// fixed-window counts (the AUTH throttle's failures, attempts in flight and blocks),
// token buckets (per-identity message rates) and connection leases (connections per
// client address). Every operation is one Lua script, so it is atomic across nodes,
// and every key has a TTL, so a node that dies leaves nothing behind for longer than
// the window it counted.
//
// The store reports whether Redis answers (Up, and the OnChange hook, called once per
// change): while it does not, every operation fails at once with ErrUnavailable
// instead of waiting on a timeout, and a probe looks again every second. Falling back
// to this node's own counters is the caller's job (package submit); this package
// knows nothing of SMTP. Time in scripts is Redis's own (TIME), one clock for every
// node.
//
// It does not do: Redis Cluster key slots (keys of one operation are always one key),
// Sentinel discovery, or persistence settings (see README "Running several nodes").
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable is returned while Redis does not answer.
var ErrUnavailable = errors.New("redisstore: redis unavailable")

// Options configure Open.
type Options struct {
	// URL is redis://[user:password@]host:port[/db] or rediss:// for TLS.
	URL string
	// Password, if set, overrides the URL's (read from a file by the caller).
	Password string
	// Prefix is put before every key (default "sealgate:").
	Prefix string
	// Timeout bounds each operation, dial included (default 250ms): a counter that
	// cannot be had quickly is not worth holding a client up for.
	Timeout time.Duration
	// Log gets one line when Redis stops answering and one when it answers again.
	Log *slog.Logger
	// OnChange, if set, is called with the new state each time Up changes.
	OnChange func(up bool, err error)
}

// Store is a connection pool to one Redis server with sealgate's scripts.
type Store struct {
	rdb     *redis.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	change  func(bool, error)
	addr    string

	up     atomic.Bool
	mu     sync.Mutex
	lastEr error
	since  time.Time
	probed bool
	stop   chan struct{}
	done   chan struct{}
}

// Open parses the URL and starts the store; it does not wait for Redis to answer
// (a node starts and serves on local counters while Redis is down).
func Open(o Options) (*Store, error) {
	ro, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	if o.Password != "" {
		ro.Password = o.Password
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 250 * time.Millisecond
	}
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout, ro.PoolTimeout = timeout, timeout, timeout, timeout
	ro.MaxRetries = -1   // fail fast: the caller falls back, a retry only doubles the wait
	ro.DialerRetries = 1 // likewise for dialling (one attempt)
	quietOnce.Do(func() { redis.SetLogger(quietLogger{}) })
	ro.ContextTimeoutEnabled = true
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix := o.Prefix
	if prefix == "" {
		prefix = "sealgate:"
	}
	s := &Store{rdb: redis.NewClient(ro), prefix: prefix, timeout: timeout, log: log, change: o.OnChange,
		addr: ro.Addr, stop: make(chan struct{}), done: make(chan struct{}), since: time.Now()}
	s.probe() // the first state, without logging a change
	go s.watch()
	return s, nil
}

// go-redis logs pool errors to stderr by itself; the store reports the state once
// through Options.Log instead.
var quietOnce sync.Once

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// Addr is the Redis server's host:port.
func (s *Store) Addr() string { return s.addr }

// Close stops the probe and closes the pool.
func (s *Store) Close() error {
	close(s.stop)
	<-s.done
	return s.rdb.Close()
}

// Up reports whether Redis answered the last operation or probe.
func (s *Store) Up() bool { return s.up.Load() }

// Status is nil while Redis answers, else what went wrong and since when.
func (s *Store) Status() error {
	if s.up.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Errorf("redis %s unreachable since %s (%v)", s.addr, s.since.UTC().Format(time.RFC3339), s.lastEr)
}

const probeEvery = time.Second

func (s *Store) watch() {
	defer close(s.done)
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.probe()
		}
	}
}

func (s *Store) probe() {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	s.setState(s.rdb.Ping(ctx).Err())
}

// setState records the outcome of a call to Redis, logging and reporting changes
// (the first state too, except a healthy start, which Open's caller logs).
func (s *Store) setState(err error) {
	up := err == nil
	s.mu.Lock()
	was, first := s.up.Load(), !s.probed
	s.probed = true
	changed := first || was != up
	if changed {
		s.since = time.Now()
	}
	if !up {
		s.lastEr = err
	}
	s.up.Store(up)
	s.mu.Unlock()
	if !changed {
		return
	}
	switch {
	case up && !first:
		s.log.Info("shared counters: redis answers again; counting across nodes", "redis", s.addr)
	case !up:
		s.log.Warn("shared counters: redis unreachable; counting on this node only until it answers", "redis", s.addr, "err", err)
	}
	if s.change != nil {
		s.change(up, err)
	}
}

// run runs one script unless Redis is known to be down, and records whether Redis
// answered. A script's own error (a bug, not an outage) does not mark Redis down.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) (any, error) {
	if !s.up.Load() {
		return nil, ErrUnavailable
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	v, err := sc.Run(ctx, s.rdb, keys, args...).Result()
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		// A caller that gave up (its session ended) says nothing about Redis.
		if parent.Err() == nil {
			s.setState(err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return v, err
}

var (
	// Incr: INCR, and an expiry for a new key (or one that somehow has none).
	incrScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)
	// Decr: DECR only while the key exists and is above zero; the expiry stays.
	decrScript = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0`)
	// Get: the count and the milliseconds it has left.
	getScript = redis.NewScript(`
local n = redis.call('GET', KEYS[1])
if not n then return {0, 0} end
return {tonumber(n), redis.call('PTTL', KEYS[1])}`)
	// Allow: a token bucket of ARGV[1] tokens refilled over a minute, in a hash
	// {tokens, ts}; expires once it would be full again.
	allowScript = redis.NewScript(`
local burst = tonumber(ARGV[1])
local perMs = burst / 60000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * perMs)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 61000)
return ok`)
	// Acquire: a lease in a sorted set scored by expiry; expired leases are dropped
	// first, and a new one is taken only while fewer than ARGV[2] are held.
	acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`)
	// Renew: pushes the expiry of the leases ARGV[2..] held in KEYS[1] (only those
	// still there).
	renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`)
	releaseScript = redis.NewScript(`return redis.call('ZREM', KEYS[1], ARGV[1])`)
)

func ms(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// Incr adds one to key's count and returns the new count; a new count expires ttl
// after its first increment.
func (s *Store) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	v, err := s.run(ctx, incrScript, []string{s.prefix + key}, ms(ttl))
	if err != nil {
		return 0, err
	}
	return v.(int64), nil
}

// Decr takes one from key's count while it exists and is above zero.
func (s *Store) Decr(ctx context.Context, key string) error {
	_, err := s.run(ctx, decrScript, []string{s.prefix + key})
	return err
}

// Get returns key's count (0 if absent) and how long it has left.
func (s *Store) Get(ctx context.Context, key string) (int64, time.Duration, error) {
	v, err := s.run(ctx, getScript, []string{s.prefix + key})
	if err != nil {
		return 0, 0, err
	}
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return 0, 0, fmt.Errorf("redisstore: get %s: unexpected reply %v", key, v)
	}
	n, _ := a[0].(int64)
	left, _ := a[1].(int64)
	return n, time.Duration(max(left, 0)) * time.Millisecond, nil
}

// Allow takes one token from key's bucket of perMinute tokens a minute (burst
// perMinute) and reports whether there was one.
func (s *Store) Allow(ctx context.Context, key string, perMinute int) (bool, error) {
	if perMinute <= 0 {
		return true, nil
	}
	v, err := s.run(ctx, allowScript, []string{s.prefix + key}, perMinute)
	if err != nil {
		return false, err
	}
	return v.(int64) == 1, nil
}

// Acquire takes the lease member in key's set for lease, unless limit leases are
// held already; taking a lease held already succeeds.
func (s *Store) Acquire(ctx context.Context, key, member string, limit int, lease time.Duration) (bool, error) {
	v, err := s.run(ctx, acquireScript, []string{s.prefix + key}, member, limit, ms(lease))
	if err != nil {
		return false, err
	}
	return v.(int64) == 1, nil
}

// Renew extends the leases members hold in key by lease from now.
func (s *Store) Renew(ctx context.Context, key string, members []string, lease time.Duration) error {
	if len(members) == 0 {
		return nil
	}
	args := make([]any, 0, len(members)+1)
	args = append(args, ms(lease))
	for _, m := range members {
		args = append(args, m)
	}
	_, err := s.run(ctx, renewScript, []string{s.prefix + key}, args...)
	return err
}

// Release gives member's lease in key back.
func (s *Store) Release(ctx context.Context, key, member string) error {
	_, err := s.run(ctx, releaseScript, []string{s.prefix + key}, member)
	return err
}

// Count is one key's count and the time it has left, from Snapshot.
type Count struct {
	N    int64
	Left time.Duration
}

// Snapshot returns the counts of every key starting with prefix, at most limit of
// them (SCAN, so Redis is never blocked by one long command).
func (s *Store) Snapshot(ctx context.Context, prefix string, limit int) (map[string]Count, error) {
	if !s.up.Load() {
		return nil, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	out := make(map[string]Count)
	iter := s.rdb.Scan(ctx, 0, s.prefix+prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) && len(keys) < limit {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		s.setState(err)
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, k := range keys {
		n, left, err := s.Get(ctx, strings.TrimPrefix(k, s.prefix))
		if err != nil {
			return out, err
		}
		if n > 0 {
			out[strings.TrimPrefix(k, s.prefix)] = Count{N: n, Left: left}
		}
	}
	return out, nil
}

// String names the store for logs: the address, never the password.
func (s *Store) String() string { return "redis " + s.addr + " prefix " + strconv.Quote(s.prefix) }
