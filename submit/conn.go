package submit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/smtpedge"
)

// clientConn is the TCP connection of one client, beneath TLS and go-smtp. It
// holds the connection's slot (given back on Close), keeps every read deadline
// within the pre-authentication deadline, and ends the connection itself when a
// read outside DATA times out.
//
// Why it ends the connection itself: go-smtp reads commands with
// net/textproto's ReadLine, and bufio.Reader.ReadLine returns the bytes of an
// unfinished line with a nil error when the read beneath fails (a deadline, a
// closed connection): go-smtp then runs half a line as a command, and, as it
// re-arms its deadline per command, gives the client a whole new timeout. Under
// TLS nothing beneath go-smtp can tell where lines end, so the half line cannot
// be held back. Instead, at a timeout clientConn writes the 421 reply itself,
// closes the connection, and marks it closing: every later read fails at once,
// whatever go-smtp makes of the half line is answered to a closed connection,
// and every session callback refuses (clientConn.closing).
type clientConn struct {
	net.Conn
	s       *Server
	lc      Listener
	ip      netip.Addr
	release func()
	done    chan struct{} // closed by Close
	once    sync.Once
	// ctx is the connection's context, for the DNS, Redis and flow-control calls its
	// session makes; Close cancels it (context).
	ctx    context.Context
	cancel context.CancelFunc

	mu              sync.Mutex
	preAuthDeadline time.Time // zero once the client authenticated or started a transaction
	inData          int       // Data is running: its reads time out on purpose (deadlineReader)
	dataSeq         uint64    // calls of enterData, to tell one Data from the next (smtpedge.WireScanner)
	tlsStarted      bool      // a TLS handshake began on this connection (STARTTLS or implicit)
	tlsConn         net.Conn  // the TLS connection above, once its handshake is complete
	draining        bool      // the server is shutting down: end the session at its next command
	aborted         *smtp.SMTPError
	smuggled        bool                // smtpedge.WireScanner saw CR LF "." CR not followed by LF
	paths           []smtpedge.WirePath // MAIL and RCPT arguments as written, oldest first
	refusals        int                 // refused commands (see session.refused)
	sniffed         bool                // the client's first bytes were looked at (Read)

	// wire holds the wire* marks: what happened on the connection since
	// smtpedge.WireScanner's last Write (see wireCopy). Atomic, as abort may write from
	// another goroutine.
	wire atomic.Uint32
}

// Marks in clientConn.wire.
const (
	wireRead  = 1 << iota // Read returned bytes
	wireWrote             // Write wrote bytes
	wireFresh             // a TLS handshake began: the stream starts anew
)

func newClientConn(c net.Conn, s *Server, lc Listener, ip netip.Addr) *clientConn {
	cc := &clientConn{Conn: c, s: s, lc: lc, ip: ip, done: make(chan struct{}),
		preAuthDeadline: time.Now().Add(s.Limits.preAuthTimeout())}
	cc.ctx, cc.cancel = context.WithCancel(context.Background())
	c.SetReadDeadline(cc.preAuthDeadline)
	return cc
}

// context is the connection's context: cancelled once the connection is closed, so a
// lookup or a wait for a client that is gone (or a server that closed it) ends.
func (c *clientConn) context() context.Context {
	if c.ctx == nil {
		return context.Background()
	}
	return c.ctx
}

var (
	errPreAuthTimeout = func(host string, d time.Duration, smartHost bool) *Refusal {
		what := "no successful authentication"
		if smartHost {
			what = "no mail transaction"
		}
		return refusal(ReasonPreAuthTimeout, 421, smtp.EnhancedCode{4, 4, 2},
			fmt.Sprintf("%s %s within %s, closing connection", host, what, d))
	}
	errIdleTimeout = func(host string) *Refusal {
		return refusal(ReasonIdleTimeout, 421, smtp.EnhancedCode{4, 4, 2},
			host+" timeout waiting for the client, closing connection")
	}
	errShuttingDown = func(host string) *Refusal {
		return refusal(ReasonShuttingDown, 421, smtp.EnhancedCode{4, 3, 2},
			host+" shutting down, closing connection; try again later")
	}
	errSmuggling = refusal(ReasonSmuggling, 550, smtp.EnhancedCode{5, 6, 0},
		`a line "." followed by a bare CR; lines must end in CRLF (refused to prevent SMTP smuggling); closing connection`)
)

