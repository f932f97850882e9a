// Package smtptest is the raw SMTP both ends of which sealgate's tests write by hand: a
// line-level client (Dial, Client) for conversations with our servers byte by byte, where
// a real client would hide what is tested (pipelined or split commands, injections after
// STARTTLS, a reply's timing), and a scripted receiver (Serve, Conn) for tests of our
// clients that must control exactly what a server says and when (RFC 5321 §4.2 replies,
// RFC 2920 pipelining, RFC 3207 STARTTLS, dropped sessions).
//
// It is for tests only: only _test.go files import it, and it imports no sealgate package,
// so the tests of every package (submit, relay, internal/smtpclient, selftest,
// internal/e2e) can use it. It checks nothing about SMTP itself; a test says what it expects.
package smtptest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Timeout bounds every session Serve accepts and every read and write of a Client that has
// no deadline of its own: a test that goes wrong fails instead of hanging.
const Timeout = 10 * time.Second

// Conn is the server's side of one raw session: the connection and a line reader over it.
// Its methods return errors rather than failing the test, since they run in the server's
// goroutine.
type Conn struct {
	net.Conn
	R *bufio.Reader
}

// NewConn wraps c.
func NewConn(c net.Conn) *Conn { return &Conn{Conn: c, R: bufio.NewReader(c)} }

// ReadLine reads one line and returns it without its line end.
func (c *Conn) ReadLine() (string, error) {
	line, err := c.R.ReadString('\n')
	if err != nil {
		return line, err
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

// ReadLines reads n lines, as ReadLine does.
func (c *Conn) ReadLines(n int) ([]string, error) {
	var lines []string
	for range n {
		line, err := c.ReadLine()
		if err != nil {
			return lines, fmt.Errorf("after %q: %w", lines, err)
		}
		lines = append(lines, line)
	}
	return lines, nil
}

// ReadData reads message data up to the line "." (RFC 5321 §4.1.1.4) and returns it with
// the dot-stuffing undone (§4.5.2).
func (c *Conn) ReadData() (string, error) {
	var b strings.Builder
	for {
		line, err := c.R.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		if line == ".\r\n" {
			return b.String(), nil
		}
		b.WriteString(strings.TrimPrefix(line, "."))
	}
}

// Reply writes each line followed by CRLF, in one write.
func (c *Conn) Reply(lines ...string) error {
	_, err := io.WriteString(c.Conn, strings.Join(lines, "\r\n")+"\r\n")
	return err
}

// StartTLS makes the rest of the session TLS with conf, as the server does after its 220
// to STARTTLS (RFC 3207 §4).
func (c *Conn) StartTLS(conf *tls.Config) error {
	tc := tls.Server(c.Conn, conf)
	if err := tc.Handshake(); err != nil {
		return err
	}
	c.Conn, c.R = tc, bufio.NewReader(tc)
	return nil
}

// EHLOReply is the reply to EHLO of a server named name offering the extensions ext, one
// line each (RFC 5321 §4.1.1.1).
func EHLOReply(name string, ext ...string) []string {
	lines := []string{name}
	lines = append(lines, ext...)
	for i := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		lines[i] = "250" + sep + lines[i]
	}
	return lines
}

// Serve listens on 127.0.0.1:0 and hands the first session it accepts to handle, with a
// deadline of Timeout, closing it when handle returns. It returns the address and a channel
// that receives handle's result (or the Accept error). The listener closes when the test
// ends.
func Serve(t testing.TB, handle func(c *Conn) error) (addr string, done <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			ch <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(Timeout))
		ch <- handle(NewConn(conn))
	}()
	return l.Addr().String(), ch
}

// ServeGreeting is Serve for a handler that starts after the greeting "220 name ESMTP" and
// an EHLO answered with EHLOReply(name, ext...).
func ServeGreeting(t testing.TB, name string, ext []string, handle func(c *Conn) error) (addr string, done <-chan error) {
	t.Helper()
	return Serve(t, func(c *Conn) error {
		if err := c.Reply("220 " + name + " ESMTP"); err != nil {
			return err
		}
		if line, err := c.ReadLine(); err != nil || !strings.HasPrefix(strings.ToUpper(line), "EHLO ") {
			return fmt.Errorf("want EHLO, got %q, %v", line, err)
		}
		if err := c.Reply(EHLOReply(name, ext...)...); err != nil {
			return err
		}
		return handle(c)
	})
}

// Client is the client's side of a raw session, for a test's own goroutine: its methods
// fail the test when the server does not answer.
type Client struct {
	T    testing.TB
	Conn net.Conn
	R    *bufio.Reader
}

// Dial connects to addr; the connection closes when the test ends. Nothing is read.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatal(err)
	}
	return NewClient(t, conn)
}

// NewClient wraps conn; it closes when the test ends.
func NewClient(t testing.TB, conn net.Conn) *Client {
	t.Cleanup(func() { conn.Close() })
	return &Client{T: t, Conn: conn, R: bufio.NewReader(conn)}
}

// Use makes conn (a TLS client over the old connection, say) carry the rest of the session.
func (c *Client) Use(conn net.Conn) { c.Conn, c.R = conn, bufio.NewReader(conn) }

// ReadReply reads one reply, single or multi-line (RFC 5321 §4.2.1), within d and returns
// its lines without CRLF.
func (c *Client) ReadReply(d time.Duration) ([]string, error) {
	c.Conn.SetReadDeadline(time.Now().Add(d))
	var lines []string
	for {
		line, err := c.R.ReadString('\n')
		if err != nil {
			return lines, fmt.Errorf("no reply within %v: %w (read %q)", d, err, line)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines, nil
		}
	}
}

// Reply reads one reply within d and returns its last line; it fails the test on a timeout
// or a closed connection.
func (c *Client) Reply(d time.Duration) string {
	c.T.Helper()
	lines, err := c.ReadReply(d)
	if err != nil {
		c.T.Fatal(err)
	}
	return lines[len(lines)-1]
}

// Write sends s as it is.
func (c *Client) Write(s string) {
	c.T.Helper()
	c.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.T.Fatalf("write: %v", err)
	}
}

// Cmd sends line and CRLF and returns the last line of the reply.
func (c *Client) Cmd(line string) string {
	c.T.Helper()
	c.Write(line + "\r\n")
	return c.Reply(5 * time.Second)
}

// Greet reads the 220 greeting and says EHLO name, failing the test unless both succeed.
func (c *Client) Greet(name string) {
	c.T.Helper()
	if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, "220 ") {
		c.T.Fatalf("greeting: %q", got)
	}
	if got := c.Cmd("EHLO " + name); !strings.HasPrefix(got, "250 ") {
		c.T.Fatalf("EHLO: %q", got)
	}
}

// AssertClosed checks that the server has closed the connection: within 5 s the next read
// ends in EOF or an error other than the read deadline, and nothing more was sent.
func (c *Client) AssertClosed() {
	c.T.Helper()
	c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.R)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.T.Fatalf("connection still open 5 s after the refusal (read %q)", rest)
	}
	if len(rest) > 0 {
		c.T.Errorf("server sent more after the refusal: %q", rest)
	}
}
