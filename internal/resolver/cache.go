package resolver

import (
	"container/list"
	"context"
	"net"
	"slices"
	"sync"
	"time"
)

// Cache is a Resolver that keeps the answers of another for a while: for the checks the
// relay records on every message (SPF and iprev of a client that sends many), so that a
// busy client costs a few queries a minute, not a few per message. An answer, or a
// not-found answer (RFC 2308 lets negative answers be cached too), is kept for at most TTL;
// temporary failures are not kept. At most Size answers are kept, the least recently used
// going first. The TTLs of the records themselves are not known through Resolver, so TTL
// should be short (a minute). Safe for concurrent use.
type Cache struct {
	r    Resolver
	ttl  time.Duration
	size int
	now  func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]*list.Element
	lru     *list.List // of *cacheEntry, most recently used first
}

// Default limits of NewCache.
const (
	DefaultCacheTTL  = time.Minute
	DefaultCacheSize = 4096
)

type cacheKey struct {
	kind  byte   // 't' TXT, 'm' MX, 'i' IP, '4' A, '6' AAAA, 'p' PTR, 's' LookupSecure
	qtype uint16 // the type asked, for 's'
	name  string
}

type cacheEntry struct {
	key     cacheKey
	expires time.Time
	txt     []string
	mx      []net.MX
	ips     []net.IP
	sec     SecureAnswer // LookupSecure's answer, with its DNSSEC status
	err     error
}

// NewCache returns a Cache in front of r; ttl <= 0 means DefaultCacheTTL and size <= 0
// DefaultCacheSize.
func NewCache(r Resolver, ttl time.Duration, size int) *Cache {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Cache{r: r, ttl: ttl, size: size, now: time.Now, entries: map[cacheKey]*list.Element{}, lru: list.New()}
}

// Len returns the number of answers kept, expired ones included until they are evicted.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (c *Cache) get(k cacheKey) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.entries, k)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return e, true
}

// put keeps e unless its error is not a not-found answer.
func (c *Cache) put(e *cacheEntry) {
	if e.err != nil && !IsNotFound(e.err) {
		return
	}
	e.expires = c.now().Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[e.key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.entries[e.key] = c.lru.PushFront(e)
	for c.lru.Len() > c.size {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).key)
	}
}

// normName makes names that differ only in case or a trailing dot one key.
func normName(name string) string {
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	b := []byte(name)
	for i, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			b[i] = ch + 'a' - 'A'
		}
	}
	return string(b)
}

// LookupTXT implements Resolver.
func (c *Cache) LookupTXT(ctx context.Context, name string) ([]string, error) {
	k := cacheKey{kind: 't', name: normName(name)}
	if e, ok := c.get(k); ok {
		return slices.Clone(e.txt), e.err
	}
	txt, err := c.r.LookupTXT(ctx, name)
	c.put(&cacheEntry{key: k, txt: slices.Clone(txt), err: err})
	return txt, err
}

// LookupMX implements Resolver.
func (c *Cache) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	k := cacheKey{kind: 'm', name: normName(name)}
	if e, ok := c.get(k); ok {
		return mxPointers(e.mx), e.err
	}
	mxs, err := c.r.LookupMX(ctx, name)
	e := &cacheEntry{key: k, err: err}
	for _, m := range mxs {
		e.mx = append(e.mx, *m)
	}
	c.put(e)
	return mxs, err
}

func mxPointers(mx []net.MX) []*net.MX {
	if mx == nil {
		return nil
	}
	out := make([]*net.MX, len(mx))
	for i := range mx {
		m := mx[i]
		out[i] = &m
	}
	return out
}

// LookupIP implements Resolver.
func (c *Cache) LookupIP(ctx context.Context, name string) ([]net.IP, error) {
	k := cacheKey{kind: 'i', name: normName(name)}
	if e, ok := c.get(k); ok {
		return cloneIPs(e.ips), e.err
	}
	ips, err := c.r.LookupIP(ctx, name)
	c.put(&cacheEntry{key: k, ips: cloneIPs(ips), err: err})
	return ips, err
}

func cloneIPs(ips []net.IP) []net.IP {
	if ips == nil {
		return nil
	}
	out := make([]net.IP, len(ips))
	for i, ip := range ips {
		out[i] = slices.Clone(ip)
	}
	return out
}

// LookupAddr implements Resolver.
func (c *Cache) LookupAddr(ctx context.Context, ip string) ([]string, error) {
	k := cacheKey{kind: 'p', name: normName(ip)}
	if e, ok := c.get(k); ok {
		return slices.Clone(e.txt), e.err
	}
	names, err := c.r.LookupAddr(ctx, ip)
	c.put(&cacheEntry{key: k, txt: slices.Clone(names), err: err})
	return names, err
}

// lookupIPFamily is LookupIPFamily through the cache: each family is kept apart, so that a
// failure of one does not become the other's answer.
func (c *Cache) lookupIPFamily(ctx context.Context, name string, v6 bool) ([]net.IP, error) {
	kind := byte('4')
	if v6 {
		kind = '6'
	}
	k := cacheKey{kind: kind, name: normName(name)}
	if e, ok := c.get(k); ok {
		return cloneIPs(e.ips), e.err
	}
	ips, err := LookupIPFamily(ctx, c.r, name, v6)
	c.put(&cacheEntry{key: k, ips: cloneIPs(ips), err: err})
	return ips, err
}
