package submit

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"

	"sealgate/internal/smtpedge"
)

// ListenerMode is what a listener is for.
type ListenerMode string

// Listener modes: submission with STARTTLS (RFC 6409, port 587), submission over implicit TLS
// (RFC 8314, port 465), and smart-host relay for client organisations' servers (port 25/2525).
const (
	ModeSubmission  ListenerMode = "submission"
	ModeSubmissions ListenerMode = "submissions"
	ModeSmartHost   ListenerMode = "smarthost"
)

// Listener is one listening socket and the identities it accepts.
type Listener struct {
	Name    string
	Address string
	Mode    ListenerMode
	// Which identity kinds this listener accepts.
	SASL, ClientCert, Network bool
	// TLS is the server TLS configuration (TLS 1.2 or later); required for SASL.
	TLS *tls.Config
	// TrustedProxies are the load balancers whose connections begin with a PROXY
	// protocol header naming the real client (proxy.go); a connection from any
	// other address that sends one is refused.
	TrustedProxies []netip.Prefix
}

// Limits bound what one client may make us do.
type Limits struct {
	MaxMessageBytes int64
	MaxRecipients   int
	// MaxConnections bounds the connections on all listeners together; 0 = no bound.
	MaxConnections int
	// MaxConnectionsPerIP bounds the connections from one source address (IPv6: one
	// /64) on all listeners together, so that one client cannot take every slot;
	// 0 = DefaultMaxConnectionsPerIP.
	MaxConnectionsPerIP int
	// PreAuthTimeout bounds the time from the greeting to a successful AUTH or, for
	// a client known by its address or certificate, to an accepted MAIL;
	// 0 = DefaultPreAuthTimeout.
	PreAuthTimeout time.Duration
	// MaxHeaderFields bounds the number of header fields of a message;
	// 0 = DefaultMaxHeaderFields.
	MaxHeaderFields int
	CommandTimeout  time.Duration
	DataTimeout     time.Duration
}

// Defaults of the Limits whose zero value means "default".
const (
	DefaultMaxConnectionsPerIP = 20
	DefaultPreAuthTimeout      = 30 * time.Second
	DefaultMaxHeaderFields     = 1000
)

func (l Limits) maxPerIP() int {
	if l.MaxConnectionsPerIP > 0 {
		return l.MaxConnectionsPerIP
	}
	return DefaultMaxConnectionsPerIP
}

func (l Limits) preAuthTimeout() time.Duration {
	if l.PreAuthTimeout > 0 {
		return l.PreAuthTimeout
	}
	return DefaultPreAuthTimeout
}

func (l Limits) maxHeaderFields() int {
	if l.MaxHeaderFields > 0 {
		return l.MaxHeaderFields
	}
	return DefaultMaxHeaderFields
}

// Authenticator checks a login and password (the users file).
type Authenticator interface {
	Authenticate(login, password string) (*Identity, error)
}

// NetworkIdentity is a client organisation known by the addresses of its servers.
type NetworkIdentity struct {
	Prefixes []netip.Prefix
	Identity *Identity
}

// CertIdentity is a client known by its TLS client certificate: the SHA-256 fingerprint of
// the certificate (hex) or its subject's common name. Certificates must chain to the
// listener's client CA.
type CertIdentity struct {
	Fingerprint string
	Subject     string
	Identity    *Identity
}

// Server accepts mail on its listeners and hands each message to the Pipeline.
//
// Each connection is served by an smtp.Server of its own, so that its Debug
// writer, which sees every byte go-smtp reads after TLS is removed, belongs to
// that one connection (see smtpedge.WireScanner).
type Server struct {
	Hostname     string
	Listeners    []Listener
	Limits       Limits
	Users        Authenticator
	Networks     []NetworkIdentity
	Certs        []CertIdentity
	Pipeline     *Pipeline
	AuthThrottle *AuthThrottle // nil: no AUTH failure throttling
	Rate         *MessageRate  // nil: no per-identity message rate limit
	Flow         *FlowControl  // nil: MAIL never waits for delivery to catch up
	// SharedConnections, if set, holds MaxConnectionsPerIP across every node
	// behind the load balancer (nil: this node's connections only).
	SharedConnections *SharedConnections
	Log               *slog.Logger
	Metrics           Metrics // nil: nothing counted
	// ReportIntake, if set, takes DMARC aggregate reports mailed to our report
	// mailboxes on the smart-host listeners (reportintake.go).
	ReportIntake *ReportIntake

	mu      sync.Mutex
	lns     []net.Listener
	lcs     []Listener
	closed  bool
	conns   map[*clientConn]*smtp.Server // connections being served
	total   int                          // connections counted against MaxConnections
	perIP   map[string]int               // connections per sourceKey
	wg      sync.WaitGroup               // one per connection being served
	refusal chan struct{}                // bounds refusals in progress
	headers chan struct{}                // bounds PROXY headers being read (acceptProxied)
	refLog  *refusalLog
	live    atomic.Pointer[Settings] // see Reload

	draining atomic.Bool // see Drain
}

