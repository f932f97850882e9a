package smtpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
)

// DefaultTimeout bounds the dial and each command and reply when Dialer.Timeout
// is zero. RFC 5321 §4.5.3.2 suggests minutes per command; its 10 minutes for
// the end of data is longer than a client of ours should wait.
const DefaultTimeout = 2 * time.Minute

// Dialer opens sessions. The zero value is usable.
type Dialer struct {
	// HeloName is the name given in EHLO (or HELO); "" means the host name, or
	// "localhost" when there is none.
	HeloName string
	// Timeout bounds the dial and then each command and its reply, and each
	// chunk of a message; 0 means DefaultTimeout.
	Timeout time.Duration
	// LocalAddr is the source address to connect from (a *net.TCPAddr); nil
	// lets the system choose.
	LocalAddr net.Addr
	// ImplicitTLS, when set, starts TLS as soon as the connection is made, before
	// the greeting (RFC 8314 §3: the submissions port, 465). Its ServerName
	// defaults to the host dialed. As with StartTLS, InsecureSkipVerify accepts
	// any certificate and TLS() still reports whether it verified.
	ImplicitTLS *tls.Config
}

// Dial connects to addr (host:port), reads the greeting and says EHLO, falling
// back to HELO when the server refuses EHLO (RFC 5321 §3.2). ctx bounds the whole
// of Dial; to bound later commands by a context, use Client.CloseOnDone. A
// greeting other than 220 is a *ReplyError (554: the server will not talk to us).
func (d *Dialer) Dial(ctx context.Context, addr string) (*Client, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	helo := d.HeloName
	if helo == "" {
		helo, _ = os.Hostname()
		if helo == "" {
			helo = "localhost"
		}
	}
	if strings.ContainsAny(helo, " \r\n") {
		return nil, fmt.Errorf("smtpclient: invalid HELO name %q", helo)
	}
	nd := net.Dialer{Timeout: timeout, LocalAddr: d.LocalAddr}
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err // a *net.OpError naming the address
	}
	host, _, _ := net.SplitHostPort(addr)
	c := &Client{conn: conn, raw: conn, text: textproto.NewConn(conn), timeout: timeout, helo: helo, host: host}
	stop := c.CloseOnDone(ctx)
	defer stop()
	if d.ImplicitTLS != nil {
		if err := c.handshake(d.ImplicitTLS); err != nil {
			return nil, err
		}
	}
	c.deadline()
	if _, err := c.read("greeting", 220); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.hello(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Client is one SMTP session. It is not safe for concurrent use.
type Client struct {
	conn    net.Conn // raw, or the TLS connection over it after StartTLS
	raw     net.Conn // the TCP connection; never reassigned, so CloseOnDone may close it from any goroutine
	text    *textproto.Conn
	timeout time.Duration
	helo    string
	host    string // as dialed: the default TLS server name

	// ext holds the EHLO keywords (upper case) and their parameters; nil after HELO.
	ext map[string]string
	tls *TLSInfo

	used   bool        // a transaction was started: the next one begins with RSET
	broken atomic.Bool // protocol state unknown, or closed: no further transaction (set by CloseOnDone too)
}

// Reply is a reply the server gave.
type Reply struct {
	Code    int
	Message string // text, lines joined by "\n", with any enhanced status code (RFC 3463)
}

func (r Reply) String() string {
	return fmt.Sprintf("%d %s", r.Code, strings.ReplaceAll(r.Message, "\n", " "))
}

// ReplyError is a negative (4yz or 5yz) or unexpected reply.
type ReplyError struct {
	Command string // the command, e.g. "RCPT TO:<a@example.com>", or "greeting", "end of data"
	Code    int
	Message string // reply text, lines joined by "\n", including any enhanced status code
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.Command, e.Code, strings.ReplaceAll(e.Message, "\n", " "))
}

// Permanent reports whether the reply is a permanent failure (RFC 5321 §4.2.1: 5yz).
func (e *ReplyError) Permanent() bool { return e.Code >= 500 && e.Code < 600 }

// EnhancedCode returns the enhanced status code (RFC 3463 §2) that starts the
// reply text, such as "5.1.1", and the text after it; "" and the whole text when
// the reply has none, or one whose class differs from the reply code's (RFC
// 2034 §4 requires them to agree).
func (e *ReplyError) EnhancedCode() (code, text string) {
	return Reply{Code: e.Code, Message: e.Message}.EnhancedCode()
}

