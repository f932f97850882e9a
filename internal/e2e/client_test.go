package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// reply is one (possibly multi-line) SMTP reply.
type reply struct {
	Code  int
	Enh   string   // enhanced status code of the last line ("5.7.1"), "" if none
	Lines []string // text of each line after "NNN-" / "NNN "
}

var enhRE = regexp.MustCompile(`^([245]\.\d{1,3}\.\d{1,3})(?: |$)`)

func (r reply) String() string {
	if r.Code == 0 {
		return "<no reply>"
	}
	return fmt.Sprintf("%d %s", r.Code, strings.Join(r.Lines, " | "))
}

// Text is the last line without its enhanced code.
func (r reply) Text() string {
	if len(r.Lines) == 0 {
		return ""
	}
	l := r.Lines[len(r.Lines)-1]
	if r.Enh != "" {
		l = strings.TrimSpace(strings.TrimPrefix(l, r.Enh))
	}
	return l
}

func (r reply) is(code int, enh string) bool { return r.Code == code && r.Enh == enh }

// smtpClient is a deliberately small SMTP client: every byte it sends is visible in
// the test, so it can send what a conforming client never would. It keeps a
// transcript for failure messages.
type smtpClient struct {
	t     testing.TB
	addr  string
	conn  net.Conn
	r     *bufio.Reader
	trace strings.Builder
}

type dialOpts struct {
	implicitTLS bool
	localAddr   string // e.g. "127.0.0.2" to come from an untrusted address
}

const ioTimeout = 15 * time.Second

func clientTLS() *tls.Config {
	// The dev certificate is self-signed.
	return &tls.Config{InsecureSkipVerify: true, ServerName: "relay.example.test", MinVersion: tls.VersionTLS12}
}

