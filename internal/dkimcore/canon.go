package dkimcore

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
)

// Canonicalization is a DKIM canonicalisation algorithm (RFC 6376 §3.4).
type Canonicalization string

// The two canonicalisation algorithms of RFC 6376 §3.4.
const (
	Simple  Canonicalization = "simple"
	Relaxed Canonicalization = "relaxed"
)

// ParseCanonicalization parses a c= value: "header/body", or a lone header algorithm, which
// leaves the body simple (RFC 6376 §3.5).
func ParseCanonicalization(c string) (header, body Canonicalization, err error) {
	if c == "" {
		return Simple, Simple, nil
	}
	h, b, found := cutString(c, '/')
	if !found {
		b = string(Simple)
	}
	header, body = Canonicalization(h), Canonicalization(b)
	for _, x := range []Canonicalization{header, body} {
		if x != Simple && x != Relaxed {
			return "", "", permErr("unknown canonicalization %q", c)
		}
	}
	return header, body, nil
}

func cutString(s string, sep byte) (string, string, bool) {
	if i := bytes.IndexByte([]byte(s), sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// AppendCanonicalField appends field f canonicalised with c. Relaxed (RFC 6376 §3.4.2):
// name lower-cased, value unfolded, white space runs collapsed to one space, white space at
// the ends of the value and around ':' removed, terminated by CRLF. Simple: unchanged.
func AppendCanonicalField(dst []byte, f Field, c Canonicalization) []byte {
	if c == Simple {
		return append(dst, f...)
	}
	colon := bytes.IndexByte(f, ':')
	if colon < 0 {
		return append(dst, f...)
	}
	for _, ch := range bytes.TrimRight(f[:colon], " \t") {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		dst = append(dst, ch)
	}
	dst = append(dst, ':')
	space := false
	started := false
	for _, ch := range f[colon+1:] {
		switch ch {
		case '\r', '\n':
			continue
		case ' ', '\t':
			space = true
			continue
		}
		if space && started {
			dst = append(dst, ' ')
		}
		space = false
		started = true
		dst = append(dst, ch)
	}
	return append(dst, '\r', '\n')
}

// BodyCanonicalizer is an io.WriteCloser that canonicalises a CRLF body and writes the
// result to an underlying writer (a hash). Close flushes the end-of-body rules.
type BodyCanonicalizer interface {
	io.WriteCloser
}

// NewBodyCanonicalizer returns a canonicaliser for c writing to w.
func NewBodyCanonicalizer(w io.Writer, c Canonicalization) BodyCanonicalizer {
	if c == Simple {
		return &simpleBody{w: w}
	}
	return &relaxedBody{w: w, out: make([]byte, 0, 4096)}
}

// relaxedBody implements RFC 6376 §3.4.4 as a streaming state machine with a fast path:
// a complete line in the input that relaxed canonicalisation leaves unchanged (no tab, no
// double space, no white space before CRLF, no lone CR) is passed to w straight from the
// input buffer, and consecutive such lines are passed as one slice. Trailing empty lines are
// held back until content follows them; at Close they are dropped.
type relaxedBody struct {
	w   io.Writer
	out []byte // slow-path output awaiting a write

	blank   int  // empty lines held back
	wsp     bool // white space seen on this line and not yet emitted
	cr      bool // a CR seen that may start a CRLF
	content bool // this line has emitted non-white-space
	err     error
}

func (c *relaxedBody) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n := len(p)
	spanStart, spanEnd := -1, -1 // unchanged lines of p, written as one slice
	i := 0
	for i < len(p) {
		if !c.atLineStart() {
			i = c.slow(p, i)
			continue
		}
		nl := bytes.IndexByte(p[i:], '\n')
		if nl < 0 {
			break // partial line: slow path below
		}
		end := i + nl + 1
		line := p[i:end]
		if len(line) == 2 && line[0] == '\r' {
			c.blank++ // empty line, held back; if content follows in the span it is covered
			i = end
			continue
		}
		if !cleanLine(line) {
			if spanStart >= 0 {
				c.flushSpan(p[spanStart:spanEnd])
				spanStart = -1
			}
			if t, ok := trailingWSPOnly(line); ok {
				// Common case: only white space before CRLF to drop.
				if len(t) == 0 {
					c.blank++
				} else {
					c.emitBlanks()
					c.out = append(append(c.out, t...), '\r', '\n')
					if len(c.out) >= 32*1024 {
						c.flushOut()
					}
				}
				i = end
				continue
			}
			i = c.slow(p, i)
			continue
		}
		if spanStart >= 0 && c.blankInSpan(spanEnd, i) {
			spanEnd = end
		} else {
			if spanStart >= 0 {
				c.flushSpan(p[spanStart:spanEnd])
			}
			c.emitBlanks()
			spanStart, spanEnd = i, end
		}
		c.blank = 0
		i = end
	}
	if spanStart >= 0 {
		c.flushSpan(p[spanStart:spanEnd])
	}
	for i < len(p) {
		i = c.slow(p, i)
	}
	c.flushOut()
	if c.err != nil {
		return 0, c.err
	}
	return n, nil
}

// blankInSpan reports whether the held-back empty lines lie exactly between the span's end
// and the next line, so that extending the span writes them as they are.
func (c *relaxedBody) blankInSpan(spanEnd, next int) bool {
	return next-spanEnd == 2*c.blank
}

func (c *relaxedBody) atLineStart() bool { return !c.wsp && !c.cr && !c.content }

// cleanLine reports whether a line ending in LF is unchanged by relaxed canonicalisation.
func cleanLine(line []byte) bool {
	n := len(line)
	if n < 3 || line[n-2] != '\r' {
		return false
	}
	body := line[:n-2]
	if c := body[len(body)-1]; c == ' ' || c == '\t' {
		return false
	}
	return bytes.IndexByte(body, '\t') < 0 && bytes.IndexByte(body, '\r') < 0 && bytes.Index(body, []byte("  ")) < 0
}

// trailingWSPOnly reports whether a line ending in CRLF becomes clean once the white space
// before its CRLF is removed, and returns what remains.
func trailingWSPOnly(line []byte) ([]byte, bool) {
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return nil, false
	}
	t := bytes.TrimRight(line[:n-2], " \t")
	if bytes.IndexByte(t, '\t') >= 0 || bytes.IndexByte(t, '\r') >= 0 || bytes.Index(t, []byte("  ")) >= 0 {
		return nil, false
	}
	return t, true
}

