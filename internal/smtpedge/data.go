package smtpedge

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// DeadlineReader re-arms the connection's read deadline before every read, so the DATA
// timeout bounds each wait for the client, not the whole upload (go-smtp only re-arms it when
// it reads a command line).
//
// With poll set it also makes go-smtp hand over what it has whenever the client has been
// silent for poll. go-smtp's DATA reader returns only once our buffer is full or it has seen
// CRLF.CRLF, so bytes in which it does not see the end (CR CR LF . CR LF) would otherwise
// stay in its buffer, unchecked, until the DATA timeout, while the client waits for a reply.
// A read deadline that expires makes it return them; the expiry is not an error until the
// client has been silent for the whole timeout. Both go-smtp's bufio.Reader and crypto/tls
// carry on after a timeout. Not for BDAT: go-smtp reads the connection itself then.
type DeadlineReader struct {
	R       io.Reader
	Conn    net.Conn
	Timeout time.Duration
	Poll    time.Duration // 0: no polling
}

func (d *DeadlineReader) Read(p []byte) (int, error) {
	if d.Timeout <= 0 {
		return d.R.Read(p)
	}
	start := time.Now()
	wait := d.Timeout
	if d.Poll > 0 {
		wait = min(d.Poll, d.Timeout)
	}
	for {
		d.Conn.SetReadDeadline(start.Add(wait))
		n, err := d.R.Read(p)
		if d.Poll <= 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
		if wait >= d.Timeout {
			return 0, err
		}
		wait = min(time.Since(start)+d.Poll, d.Timeout)
	}
}

// Rearm gives the next read from the connection the whole DATA timeout.
func (d *DeadlineReader) Rearm() {
	if d.Timeout > 0 {
		d.Conn.SetReadDeadline(time.Now().Add(d.Timeout))
	}
}

// LineEndCheck finds a CR not followed by LF or an LF not preceded by CR.
type LineEndCheck struct {
	prevCR bool
	found  bool
}

// Write reports whether the stream so far holds a bare CR or LF. A CR that ends p is judged
// by the next Write (bare unless p starts with LF) or by End.
func (c *LineEndCheck) Write(p []byte) bool {
	if c.found || len(p) == 0 {
		return c.found
	}
	if c.prevCR && p[0] != '\n' {
		c.found = true
		return true
	}
	for i, b := range p {
		switch b {
		case '\r':
			if i+1 < len(p) && p[i+1] != '\n' {
				c.found = true
				return true
			}
		case '\n':
			if i == 0 && !c.prevCR || i > 0 && p[i-1] != '\r' {
				c.found = true
				return true
			}
		}
	}
	c.prevCR = p[len(p)-1] == '\r'
	return false
}

// End reports whether the whole stream held a bare CR or LF: one was found, or it ends in CR.
func (c *LineEndCheck) End() bool { return c.found || c.prevCR }
