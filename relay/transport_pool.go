package relay

import (
	"context"
	"sync"
	"time"

	"sealgate/internal/smtpclient"
)

// idleClient is an open session waiting for its next transaction.
type idleClient struct {
	c     *smtpclient.Client
	since time.Time
}

// maxIdleAge bounds how long a connection waits unused; servers drop idle clients after
// a few minutes (RFC 5321 §4.5.3.2.7 suggests 5), so reuse stays well inside that.
const maxIdleAge = 30 * time.Second

// poolKey says which kept sessions may carry a message: the same server
// address, TLS name and mode, source address, HELO name and credentials.
type poolKey struct {
	addr   string // ip:port or host:port dialed
	server string // TLS server name
	mode   TLSMode
	source string
	helo   string
	auth   *Credentials
}

// pool keeps idle sessions per poolKey between messages and bounds the
// sessions carrying a transaction: max at once in all, perDest per server
// address. Idle sessions do not count against those limits; at most maxIdle
// are kept per key, each for at most maxIdleAge.
type pool struct {
	max, perDest, maxIdle int

	mu      sync.Mutex
	idle    map[poolKey][]idleClient
	busy    int
	busyTo  map[string]int
	changed chan struct{} // closed and replaced when a session is released
}

func newPool(max, perDest, maxIdle int) *pool {
	switch {
	case maxIdle == 0:
		maxIdle = DefaultWorkers // one for each of the Runner's workers
	case maxIdle < 0:
		maxIdle = 0
	}
	return &pool{max: max, perDest: perDest, maxIdle: maxIdle,
		idle: map[poolKey][]idleClient{}, busyTo: map[string]int{}, changed: make(chan struct{})}
}

// acquire waits until a session to dest may carry a transaction, and returns
// the function that ends that permission.
func (p *pool) acquire(ctx context.Context, dest string) (release func(), err error) {
	for {
		p.mu.Lock()
		if p.busy < p.max && p.busyTo[dest] < p.perDest {
			p.busy++
			p.busyTo[dest]++
			p.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					p.mu.Lock()
					p.busy--
					if p.busyTo[dest]--; p.busyTo[dest] == 0 {
						delete(p.busyTo, dest)
					}
					close(p.changed)
					p.changed = make(chan struct{})
					p.mu.Unlock()
				})
			}, nil
		}
		wait := p.changed
		p.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// take returns a kept session for k, or nil when there is none.
func (p *pool) take(k poolKey) (c *smtpclient.Client, reused bool) {
	for {
		p.mu.Lock()
		list := p.idle[k]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil, false
		}
		ic := list[len(list)-1]
		if len(list) == 1 {
			delete(p.idle, k)
		} else {
			p.idle[k] = list[:len(list)-1]
		}
		p.mu.Unlock()
		if !ic.c.Reusable() { // closed meanwhile
			continue
		}
		if time.Since(ic.since) > maxIdleAge {
			ic.c.Quit()
			continue
		}
		return ic.c, true
	}
}

// put keeps c for the next message to k, or ends it when enough are kept.
func (p *pool) put(k poolKey, c *smtpclient.Client) {
	p.mu.Lock()
	if len(p.idle[k]) < p.maxIdle {
		p.idle[k] = append(p.idle[k], idleClient{c: c, since: time.Now()})
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	c.Quit()
}

// closeIdle ends every kept session.
func (p *pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[poolKey][]idleClient{}
	p.mu.Unlock()
	for _, list := range idle {
		for _, ic := range list {
			ic.c.Quit()
		}
	}
}

// transaction builds the client's transaction from a spooled envelope.
func transaction(env *Envelope) *smtpclient.Transaction {
	tx := &smtpclient.Transaction{From: env.From, Size: env.Size, Ret: env.Ret, EnvID: env.EnvID,
		Submitter: env.Submitter, RequireTLS: env.RequireTLS, UTF8: env.UTF8, EightBit: env.EightBit, Rcpts: make([]smtpclient.Recipient, len(env.To))}
	for i, rcpt := range env.To {
		r := smtpclient.Recipient{Addr: rcpt}
		if len(env.Notify) > i {
			r.Notify = env.Notify[i]
		}
		if len(env.ORcpt) > i {
			r.ORcpt = env.ORcpt[i]
		}
		tx.Rcpts[i] = r
	}
	return tx
}