// Addrs returns the addresses the listeners are bound to, in order (after Listen).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, l := range s.lns {
		out = append(out, l.Addr())
	}
	return out
}

// Listen binds every listener. Serve must follow.
func (s *Server) Listen() error {
	s.mu.Lock()
	s.conns = make(map[*clientConn]*smtp.Server)
	s.perIP = make(map[string]int)
	s.refusal = make(chan struct{}, maxRefusalsInProgress)
	s.headers = make(chan struct{}, maxProxyHeadersInProgress)
	s.refLog = &refusalLog{log: s.Log, lim: rate.NewLimiter(1, 10)}
	s.mu.Unlock()
	for _, lc := range s.Listeners {
		if lc.SASL && lc.TLS == nil {
			s.Close()
			return fmt.Errorf("listener %s: SASL needs TLS (AUTH is only offered over TLS)", lc.Name)
		}
		if lc.Mode == ModeSubmissions && lc.TLS == nil {
			s.Close()
			return fmt.Errorf("listener %s: implicit TLS needs a TLS configuration", lc.Name)
		}
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			s.Close()
			return fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		if lc.TLS != nil {
			lc.TLS = withTLSStartHook(s.liveTLS(lc.Name, lc.TLS))
		}
		s.mu.Lock()
		s.lns = append(s.lns, ln)
		s.lcs = append(s.lcs, lc)
		s.mu.Unlock()
	}
	return nil
}

// Serve serves every listener until Close; it returns the first error.
func (s *Server) Serve() error {
	s.mu.Lock()
	lns, lcs := s.lns, s.lcs
	s.mu.Unlock()
	errs := make(chan error, len(lns))
	for i := range lns {
		go func() { errs <- s.acceptLoop(lns[i], lcs[i]) }()
	}
	return <-errs
}

// acceptLoop accepts connections until the listener is closed, retrying
// temporary failures (such as running out of file descriptors) with a backoff
// as net/http does.
func (s *Server) acceptLoop(ln net.Listener, lc Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.Log.Warn("accept failed; retrying", "listener", lc.Name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		peer := remoteIP(c)
		if lc.trustedProxy(peer) {
			select {
			case s.headers <- struct{}{}:
				go func() {
					defer func() { <-s.headers }()
					s.acceptProxied(c, lc, peer)
				}()
			default:
				// A balancer holding this many connections without a header is
				// misbehaving or is not a balancer; a goroutine each would let it
				// exhaust us. The connection is closed unread, as refuse does beyond
				// maxRefusalsInProgress.
				s.metrics().Refused(ReasonTooManyConnections)
				s.refLog.refused(lc.Name, peer, ReasonTooManyConnections,
					fmt.Sprintf("more than %d PROXY headers awaited at once", maxProxyHeadersInProgress))
				c.Close()
			}
			continue
		}
		s.serveConn(c, lc, peer)
	}
}

// serveConn admits c, a connection from the client at ip, within the connection
// limits and serves it, or refuses it with 421.
func (s *Server) serveConn(raw net.Conn, lc Listener, ip netip.Addr) {
	key := sourceKey(ip)
	s.mu.Lock()
	var refusal string
	var why Reason
	switch {
	case s.closed:
		s.mu.Unlock()
		raw.Close()
		return
	case s.draining.Load():
		refusal, why = "draining: this node takes no new sessions; try another or later", ReasonDraining
	case s.Limits.MaxConnections > 0 && s.total >= s.Limits.MaxConnections:
		refusal, why = "Too many connections, try again later", ReasonTooManyConnections
	case s.perIP[key] >= s.Limits.maxPerIP():
		r := errTooManyFromIP(s.Limits.maxPerIP())
		refusal, why = r.Message, r.Reason
	}
	if refusal != "" {
		s.mu.Unlock()
		s.metrics().Refused(why)
		s.refuse(raw, lc, ip, why, refusal)
		return
	}
	s.total++
	s.perIP[key]++
	cc := newClientConn(raw, s, lc, ip)
	var lease string // the connection's lease in SharedConnections, if it took one
	cc.release = func() {
		s.mu.Lock()
		s.total--
		if s.perIP[key]--; s.perIP[key] <= 0 {
			delete(s.perIP, key)
		}
		delete(s.conns, cc)
		s.mu.Unlock()
		if lease != "" {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s.SharedConnections.release(ctx, key, lease)
			cancel()
		}
	}
	srv := s.newSMTPServer(lc, cc)
	s.conns[cc] = srv
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		var conn net.Conn = cc
		if lc.Mode == ModeSubmissions {
			// The handshake runs here rather than in go-smtp so that we know when it
			// is complete (see clientConn.replyConn); it runs under the same
			// deadlines.
			tc := tls.Server(cc, lc.TLS)
			if d := s.Limits.CommandTimeout; d > 0 {
				tc.SetDeadline(time.Now().Add(d))
			} else {
				tc.SetReadDeadline(time.Time{}) // the pre-auth deadline still applies
			}
			if err := tc.Handshake(); err != nil {
				s.Log.Debug("TLS handshake failed", "listener", lc.Name, "client_ip", ip.String(), "err", err)
				cc.Close()
				return
			}
			cc.tlsReady(tc)
			conn = tc
		}
		if sc := s.SharedConnections; sc != nil {
			// The count across nodes, after this node's own (above). Asked here, not
			// in the accept loop, so a slow store holds up no other connection; on
			// the implicit-TLS port after the handshake, so the refusal is readable.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			member, ok, _ := sc.acquire(ctx, key, s.Limits.maxPerIP())
			cancel()
			if !ok {
				cc.abort(errTooManyFromIP(s.Limits.maxPerIP()))
				return
			}
			lease = member
		}
		srv.Serve(&smtpedge.OneConnListener{Conn: conn, Done: cc.done})
	}()
}

