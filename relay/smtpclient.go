package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// smtpClient is a small SMTP client (RFC 5321) on net/textproto. It sends bodies
// byte for byte (only dot-stuffing is added) and reports each reply as it comes,
// so callers get per-recipient results. With a server that offers PIPELINING
// (RFC 2920) the envelope commands go out in one write (see NextHop.deliver). The
// delivery issue extends it with STARTTLS (RFC 3207) and SUBMITTER (RFC 4405).
type smtpClient struct {
	conn    net.Conn
	text    *textproto.Conn
	timeout time.Duration
	stop    func() bool

	// ext holds the EHLO keywords (upper case) and their parameters; nil after HELO.
	ext map[string]string
}

// ReplyError is a negative (4yz or 5yz) or unexpected SMTP reply.
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

// dialSMTP connects to addr and reads the greeting. timeout bounds the dial and
// each later command and reply; ctx cancellation closes the connection.
func dialSMTP(ctx context.Context, addr string, timeout time.Duration) (*smtpClient, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &smtpClient{conn: conn, text: textproto.NewConn(conn), timeout: timeout}
	c.stop = context.AfterFunc(ctx, func() { conn.Close() })
	c.deadline()
	if _, _, err := c.read("greeting", 220); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *smtpClient) deadline() {
	if c.timeout > 0 {
		c.conn.SetDeadline(time.Now().Add(c.timeout))
	}
}

// read reads one (possibly multi-line) reply and checks its code: expect is a
// full code (220, 354) or a class (2 for any 2yz).
func (c *smtpClient) read(cmd string, expect int) (int, string, error) {
	code, msg, err := c.text.ReadResponse(expect)
	var te *textproto.Error
	if errors.As(err, &te) {
		return code, msg, &ReplyError{Command: cmd, Code: te.Code, Message: te.Msg}
	}
	if err != nil {
		return code, msg, fmt.Errorf("%s: %w", cmd, err)
	}
	return code, msg, nil
}

// cmd sends one command line and reads its reply.
func (c *smtpClient) cmd(expect int, line string) (string, error) {
	if err := c.send(line); err != nil {
		return "", err
	}
	_, msg, err := c.read(line, expect)
	return msg, err
}

// send writes command lines and flushes them in one go: one line, or a group
// of pipelined commands (RFC 2920 §3.1) whose replies the caller reads in order.
func (c *smtpClient) send(lines ...string) error {
	c.deadline()
	w := c.text.W
	for _, line := range lines {
		if strings.ContainsAny(line, "\r\n") {
			return fmt.Errorf("refusing to send command containing CR or LF: %q", line)
		}
		w.WriteString(line)
		w.WriteString("\r\n")
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("%s: %w", lines[0], err)
	}
	return nil
}

// hello sends EHLO, falling back to HELO when the server rejects EHLO with a
// 5yz reply (RFC 5321 §3.2).
func (c *smtpClient) hello(name string) error {
	msg, err := c.cmd(2, "EHLO "+name)
	var re *ReplyError
	if errors.As(err, &re) && re.Permanent() {
		_, err = c.cmd(2, "HELO "+name)
		return err
	}
	if err != nil {
		return err
	}
	c.ext = map[string]string{}
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] { // the first line is the server's greeting
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// extension reports whether the server offered keyword in its EHLO reply, and its parameters.
func (c *smtpClient) extension(keyword string) (string, bool) {
	v, ok := c.ext[keyword]
	return v, ok
}

func mailCmd(from string, params []string) string {
	return "MAIL FROM:<" + from + ">" + joinParams(params)
}
func rcptCmd(to string, params []string) string { return "RCPT TO:<" + to + ">" + joinParams(params) }

func joinParams(params []string) string {
	if len(params) == 0 {
		return ""
	}
	return " " + strings.Join(params, " ")
}

// errBareLineEnd is returned by data for a message that is not CRLF-only.
var errBareLineEnd = errors.New("message contains a bare CR or LF")

// data sends DATA, the dot-stuffed message (RFC 5321 §4.5.2) and the final
// ".", and reads the reply. The message must use CRLF line endings only; on a bare
// CR or LF data stops and returns errBareLineEnd without ending the data, and
// the caller must close the connection so the server discards the transaction
// (RFC 5321 §4.1.1.4). A message not ending in CRLF gets one before the ".".
func (c *smtpClient) data(msg io.Reader) error {
	if _, err := c.cmd(354, "DATA"); err != nil {
		return err
	}
	return c.body(msg)
}

// body sends the message after a 354 reply to DATA and reads the final reply;
// see data.
func (c *smtpClient) body(msg io.Reader) error {
	dw := &dotWriter{c: c, w: bufio.NewWriterSize(c.conn, 32*1024), lineStart: true}
	if _, err := io.Copy(dw, msg); err != nil {
		return err
	}
	if err := dw.close(); err != nil {
		return err
	}
	c.deadline()
	_, _, err := c.read("end of data", 250)
	return err
}

// quit sends QUIT and closes the connection; its reply does not matter.
func (c *smtpClient) quit() {
	c.cmd(221, "QUIT")
	c.close()
}

func (c *smtpClient) close() {
	c.stop()
	c.conn.Close()
}

// dotWriter dot-stuffs a CRLF-only message and rejects bare CR and bare LF.
type dotWriter struct {
	c         *smtpClient
	w         *bufio.Writer
	lineStart bool // the next byte starts a line
	prevCR    bool // the last byte was CR
	err       error
}

func (d *dotWriter) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.c != nil {
		d.c.deadline() // the timeout bounds each chunk, not the whole message
	}
	start := 0
	for i, b := range p {
		if d.prevCR && b != '\n' {
			d.err = errBareLineEnd
			return i, d.err
		}
		switch b {
		case '\n':
			if !d.prevCR {
				d.err = errBareLineEnd
				return i, d.err
			}
		case '.':
			if d.lineStart {
				// Write up to and including this dot, then let the next run repeat it.
				if _, err := d.w.Write(p[start : i+1]); err != nil {
					d.err = err
					return i, err
				}
				start = i
			}
		}
		d.prevCR = b == '\r'
		d.lineStart = b == '\n'
	}
	if _, err := d.w.Write(p[start:]); err != nil {
		d.err = err
		return start, err
	}
	return len(p), nil
}

func (d *dotWriter) close() error {
	if d.err != nil {
		return d.err
	}
	if d.prevCR {
		return errBareLineEnd
	}
	if !d.lineStart {
		d.w.WriteString("\r\n")
	}
	d.w.WriteString(".\r\n")
	return d.w.Flush()
}

// xtext encodes s as RFC 3461 §4 xtext: "+" "=" and bytes outside '!'..'~' as +XX.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteString("+" + strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
