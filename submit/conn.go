package submit

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
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

	mu              sync.Mutex
	preAuthDeadline time.Time // zero once the client authenticated or started a transaction
	inData          int       // Data is running: its reads time out on purpose (deadlineReader)
	dataSeq         uint64    // calls of enterData, to tell one Data from the next (wireScanner)
	tlsStarted      bool      // a TLS handshake began on this connection (STARTTLS or implicit)
	tlsConn         net.Conn  // the TLS connection above, once its handshake is complete
	draining        bool      // the server is shutting down: end the session at its next command
	aborted         *smtp.SMTPError
	smuggled        bool       // wireScanner saw CR LF "." CR not followed by LF
	paths           []wirePath // MAIL and RCPT arguments as written, oldest first
	refusals        int        // refused commands (see session.refused)
	sniffed         bool       // the client's first bytes were looked at (Read)

	// wire holds the wire* marks: what happened on the connection since
	// wireScanner's last Write (see wireCopy). Atomic, as abort may write from
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
	c.SetReadDeadline(cc.preAuthDeadline)
	return cc
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
// What wireScanner recorded before is forgotten, the paths and the line it was
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
		// wireScanner's stream (see wireCopy). tlsReady runs right after the
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

// wireScanner is the Debug writer of a connection's smtp.Server: go-smtp
// (v0.25.1, Conn.init) copies to it, in one stream, every byte it reads from the
// client, after TLS and before its own parsing (an io.TeeReader), and every reply
// it writes, once written (an io.MultiWriter).
//
// It looks for two things go-smtp's parsing loses:
//
//   - a line "." followed by a bare CR (CR LF "." CR, then anything but LF): go-smtp's
//     DATA reader drops both the "." and the CR, so the session would get the
//     message two bytes short instead of seeing a bare CR. Outside DATA such a
//     line is never valid either. Found under DATA, Data refuses the message and
//     hangs up (dataGuard); found elsewhere, the connection is ended at
//     once with 550 5.6.0.
//   - the MAIL FROM and RCPT TO arguments as the client wrote them: go-smtp
//     removes the quoting of a Quoted-string local part, so <"a@b"@c.example>
//     and the invalid <a@b@c.example> reach the session alike (see
//     session.envelopePath).
//
// It must see the client's bytes alone. A read can end in the middle of a line,
// and a client that pipelines "RSET\r\nMAIL FR" and sends "OM:<...>\r\n" after
// our reply to RSET, or "DATA\r\n...\r\n." and "\rX" after our 354, would
// otherwise have that reply copied into its line: the argument captured would be
// garbled, the "." and the CR kept apart. So the copies of our replies are
// skipped. They are told apart by what happened on the connection beneath
// since the previous copy (clientConn.wireCopy): go-smtp reads and writes a
// connection on one goroutine and copies each read and each write right after
// it, so a copy that follows a write and no read is a reply. Under TLS,
// clientConn is beneath crypto/tls and sees records: the copy of a read served
// from records crypto/tls read earlier follows no read beneath, and no write
// either (the previous copy cleared the marks), so it is still the client's;
// the handshake's own reads and writes are cleared when it completes
// (clientConn.tlsReady).
//
// What is left: inside a read, crypto/tls writes by itself when a TLS 1.3 client
// sends a KeyUpdate that asks for ours (RFC 8446 §4.6.3). If the KeyUpdate and
// the data after it came in an earlier read beneath, the copy of that data
// follows a write and no read, and is skipped as a reply. Only the client can
// cause this, and only for its own bytes. A skipped CR after "." is dropped with
// the "." by go-smtp's DATA reader, as it was before this check: the message is
// accepted two bytes short, holding no bare CR to smuggle anything through. A
// skipped or garbled MAIL or RCPT argument is not found by takePath, and
// session.envelopePath then refuses a local part whose meaning go-smtp's
// unquoting may have changed. The other way round, a reply taken for the
// client's bytes needs a read beneath whose bytes have no copy: a failed read
// gives no bytes and marks nothing, and one that leaves a TLS record unfinished
// is followed by more reads until the record is complete, or by an error that
// ends the connection (clientConn.Read) or the DATA (deadlineReader). One reply
// is taken for the client's: the 550 go-smtp writes after a failed STARTTLS
// handshake follows the handshake's reads. Only a client that fails its own
// handshake gets there, with the outcomes above, for its own bytes.
//
// A MAIL or RCPT line is captured unless it is a line of a message: go-smtp
// reads ahead, so the copy of a line can come before or after the Data call that
// reads it, and Data's running alone does not tell. Lines after the line "."
// that ends a DATA message are commands even while Data still runs (a client may
// pipeline commands after the message, RFC 2920 §3.1); a BDAT chunk is passed
// over by its size, as go-smtp reads it, and the lines around it are commands
// (RFC 3030 §2). Lines of a DATA message whose copy comes before Data runs or
// after it returned (go-smtp then reads the rest of the message) are captured
// too. Such a line is taken only for a later MAIL or RCPT whose value, as go-smtp
// passes it on, is the same: it is then the client's own writing of that
// address, which it could as well have sent as the command.
//
// It never returns an error: go-smtp would hand that to its reader.
type wireScanner struct {
	cc    *clientConn
	state int
	line  []byte // the line being captured, when it may be a command of interest
	capt  bool

	chunk     uint64 // bytes of a BDAT chunk still to pass over
	bdat      bool   // the Data running (if any) reads BDAT chunks, not a DATA message
	dataEnded uint64 // the dataSeq of the DATA whose line "." was seen
}