func (c *relaxedBody) flushSpan(b []byte) {
	c.flushOut()
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *relaxedBody) emitBlanks() {
	for ; c.blank > 0; c.blank-- {
		c.out = append(c.out, '\r', '\n')
	}
}

func (c *relaxedBody) flushOut() {
	if len(c.out) > 0 && c.err == nil {
		_, c.err = c.w.Write(c.out)
	}
	c.out = c.out[:0]
}

// slow processes bytes of p from i until the end of the current line (inclusive) or the
// end of p, and returns the index after the last byte consumed.
func (c *relaxedBody) slow(p []byte, i int) int {
	for ; i < len(p); i++ {
		b := p[i]
		if c.cr {
			c.cr = false
			if b == '\n' {
				c.endLine()
				return i + 1
			}
			c.emitContent('\r')
		}
		switch b {
		case ' ', '\t':
			c.wsp = true
		case '\r':
			c.cr = true
		default:
			c.emitContent(b)
		}
		if len(c.out) >= 32*1024 {
			c.flushOut()
		}
	}
	return i
}

func (c *relaxedBody) emitContent(b byte) {
	if !c.content {
		c.emitBlanks()
	}
	if c.wsp {
		c.out = append(c.out, ' ')
		c.wsp = false
	}
	c.out = append(c.out, b)
	c.content = true
}

func (c *relaxedBody) endLine() {
	c.wsp = false // white space before CRLF is removed
	if c.content {
		c.out = append(c.out, '\r', '\n')
		c.content = false
	} else {
		c.blank++
	}
}

func (c *relaxedBody) Close() error {
	if c.cr {
		c.cr = false
		c.emitContent('\r')
	}
	if c.content {
		// An unterminated last line gets its CRLF (RFC 6376 §3.4.4, as errata 3964 and
		// common verifiers read it); an empty body stays empty.
		c.out = append(c.out, '\r', '\n')
		c.content = false
	}
	c.wsp = false
	c.blank = 0
	c.flushOut()
	return c.err
}