// EnhancedCode is ReplyError.EnhancedCode for any reply.
func (r Reply) EnhancedCode() (code, text string) {
	msg := strings.ReplaceAll(r.Message, "\n", " ")
	first, _, _ := strings.Cut(msg, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 || r.Code < 200 || r.Code > 599 || first[0] != byte('0'+r.Code/100) {
		return "", msg
	}
	for i, p := range parts {
		// RFC 3463 §2: class 1 digit, subject 1-3 digits, detail 1-3 digits.
		if p == "" || len(p) > 3 || (i == 0 && len(p) != 1) || strings.Trim(p, "0123456789") != "" {
			return "", msg
		}
	}
	// RFC 2034 §4: each line of a multi-line reply starts with the code; say it once.
	lines := strings.Split(r.Message, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(strings.TrimPrefix(l, first), " ")
	}
	return first, strings.Join(lines, " ")
}

// deadline restarts the timeout for the next exchange.
func (c *Client) deadline() {
	if c.timeout > 0 {
		c.conn.SetDeadline(time.Now().Add(c.timeout))
	}
}

// CloseOnDone closes the connection if ctx is done before stop is called, so
// that a command waiting on the server returns at once. Call stop when ctx no
// longer governs the session (a pooled session outlives each delivery's context).
func (c *Client) CloseOnDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		c.broken.Store(true)
		c.raw.Close()
	})
}

// read reads one (possibly multi-line) reply and checks its code: expect is a
// full code (220, 354) or a class (2 for any 2yz).
func (c *Client) read(cmd string, expect int) (Reply, error) {
	code, msg, err := c.text.ReadResponse(expect)
	var te *textproto.Error
	if errors.As(err, &te) {
		return Reply{code, msg}, &ReplyError{Command: cmd, Code: te.Code, Message: te.Msg}
	}
	if err != nil {
		c.broken.Store(true)
		return Reply{code, msg}, fmt.Errorf("%s: %w", cmd, err)
	}
	return Reply{code, msg}, nil
}

// send writes command lines and flushes them in one go: one line, or a group
// of pipelined commands (RFC 2920 §3.1) whose replies the caller reads in order.
func (c *Client) send(lines ...string) error {
	for _, line := range lines {
		if strings.ContainsAny(line, "\r\n") {
			return fmt.Errorf("smtpclient: refusing to send a command containing CR or LF: %q", line)
		}
	}
	c.deadline()
	w := c.text.W
	for _, line := range lines {
		w.WriteString(line)
		w.WriteString("\r\n")
	}
	if err := w.Flush(); err != nil {
		c.broken.Store(true)
		return fmt.Errorf("%s: %w", lines[0], err)
	}
	return nil
}

// cmd sends one command line and reads its reply.
func (c *Client) cmd(expect int, line string) (Reply, error) {
	if err := c.send(line); err != nil {
		return Reply{}, err
	}
	return c.read(line, expect)
}