const (
	wsLineStart = iota // the stream starts at a line start
	wsMidLine
	wsDot   // line start, "."
	wsDotCR // line start, ".", CR
)

// maxCapturedLine bounds a captured command line: go-smtp refuses longer ones.
const maxCapturedLine = 1000

func (w *wireScanner) Write(p []byte) (int, error) {
	n := len(p)
	reply, fresh := w.cc.wireCopy()
	if fresh {
		w.state, w.capt, w.chunk = wsLineStart, false, 0
	}
	if reply {
		return n, nil
	}
	for len(p) > 0 {
		if w.chunk > 0 {
			k := uint64(len(p))
			if k > w.chunk {
				k = w.chunk
			}
			p, w.chunk = p[k:], w.chunk-k
			continue
		}
		switch w.state {
		case wsMidLine:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				w.capture(p)
				return n, nil
			}
			w.capture(p[:i])
			w.endLine()
			p = p[i+1:]
			w.state = wsLineStart
		case wsLineStart:
			switch p[0] {
			case '.':
				w.state = wsDot
				p = p[1:]
				continue
			case 'M', 'm', 'R', 'r', 'B', 'b', 'D', 'd':
				w.capt = w.commandLine()
				w.line = w.line[:0]
			}
			w.state = wsMidLine
		case wsDot:
			if p[0] == '\r' {
				w.state = wsDotCR
				p = p[1:]
				continue
			}
			w.state = wsMidLine
		case wsDotCR:
			if p[0] != '\n' {
				w.cc.smuggling()
			} else if running, seq := w.cc.dataState(); running && !w.bdat {
				w.dataEnded = seq // the end of the DATA message (RFC 5321 §4.1.1.4)
			}
			w.state = wsMidLine
		}
	}
	return n, nil
}

// commandLine reports whether a line that starts now is a command (see
// wireScanner), not a line of a DATA message being read.
func (w *wireScanner) commandLine() bool {
	running, seq := w.cc.dataState()
	if !running {
		w.bdat = false
		return true
	}
	return w.bdat || w.dataEnded == seq
}

func (w *wireScanner) capture(p []byte) {
	if !w.capt {
		return
	}
	if len(w.line)+len(p) > maxCapturedLine {
		w.capt = false
		return
	}
	w.line = append(w.line, p...)
}