func (c *clientConn) Read(p []byte) (int, error) {
	if c.drainNow() {
		c.abort(errShuttingDown(c.s.Hostname))
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.wire.Or(wireRead)
		if !c.sniffed {
			// A PROXY header from the client itself, direct or behind a trusted
			// proxy's header, claims an address it does not have (proxy.go).
			c.sniffed = true
			if looksLikeProxyHeader(p[:n]) {
				c.abort(errUntrustedProxyHeader)
				return 0, net.ErrClosed
			}
		}
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.mu.Lock()
		inData, preAuth, draining := c.inData > 0, c.preAuthDeadline, c.draining
		c.mu.Unlock()
		if !inData {
			if draining {
				c.abort(errShuttingDown(c.s.Hostname))
			} else if !preAuth.IsZero() && !time.Now().Before(preAuth) {
				c.abort(errPreAuthTimeout(c.s.Hostname, c.s.Limits.preAuthTimeout(), !c.lc.SASL))
			} else {
				c.abort(errIdleTimeout(c.s.Hostname))
			}
			return n, net.ErrClosed
		}
	}
	return n, err
}

func (c *clientConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.wire.Or(wireWrote)
	}
	return n, err
}

// drain asks the connection to end at its next command with 421 4.3.2 (RFC 5321
// §3.8): a read waiting for one is woken at once; under DATA the message is
// received first, and answered, so that nothing the client was told 250 for is
// lost and nothing it was not is kept.
func (c *clientConn) drain() {
	c.mu.Lock()
	c.draining = true
	inData := c.inData > 0
	c.mu.Unlock()
	if !inData {
		c.Conn.SetReadDeadline(time.Now()) // wakes a blocked Read, which sees draining
	}
}

// drainNow reports whether a read outside DATA must end the session because the
// server is shutting down.
func (c *clientConn) drainNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining && c.inData == 0 && c.aborted == nil
}

// SetReadDeadline keeps t within the pre-authentication deadline.
func (c *clientConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.clamp(t))
}

// SetDeadline keeps the read deadline within the pre-authentication deadline.
func (c *clientConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetReadDeadline(c.clamp(t))
}

func (c *clientConn) clamp(t time.Time) time.Time {
	c.mu.Lock()
	d := c.preAuthDeadline
	c.mu.Unlock()
	if !d.IsZero() && (t.IsZero() || t.After(d)) {
		return d
	}
	return t
}

// authenticated ends the pre-authentication period: the next command read gets
// the ordinary command timeout.
func (c *clientConn) authenticated() {
	c.mu.Lock()
	was := c.preAuthDeadline
	c.preAuthDeadline = time.Time{}
	c.mu.Unlock()
	if !was.IsZero() && c.s.Limits.CommandTimeout <= 0 {
		// Without a command timeout go-smtp never sets a deadline again, so the
		// pre-authentication one would stay.
		c.Conn.SetReadDeadline(time.Time{})
	}
}

// enterData and leaveData bracket Data: reads under it time out on purpose
// (deadlineReader) and are the session's to handle.
func (c *clientConn) enterData() {
	c.mu.Lock()
	c.inData++
	c.dataSeq++
	c.mu.Unlock()
}

func (c *clientConn) leaveData() {
	c.mu.Lock()
	c.inData--
	c.mu.Unlock()
}

// tlsStarting records that a TLS handshake began: until it completes, nothing can
// be written to the client in plain text.
//
// What smtpedge.WireScanner recorded before is forgotten, the paths and the line it was
// in: go-smtp discards the plain-text bytes it read after STARTTLS (RFC 3207
// §6), so must we.
func (c *clientConn) tlsStarting() {
	c.mu.Lock()
	c.tlsStarted = true
	c.paths = nil
	c.mu.Unlock()
	c.wire.Or(wireFresh)
}

// tlsReady records the TLS connection above, once its handshake is complete.
func (c *clientConn) tlsReady(tc net.Conn) {
	if _, ok := tc.(*tls.Conn); !ok {
		return
	}
	c.mu.Lock()
	first := c.tlsConn == nil
	c.tlsStarted, c.tlsConn = true, tc
	c.mu.Unlock()
	if first {
		// The handshake's reads and writes beneath TLS have no copy in
		// smtpedge.WireScanner's stream (see wireCopy). tlsReady runs right after the
		// handshake (Serve for implicit TLS, session.Logout after STARTTLS) or,
		// after a STARTTLS before any EHLO, in NewSession, when the marks say
		// nothing more than the copy of that EHLO already took from them.
		c.wire.And(wireFresh)
	}
}

// replyConn is where a reply to the client can be written: the connection itself
// before TLS, the TLS connection after its handshake, nil in between.
func (c *clientConn) replyConn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.tlsConn != nil:
		return c.tlsConn
	case c.tlsStarted || c.lc.Mode == ModeSubmissions:
		return nil
	}
	return c
}

// closing returns the reply the connection was ended with, or nil while it is
// open. Session callbacks refuse once it is set.
func (c *clientConn) closing() *smtp.SMTPError {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.aborted
}

// How long abort waits for its reply to be written, and reads what the client
// still sends before closing.
const (
	abortWriteTimeout = 2 * time.Second
	abortLinger       = time.Second
	abortDrainBytes   = 1 << 20
)