// hello sends EHLO, falling back to HELO when the server refuses EHLO with a
// 5yz reply (RFC 5321 §3.2), and records the extensions offered.
func (c *Client) hello() error {
	r, err := c.cmd(2, "EHLO "+c.helo)
	var re *ReplyError
	if errors.As(err, &re) && re.Permanent() {
		c.ext = nil
		_, err = c.cmd(2, "HELO "+c.helo)
		return err
	}
	if err != nil {
		return err
	}
	c.ext = map[string]string{}
	lines := strings.Split(r.Message, "\n")
	for _, l := range lines[1:] { // the first line is the server's greeting
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// Extension reports whether the server offered keyword (upper case) in its EHLO
// reply, and the keyword's parameters ("" when none).
func (c *Client) Extension(keyword string) (params string, ok bool) {
	params, ok = c.ext[keyword]
	return params, ok
}

// RemoteAddr returns the address of the server the session is connected to.
func (c *Client) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// LocalAddr is this end of the connection.
func (c *Client) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// Reusable reports whether the session may carry another transaction: it has
// not failed in a way that leaves its state unknown, and is not closed.
func (c *Client) Reusable() bool { return !c.broken.Load() }

// Quit sends QUIT and closes the connection; its reply does not matter.
func (c *Client) Quit() {
	if !c.broken.Load() {
		c.cmd(221, "QUIT")
	}
	c.Close()
}

// Close closes the connection without QUIT.
func (c *Client) Close() error {
	c.broken.Store(true)
	return c.conn.Close()
}

// TLSInfo describes a session's TLS, after StartTLS.
type TLSInfo struct {
	Version     uint16 // tls.VersionTLS13, ...
	CipherSuite uint16
	ServerName  string // the name the certificate was checked against
	// Verified reports that the server's certificate chain verified for
	// ServerName; VerifyError says why not.
	Verified    bool
	VerifyError error
}

// TLS describes the session's TLS, and reports whether there is any.
func (c *Client) TLS() (TLSInfo, bool) {
	if c.tls == nil {
		return TLSInfo{}, false
	}
	return *c.tls, true
}

// StartTLS upgrades the session to TLS (RFC 3207) and says EHLO again, as §4.2
// requires (what was offered before TLS no longer counts). cfg.ServerName
// defaults to the host dialed; cfg may be nil.
//
// Without cfg.InsecureSkipVerify a certificate that does not verify fails the
// handshake, as in crypto/tls. With it, any certificate is accepted (opportunistic
// TLS, RFC 7435) and TLS().Verified still says whether the chain verified for
// ServerName against cfg.RootCAs (the system's roots when nil): the caller
// decides what an unverified certificate means. A server that does not offer
// STARTTLS gets no command and an error; after a failed handshake the session is
// closed.
func (c *Client) StartTLS(cfg *tls.Config) error {
	if c.tls != nil {
		return errors.New("smtpclient: STARTTLS: the session is already under TLS")
	}
	if c.used {
		return errors.New("smtpclient: STARTTLS: only before the first transaction")
	}
	if _, ok := c.Extension("STARTTLS"); !ok {
		return errors.New("smtpclient: STARTTLS: not offered by the server")
	}
	if _, err := c.cmd(220, "STARTTLS"); err != nil {
		return err
	}
	if err := c.handshake(cfg); err != nil {
		return err
	}
	return c.hello()
}

// handshake runs the TLS handshake on the connection (after STARTTLS, or at
// once for implicit TLS) and records TLSInfo; on failure the connection is closed.
func (c *Client) handshake(cfg *tls.Config) error {
	conf := &tls.Config{}
	if cfg != nil {
		conf = cfg.Clone()
	}
	if conf.ServerName == "" {
		conf.ServerName = c.host
	}
	var verifyErr error
	if conf.InsecureSkipVerify {
		// Verify as crypto/tls would, but only to report the result.
		next := conf.VerifyConnection
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			verifyErr = verifyServer(cs, conf)
			if next != nil {
				return next(cs)
			}
			return nil
		}
	}
	tc := tls.Client(c.conn, conf)
	c.deadline()
	if err := tc.Handshake(); err != nil {
		c.Close()
		return fmt.Errorf("smtpclient: TLS handshake with %s: %w", c.conn.RemoteAddr(), err)
	}
	c.conn = tc
	c.text = textproto.NewConn(tc)
	cs := tc.ConnectionState()
	c.tls = &TLSInfo{Version: cs.Version, CipherSuite: cs.CipherSuite, ServerName: conf.ServerName,
		Verified: verifyErr == nil, VerifyError: verifyErr}
	return nil
}

// verifyServer checks the server's chain for conf.ServerName as crypto/tls does
// when InsecureSkipVerify is off.
func verifyServer(cs tls.ConnectionState, conf *tls.Config) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	opts := x509.VerifyOptions{
		DNSName:       conf.ServerName,
		Roots:         conf.RootCAs,
		Intermediates: x509.NewCertPool(),
	}
	if conf.Time != nil {
		opts.CurrentTime = conf.Time()
	}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// Auth authenticates with a (RFC 4954), for example
// sasl.NewPlainClient("", user, password) or sasl.NewLoginClient. It refuses to
// run outside TLS, so credentials never cross the network in clear text, and
// when the server does not offer a's mechanism. A refusal is a *ReplyError
// (535: bad credentials); errors never contain what a sent.
func (c *Client) Auth(a sasl.Client) error {
	if c.tls == nil {
		return errors.New("smtpclient: AUTH: refusing to send credentials outside TLS")
	}
	mech, resp, err := a.Start()
	if err != nil {
		return fmt.Errorf("smtpclient: AUTH: %w", err)
	}
	offered, _ := c.Extension("AUTH")
	if !slices.ContainsFunc(strings.Fields(offered), func(m string) bool { return strings.EqualFold(m, mech) }) {
		return fmt.Errorf("smtpclient: AUTH: the server does not offer %s (offered: %q)", mech, offered)
	}
	what := "AUTH " + mech // the name in errors: never the credentials
	line := what
	if resp != nil {
		line += " " + encodeSASL(resp) // RFC 4954 §4: initial response, "=" when empty
	}
	if err := c.send(line); err != nil {
		return fmt.Errorf("%s: %w", what, errors.Unwrap(err))
	}
	for {
		r, err := c.read(what, 0)
		if err != nil {
			return err
		}
		switch r.Code {
		case 235:
			return nil
		case 334:
			challenge, err := base64.StdEncoding.DecodeString(r.Message)
			if err == nil {
				resp, err = a.Next(challenge)
			}
			if err != nil {
				c.cmd(501, "*") // RFC 4954 §4: cancel the exchange
				return fmt.Errorf("smtpclient: %s: %w", what, err)
			}
			if err := c.send(encodeSASL(resp)); err != nil {
				return fmt.Errorf("%s: %w", what, errors.Unwrap(err))
			}
		default:
			return &ReplyError{Command: what, Code: r.Code, Message: r.Message}
		}
	}
}

func encodeSASL(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}