// dial connects and reads the greeting, which must be 220.
func dial(t testing.TB, addr string, o dialOpts) *smtpClient {
	t.Helper()
	c, err := dialErr(t, addr, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dialErr(t testing.TB, addr string, o dialOpts) (*smtpClient, error) {
	d := &net.Dialer{Timeout: ioTimeout}
	if o.localAddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.localAddr)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if o.implicitTLS {
		tc := tls.Client(conn, clientTLS())
		tc.SetDeadline(time.Now().Add(ioTimeout))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	c := &smtpClient{t: t, addr: addr, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { c.conn.Close() })
	g, err := c.readReply()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	if g.Code != 220 {
		conn.Close()
		return nil, fmt.Errorf("greeting from %s: %s", addr, g)
	}
	return c, nil
}

func (c *smtpClient) logf(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	if len(s) > 300 {
		s = s[:300] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	c.trace.WriteString(s + "\n")
}

// Transcript is the exchange so far, for failure messages.
func (c *smtpClient) Transcript() string { return c.trace.String() }

// readReply reads one reply.
func (c *smtpClient) readReply() (reply, error) {
	return c.readReplyTimeout(ioTimeout)
}

func (c *smtpClient) readReplyTimeout(d time.Duration) (reply, error) {
	var r reply
	c.conn.SetReadDeadline(time.Now().Add(d))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if line != "" {
				c.logf("S: %q (then %v)", line, err)
			}
			return r, err
		}
		c.logf("S: %s", strings.TrimRight(line, "\r\n"))
		if !strings.HasSuffix(line, "\r\n") || len(line) < 5 {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		line = line[:len(line)-2]
		code, err := strconv.Atoi(line[:3])
		if err != nil || (line[3] != ' ' && line[3] != '-') {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		if r.Code != 0 && code != r.Code {
			return r, fmt.Errorf("reply code changed within a multi-line reply: %q", line)
		}
		r.Code = code
		r.Lines = append(r.Lines, line[4:])
		if line[3] == ' ' {
			if m := enhRE.FindStringSubmatch(line[4:]); m != nil {
				r.Enh = m[1]
			}
			return r, nil
		}
	}
}

func (c *smtpClient) write(b []byte) error {
	c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.conn.Write(b)
	return err
}

// cmdErr sends one command line and reads the reply.
func (c *smtpClient) cmdErr(line string) (reply, error) {
	c.logf("C: %s", line)
	if err := c.write([]byte(line + "\r\n")); err != nil {
		return reply{}, err
	}
	return c.readReply()
}

// cmd is cmdErr that fails the test on an I/O error.
func (c *smtpClient) cmd(line string) reply {
	c.t.Helper()
	r, err := c.cmdErr(line)
	if err != nil {
		c.t.Fatalf("%s: %v\ntranscript:\n%s", line, err, c.Transcript())
	}
	return r
}

// expect sends line and fails the test unless the reply has the given code.
func (c *smtpClient) expect(line string, code int) reply {
	c.t.Helper()
	r := c.cmd(line)
	if r.Code != code {
		c.t.Fatalf("%s: want %d, got %s\ntranscript:\n%s", line, code, r, c.Transcript())
	}
	return r
}

func (c *smtpClient) ehlo() reply {
	c.t.Helper()
	return c.expect("EHLO client.e2e.test", 250)
}

// hasExt reports whether an EHLO reply advertises keyword (e.g. "AUTH", "STARTTLS").
func hasExt(r reply, keyword string) bool {
	for _, l := range r.Lines[1:] {
		f := strings.Fields(l)
		if len(f) > 0 && strings.EqualFold(f[0], keyword) {
			return true
		}
	}
	return false
}

// startTLS runs STARTTLS and the handshake; the caller must EHLO again.
func (c *smtpClient) startTLS() {
	c.t.Helper()
	c.expect("STARTTLS", 220)
	if c.r.Buffered() > 0 {
		c.t.Fatalf("server sent data after 220 to STARTTLS")
	}
	tc := tlsClient(c)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("STARTTLS handshake: %v", err)
	}
	c.useTLS(tc)
}

func tlsClient(c *smtpClient) *tls.Conn {
	tc := tls.Client(c.conn, clientTLS())
	tc.SetDeadline(time.Now().Add(ioTimeout))
	return tc
}

func (c *smtpClient) useTLS(tc *tls.Conn) {
	c.conn = tc
	c.r = bufio.NewReader(tc)
	c.logf("-- TLS started")
}

// authPlain sends AUTH PLAIN with an initial response and returns the reply.
func (c *smtpClient) authPlain(user, pass string) reply {
	c.t.Helper()
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	c.logf("C: AUTH PLAIN <credentials of %s>", user)
	if err := c.write([]byte("AUTH PLAIN " + ir + "\r\n")); err != nil {
		c.t.Fatalf("AUTH PLAIN: %v", err)
	}
	r, err := c.readReply()
	if err != nil {
		c.t.Fatalf("AUTH PLAIN: %v\ntranscript:\n%s", err, c.Transcript())
	}
	return r
}

// authLogin runs AUTH LOGIN; it returns the first reply that is not 334.
func (c *smtpClient) authLogin(user, pass string) reply {
	c.t.Helper()
	r := c.cmd("AUTH LOGIN")
	for _, s := range []string{user, pass} {
		if r.Code != 334 {
			return r
		}
		c.logf("C: <base64 of %d bytes>", len(s))
		if err := c.write([]byte(base64.StdEncoding.EncodeToString([]byte(s)) + "\r\n")); err != nil {
			c.t.Fatalf("AUTH LOGIN: %v", err)
		}
		var err error
		if r, err = c.readReply(); err != nil {
			c.t.Fatalf("AUTH LOGIN: %v\ntranscript:\n%s", err, c.Transcript())
		}
	}
	return r
}

// dialAuth connects to the STARTTLS submission port, upgrades and authenticates.
func dialAuth(t testing.TB, r *relayProc) *smtpClient {
	t.Helper()
	c := dial(t, r.Submission, dialOpts{})
	c.ehlo()
	c.startTLS()
	c.ehlo()
	if a := c.authPlain(devLogin, r.password); a.Code != 235 {
		t.Fatalf("AUTH PLAIN with the demo password: want 235, got %s", a)
	}
	return c
}

// dotStuff doubles a leading dot on every line (RFC 5321 §4.5.2); msg uses CRLF.
func dotStuff(msg []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(msg, []byte("\r\n")) {
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
	}
	return b.Bytes()
}

// data sends DATA, then msg (dot-stuffed; must end in CRLF) and CRLF.CRLF, and
// returns the final reply, or the reply to DATA when it is not 354.
func (c *smtpClient) data(msg []byte) reply {
	c.t.Helper()
	r := c.cmd("DATA")
	if r.Code != 354 {
		return r
	}
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		c.t.Fatalf("test bug: message must end in CRLF")
	}
	return c.rawData(append(dotStuff(msg), ".\r\n"...))
}

// rawData writes payload as is (after a 354) and reads the reply.
func (c *smtpClient) rawData(payload []byte) reply {
	c.t.Helper()
	return c.rawDataTimeout(payload, ioTimeout)
}

func (c *smtpClient) rawDataTimeout(payload []byte, d time.Duration) reply {
	c.t.Helper()
	c.logf("C: <data %q>", payload)
	if err := c.write(payload); err != nil {
		c.t.Fatalf("writing DATA: %v", err)
	}
	r, err := c.readReplyTimeout(d)
	if err != nil {
		c.t.Fatalf("reply to end of DATA: %v\ntranscript:\n%s", err, c.Transcript())
	}
	return r
}

// send runs MAIL, RCPT for each of to, and DATA. It stops at the first reply that
// is not the expected one and returns the stage ("MAIL", "RCPT", "DATA" for the
// reply to DATA itself, "END" for the reply after the message) and that reply.
func (c *smtpClient) send(from string, to []string, msg []byte) (string, reply) {
	c.t.Helper()
	return c.sendParams(from, "", to, msg)
}

// sendUTF8 is send with the SMTPUTF8 parameter on MAIL FROM (RFC 6531 §3.4), which
// UTF-8 in the addresses or header needs.
func (c *smtpClient) sendUTF8(from string, to []string, msg []byte) (string, reply) {
	c.t.Helper()
	return c.sendParams(from, " SMTPUTF8", to, msg)
}

func (c *smtpClient) sendParams(from, params string, to []string, msg []byte) (string, reply) {
	c.t.Helper()
	if r := c.cmd("MAIL FROM:<" + from + ">" + params); r.Code != 250 {
		return "MAIL", r
	}
	for _, rc := range to {
		if r := c.cmd("RCPT TO:<" + rc + ">"); r.Code != 250 {
			return "RCPT", r
		}
	}
	r := c.cmd("DATA")
	if r.Code != 354 {
		return "DATA", r
	}
	return "END", c.rawData(append(dotStuff(msg), ".\r\n"...))
}

// quit sends QUIT (best effort) and closes the connection.
func (c *smtpClient) quit() {
	c.logf("C: QUIT")
	if c.write([]byte("QUIT\r\n")) == nil {
		c.readReplyTimeout(2 * time.Second)
	}
	c.conn.Close()
}

// closedByServer reports whether the server closed the connection (within d).
func (c *smtpClient) closedByServer(d time.Duration) bool {
	c.conn.SetReadDeadline(time.Now().Add(d))
	_, err := c.r.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// crlf turns a message written with "\n" into CRLF.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