func (w *wireScanner) endLine() {
	if !w.capt {
		return
	}
	w.capt = false
	line := strings.TrimSuffix(string(w.line), "\r")
	// Split as go-smtp's parseCmd does.
	var verb, arg string
	switch {
	case len(line) == 4:
		verb = strings.ToUpper(line)
	case len(line) > 5 && line[4] == ' ':
		verb, arg = strings.ToUpper(line[:4]), strings.TrimSpace(line[5:])
	default:
		return
	}
	var ok bool
	switch verb {
	case "DATA":
		w.bdat = false
	case "BDAT":
		w.bdatChunk(arg)
	case "MAIL":
		arg, ok = cutPrefixFold(arg, "FROM:")
	case "RCPT":
		arg, ok = cutPrefixFold(arg, "TO:")
	}
	if !ok {
		return
	}
	if wp, ok := parseWirePath(verb, strings.TrimSpace(arg)); ok {
		w.cc.addPath(wp)
	}
}

// bdatChunk notes the chunk that follows a BDAT command, if go-smtp reads one:
// whenever its arguments parse (go-smtp's handleBdat), even if it refuses the
// command.
func (w *wireScanner) bdatChunk(arg string) {
	args := strings.Fields(arg)
	if len(args) == 0 || len(args) > 2 || len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
		return
	}
	size, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return
	}
	w.chunk, w.bdat = size, true
}

// wireCopy tells wireScanner what the bytes it is handed are, from the marks
// set since its previous Write, and clears them: reply if they are the copy of a
// reply (bytes were written and none read), fresh if a TLS handshake began
// since (the stream starts anew at a line start).
func (c *clientConn) wireCopy() (reply, fresh bool) {
	m := c.wire.Swap(0)
	return m&wireWrote != 0 && m&wireRead == 0, m&wireFresh != 0
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// wirePath is a MAIL FROM or RCPT TO argument as the client wrote it.
type wirePath struct {
	verb string // "MAIL" or "RCPT"
	// value is what go-smtp passes to the session for it (quoting removed).
	value string
	// mailbox is the mailbox as written, quoting kept, without the angle brackets
	// and source route; "" for the null reverse-path.
	mailbox string
}

// parseWirePath parses a path the way go-smtp v0.25.1's parser does
// (parser.parsePath and parseReversePath in its parse.go), so that the result
// can be matched with the value go-smtp passes to the session, and keeps the
// mailbox as written.
func parseWirePath(verb, s string) (wirePath, bool) {
	wp := wirePath{verb: verb}
	if verb == "MAIL" && strings.HasPrefix(s, "<>") {
		return wp, true
	}
	s = strings.TrimPrefix(s, "<")
	if strings.HasPrefix(s, "@") {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return wp, false
		}
		s = s[i+1:]
	}
	var value strings.Builder
	i := 0
	if strings.HasPrefix(s, `"`) {
		for i = 1; ; i++ {
			if i >= len(s) {
				return wp, false
			}
			ch := s[i]
			if ch == '\\' {
				if i++; i >= len(s) {
					return wp, false
				}
				ch = s[i]
			} else if ch == '"' {
				i++
				break
			}
			value.WriteByte(ch)
		}
	} else {
		for ; i < len(s) && s[i] != '@'; i++ {
			if strings.IndexByte("()<>[]:;\\,\" \t", s[i]) >= 0 {
				return wp, false
			}
			value.WriteByte(s[i])
		}
	}
	if value.Len() == 0 || i >= len(s) || s[i] != '@' {
		return wp, false
	}
	j := i + 1
	for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '>' {
		j++
	}
	if j == i+1 {
		return wp, false
	}
	value.WriteString(s[i:j])
	wp.value, wp.mailbox = value.String(), s[:j]
	return wp, true
}

// maxWirePaths bounds the paths held: each is taken by the session callback for
// its command soon after it is read; lines of a message that happen to start
// with "MAIL" are never taken and only wait to be dropped.
const maxWirePaths = 64

func (c *clientConn) addPath(wp wirePath) {
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
		if wp.verb == verb && wp.value == value {
			c.paths = c.paths[i+1:]
			return wp.mailbox, true
		}
	}
	return "", false
}

// dataState reports whether Data is running, and which call of it (enterData).
func (c *clientConn) dataState() (running bool, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inData > 0, c.dataSeq
}

// smuggling records a line "." followed by a bare CR. Under DATA the session
// refuses the message (see smuggledData); anywhere else the connection ends now.
func (c *clientConn) smuggling() {
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