func errTooManyFromIP(n int) *Refusal {
	return refusal(ReasonTooManyConnectionsIP, 421, smtp.EnhancedCode{4, 7, 0},
		fmt.Sprintf("Too many connections from your address (at most %d), try again later", n))
}

// Refusals in progress at once; beyond that, a refused connection is closed
// without a reply rather than spending a goroutine and a TLS handshake on it.
const (
	maxRefusalsInProgress = 64
	// maxProxyHeadersInProgress bounds connections from trusted proxies whose
	// header has not arrived yet (each waits up to proxyHeaderTimeout). HAProxy
	// sends the header with the connection, so only a stalled or hostile peer
	// gets near it.
	maxProxyHeadersInProgress = 256
	refusalTimeout            = 5 * time.Second
)

// refuse answers a connection over the limits with 421 4.7.0 and closes it. On the
// implicit-TLS port the reply is given inside TLS, after the handshake, so the
// client sees an SMTP reply and not a TLS error.
func (s *Server) refuse(c net.Conn, lc Listener, ip netip.Addr, why Reason, msg string) {
	s.refLog.refused(lc.Name, ip, why, msg)
	select {
	case s.refusal <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-s.refusal }()
		defer c.Close()
		c.SetDeadline(time.Now().Add(refusalTimeout))
		if lc.Mode == ModeSubmissions {
			tc := tls.Server(c, lc.TLS)
			if err := tc.Handshake(); err != nil {
				return
			}
			c = tc
		}
		// The client has sent nothing but its TLS handshake yet (it waits for the
		// greeting), so closing right after the reply does not reset the
		// connection; no linger holds the slot of a refusal.
		enh := "4.7.0" // temporary security or policy condition
		if why == ReasonDraining {
			enh = "4.3.2" // system not accepting network messages (RFC 3463)
		}
		fmt.Fprintf(c, "421 %s %s %s\r\n", enh, s.Hostname, msg)
	}()
}

// refusalLog logs refused connections at a bounded rate: a flood of connections
// from one address must not become a flood of log lines. Lines left out are
// counted in the next one.
type refusalLog struct {
	log        *slog.Logger
	mu         sync.Mutex
	lim        *rate.Limiter
	suppressed int
}

func (r *refusalLog) refused(listener string, ip netip.Addr, why Reason, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.lim.Allow() {
		r.suppressed++
		return
	}
	r.log.Warn("connection refused", "reason", string(why), "listener", listener, "client_ip", ip.String(), "reply_text", msg, "suppressed_before", r.suppressed)
	r.suppressed = 0
}

// Close stops accepting and closes every connection.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	lns := s.lns
	conns := make(map[*clientConn]*smtp.Server, len(s.conns))
	for cc, srv := range s.conns {
		conns[cc] = srv
	}
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	for cc, srv := range conns {
		srv.Close() // ends the session (Logout)
		cc.Close()  // in case go-smtp has not taken the connection yet (TLS handshake)
	}
	return nil
}

// Drain stops taking sessions while the relay goes on delivering: a new
// connection is answered 421 4.3.2 at once (the listeners stay open, so a client
// that reaches this node after its balancer stopped routing here learns to go
// elsewhere instead of timing out), and each session ends at its next command as
// in Shutdown, after the message it is sending is received and answered. Resume
// undoes it for new connections.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.mu.Lock()
	conns := make([]*clientConn, 0, len(s.conns))
	for cc := range s.conns {
		conns = append(conns, cc)
	}
	s.mu.Unlock()
	for _, cc := range conns {
		cc.drain()
	}
}