// abort ends the connection with reply e: written where it can be (see
// replyConn), followed by a half-close and a bounded read of what the client
// still sends, so that closing does not reset the connection before the client
// reads the reply (see session.hangUp).
func (c *clientConn) abort(r *Refusal) {
	c.mu.Lock()
	if c.aborted != nil {
		c.mu.Unlock()
		return
	}
	e := r.SMTPError
	c.aborted = e
	c.mu.Unlock()
	c.s.metrics().Refused(r.Reason)
	if r.Reason != ReasonSmuggling { // logged where it was seen
		c.s.Log.Info("connection closed by the server", "reason", string(r.Reason), "listener", c.lc.Name, "client_ip", c.ip.String())
	}
	if w := c.replyConn(); w != nil {
		c.Conn.SetWriteDeadline(time.Now().Add(abortWriteTimeout))
		fmt.Fprintf(w, "%d %d.%d.%d %s\r\n", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
		if cw, ok := w.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		c.Conn.SetReadDeadline(time.Now().Add(abortLinger))
		io.Copy(io.Discard, io.LimitReader(c.Conn, abortDrainBytes))
	}
	c.Close()
}

// Close closes the connection and gives its slot back.
func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		close(c.done)
		if c.cancel != nil {
			c.cancel()
		}
		if c.release != nil {
			c.release()
		}
		c.mu.Lock()
		n := c.refusals - refusalsLogged
		c.mu.Unlock()
		if n > 0 {
			c.s.Log.Warn("refused commands not logged one by one", "listener", c.lc.Name, "client_ip", c.ip.String(), "count", n)
		}
	})
	return err
}

// countRefusal counts a refused command and reports whether it is among the
// first refusalsLogged of the connection, to be logged.
func (c *clientConn) countRefusal() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refusals++
	return c.refusals <= refusalsLogged
}

// CloseWrite half-closes the connection where the one underneath can (TCP), so that
// a reply written just before closing is followed by FIN at once (see session.hangUp).
func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// withTLSStartHook returns a copy of cfg that tells a clientConn when a TLS
// handshake begins on it (go-smtp runs STARTTLS's handshake itself).
func withTLSStartHook(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	next := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if cc, ok := hello.Conn.(*clientConn); ok {
			cc.tlsStarting()
		}
		if next != nil {
			return next(hello)
		}
		return nil, nil
	}
	return cfg
}

// WireCopy implements smtpedge.WireConn: it tells the scanner what the bytes it is handed are, from the marks
// set since its previous Write, and clears them: reply if they are the copy of a
// reply (bytes were written and none read), fresh if a TLS handshake began
// since (the stream starts anew at a line start).
func (c *clientConn) WireCopy() (reply, fresh bool) {
	m := c.wire.Swap(0)
	return m&wireWrote != 0 && m&wireRead == 0, m&wireFresh != 0
}

// maxWirePaths bounds the paths held: each is taken by the session callback for
// its command soon after it is read; lines of a message that happen to start
// with "MAIL" are never taken and only wait to be dropped.
const maxWirePaths = 64

// AddPath implements smtpedge.WireConn.
func (c *clientConn) AddPath(wp smtpedge.WirePath) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.paths) >= maxWirePaths {
		c.paths = c.paths[1:]
	}
	c.paths = append(c.paths, wp)
}

// takePath returns the mailbox as written of the oldest MAIL or RCPT argument
// (verb) that go-smtp passed on as value, and drops it and every older one.
func (c *clientConn) takePath(verb, value string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, wp := range c.paths {
		if wp.Verb == verb && wp.Value == value {
			c.paths = c.paths[i+1:]
			return wp.Mailbox, true
		}
	}
	return "", false
}

// DataState implements smtpedge.WireConn: it reports whether Data is running, and which call of it (enterData).
func (c *clientConn) DataState() (running bool, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inData > 0, c.dataSeq
}

// Smuggling implements smtpedge.WireConn: it records a line "." followed by a bare CR. Under DATA the session
// refuses the message (see smuggledData); anywhere else the connection ends now.
func (c *clientConn) Smuggling() {
	c.mu.Lock()
	c.smuggled = true
	inData := c.inData > 0
	c.mu.Unlock()
	if !inData {
		c.s.Log.Warn("connection closed: a line \".\" followed by a bare CR", "reason", string(ReasonSmuggling), "listener", c.lc.Name, "client_ip", c.ip.String())
		c.abort(errSmuggling)
	}
}

// smuggledData reports whether a line "." followed by a bare CR was seen, and
// forgets it (a BDAT message checks its own bytes, which keep the CR).
func (c *clientConn) smuggledData() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.smuggled
	c.smuggled = false
	return s
}