// simpleBody implements RFC 6376 §3.4.3: the body unchanged but for trailing empty lines,
// which are removed, and a final CRLF, which is added when missing (an empty body is CRLF).
type simpleBody struct {
	w       io.Writer
	pending int  // CRLFs held back: they end the body or separate lines still to come
	cr      bool // a trailing CR not yet known to start a CRLF
	any     bool // a line with content has been written
	err     error
}

func (c *simpleBody) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n := len(p)
	if c.cr && len(p) > 0 {
		c.cr = false
		if p[0] == '\n' {
			c.pending++
			p = p[1:]
		} else {
			c.emit([]byte{'\r'})
		}
	}
	// Hold back the run of CRLFs at the end of p (and a final lone CR).
	end := len(p)
	if end > 0 && p[end-1] == '\r' {
		end--
	}
	tail := 0
	for end >= 2 && p[end-2] == '\r' && p[end-1] == '\n' {
		end -= 2
		tail++
	}
	if end > 0 {
		c.emit(p[:end])
		c.pending = 0
	}
	c.pending += tail
	if len(p) > 0 && p[len(p)-1] == '\r' {
		c.cr = true
	}
	return n, c.err
}

func (c *simpleBody) emit(b []byte) {
	for ; c.pending > 0; c.pending-- {
		c.write([]byte("\r\n"))
	}
	c.write(b)
	c.any = true
}

func (c *simpleBody) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *simpleBody) Close() error {
	if c.cr {
		c.cr = false
		c.emit([]byte{'\r'})
	}
	// Whether the body was empty, ended in CRLFs or was unterminated, it ends in exactly one CRLF.
	c.pending = 0
	c.write([]byte("\r\n"))
	return c.err
}

// BodyHasher canonicalises and hashes a body once for each canonicalisation asked for, so
// every signature and seal over the same body shares the work. Write the body (CRLF line
// ends) to it, then call Sum.
type BodyHasher struct {
	canons []Canonicalization
	hashes []hash.Hash
	cws    []BodyCanonicalizer
	sums   map[Canonicalization][]byte
	ws     []io.Writer
}

// NewBodyHasher returns a hasher computing the SHA-256 body hash for each of canons.
func NewBodyHasher(canons ...Canonicalization) *BodyHasher {
	b := &BodyHasher{}
	seen := map[Canonicalization]bool{}
	for _, c := range canons {
		if seen[c] {
			continue
		}
		seen[c] = true
		h := sha256.New()
		b.canons = append(b.canons, c)
		b.hashes = append(b.hashes, h)
		cw := NewBodyCanonicalizer(h, c)
		b.cws = append(b.cws, cw)
		b.ws = append(b.ws, cw)
	}
	return b
}

// Write feeds body bytes to every canonicaliser.
func (b *BodyHasher) Write(p []byte) (int, error) {
	if b.sums != nil {
		return 0, fmt.Errorf("dkimcore: body hasher written after Sum")
	}
	for _, w := range b.ws {
		if _, err := w.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Sum ends the body and returns its hashes by canonicalisation.
func (b *BodyHasher) Sum() BodyHashes {
	if b.sums == nil {
		b.sums = make(map[Canonicalization][]byte, len(b.canons))
		for i, c := range b.canons {
			b.cws[i].Close()
			b.sums[c] = b.hashes[i].Sum(nil)
		}
	}
	return BodyHashes(b.sums)
}

// BodyHashes are the SHA-256 body hashes of one body, by canonicalisation.
type BodyHashes map[Canonicalization][]byte

// BodyHash returns the hash for c, or an error naming c when it was not computed.
func (h BodyHashes) BodyHash(c Canonicalization) ([]byte, error) {
	if s, ok := h[c]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("dkimcore: body hash for %s canonicalization not computed", c)
}

// HashBody computes the body hashes of an in-memory body for each of canons.
func HashBody(body []byte, canons ...Canonicalization) BodyHashes {
	h := NewBodyHasher(canons...)
	h.Write(body)
	return h.Sum()
}