// Resume takes new sessions again after Drain.
func (s *Server) Resume() { s.draining.Store(false) }

// Draining reports whether Drain is in force.
func (s *Server) Draining() bool { return s.draining.Load() }

// Sessions returns the number of connections being served.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting and ends every session at its next command with 421
// 4.3.2 (RFC 5321 §3.8): at once for a client waiting between commands, after
// the message is received and answered for one sending it. It waits up to ctx
// for the sessions to end, then closes those left (the client was not told 250
// for what they carried, so nothing is lost) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	lns := s.lns
	conns := make([]*clientConn, 0, len(s.conns))
	for cc := range s.conns {
		conns = append(conns, cc)
	}
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	for _, cc := range conns {
		cc.drain()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

func (s *Server) newSMTPServer(lc Listener, cc *clientConn) *smtp.Server {
	srv := smtp.NewServer(&backend{s: s, lc: lc, cc: cc})
	srv.Domain = s.Hostname
	srv.TLSConfig = nil
	if lc.Mode != ModeSubmissions {
		srv.TLSConfig = lc.TLS // STARTTLS where configured
	}
	srv.MaxMessageBytes = s.Limits.MaxMessageBytes
	srv.MaxRecipients = s.Limits.MaxRecipients
	srv.MaxLineLength = 1000 // RFC 5321 §4.5.3.1.6: text line, CRLF included
	srv.ReadTimeout = s.Limits.CommandTimeout
	srv.WriteTimeout = s.Limits.CommandTimeout
	// AUTH is advertised only over TLS by AuthMechanisms; this lets us answer AUTH on a
	// plain connection with 538 5.7.11 (RFC 4954 §6) instead of go-smtp's 523.
	srv.AllowInsecureAuth = true
	srv.EnableDSN = true
	// REQUIRETLS (RFC 8689 §3): go-smtp offers it only under TLS; delivery keeps
	// such a message to verified TLS (relay.Envelope.RequireTLS).
	srv.EnableREQUIRETLS = true
	// SMTPUTF8 (RFC 6531) on every listener: UTF-8 addresses and header fields
	// only in a transaction whose MAIL asked for it (errNonASCIIAddress,
	// errNonASCIIHeader); delivery carries it only to next hops that offer it
	// and bounces with 5.6.7 otherwise (relay, RFC 6531 §3.5). 8BITMIME is
	// always offered by go-smtp.
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slogLogger{s.Log}
	// go-smtp writes every byte it reads (and writes) to Debug, after TLS.
	srv.Debug = &smtpedge.WireScanner{Conn: cc}
	return srv
}

// slogLogger adapts slog to go-smtp's logger.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) { l.l.Warn(fmt.Sprintf(format, v...)) }
func (l slogLogger) Println(v ...any)               { l.l.Warn(fmt.Sprint(v...)) }

type backend struct {
	s  *Server
	lc Listener
	cc *clientConn
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if err := b.cc.closing(); err != nil {
		return nil, err
	}
	ip := b.cc.ip
	sess := &session{s: b.s, lc: b.lc, conn: c, cc: b.cc, ip: ip, log: b.s.Log.With("listener", b.lc.Name, "client_ip", ip.String())}
	if st, ok := c.TLSConnectionState(); ok {
		sess.tls = &st
		b.cc.tlsReady(c.Conn())
		b.s.metrics().TLSIn(st.Version)
		if b.lc.ClientCert && len(st.VerifiedChains) > 0 {
			sess.identity = b.s.certIdentity(st.VerifiedChains[0][0])
		}
	}
	if sess.identity == nil && b.lc.Network {
		sess.identity = b.s.networkIdentity(ip)
	}
	return sess, nil
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

func (s *Server) networkIdentity(ip netip.Addr) *Identity {
	for _, n := range s.settings().Networks {
		for _, p := range n.Prefixes {
			if p.Contains(ip) {
				return n.Identity
			}
		}
	}
	return nil
}

func (s *Server) certIdentity(cert *x509.Certificate) *Identity {
	sum := sha256.Sum256(cert.Raw)
	fp := hex.EncodeToString(sum[:])
	for _, c := range s.settings().Certs {
		if c.Fingerprint != "" && strings.EqualFold(strings.ReplaceAll(c.Fingerprint, ":", ""), fp) {
			return c.Identity
		}
		if c.Subject != "" && c.Subject == cert.Subject.CommonName {
			return c.Identity
		}
	}
	return nil
}
