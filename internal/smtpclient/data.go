package smtpclient

import (
	"bufio"
	"errors"
	"io"
	"sync"
)

// ErrBareLineEnd reports a message that is not CRLF-only. It comes wrapped in an
// *UnsendableError.
var ErrBareLineEnd = errors.New("message contains a bare CR or LF")

// body sends the message after a 354 reply to DATA: dot-stuffed (RFC 5321
// §4.5.2), a CRLF added when the message does not end in one, then the final
// ".". On a bare CR or LF, or any other error (reading msg, say), it stops and
// closes the connection without the final ".", so the server discards the
// transaction (RFC 5321 §4.1.1.4) instead of taking part of a message.
func (c *Client) body(msg io.Reader) error {
	w := bodyWriters.Get().(*bufio.Writer)
	w.Reset(c.conn)
	dw := &dotWriter{c: c, w: w, lineStart: true}
	_, err := io.Copy(dw, msg)
	if err == nil {
		err = dw.close()
	}
	w.Reset(nil) // drop the connection
	bodyWriters.Put(w)
	if err != nil {
		c.Close()
	}
	if errors.Is(err, ErrBareLineEnd) {
		return &UnsendableError{Err: err}
	}
	return err
}

// bodyWriters recycles the buffers messages are written through: a relay
// delivering hundreds of messages a second would otherwise allocate (and zero)
// 32 KiB for each.
var bodyWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32*1024) }}

// dotWriter dot-stuffs a CRLF-only message and rejects bare CR and bare LF.
type dotWriter struct {
	c         *Client // nil in tests
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
			d.err = ErrBareLineEnd
			return i, d.err
		}
		switch b {
		case '\n':
			if !d.prevCR {
				d.err = ErrBareLineEnd
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
		return ErrBareLineEnd
	}
	if !d.lineStart {
		d.w.WriteString("\r\n")
	}
	d.w.WriteString(".\r\n")
	return d.w.Flush()
}
