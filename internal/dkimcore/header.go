package dkimcore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxHeaderBytes bounds the header block ReadHeader accepts, so that a message without a
// blank line cannot make us hold an unbounded amount of memory.
const MaxHeaderBytes = 1 << 20

// Field is one header field exactly as it appears in the message, folding included, ending
// in CRLF.
type Field []byte

// Name returns the field name as written (case preserved, white space before ':' removed).
func (f Field) Name() string {
	i := bytes.IndexByte(f, ':')
	if i < 0 {
		return ""
	}
	return string(bytes.TrimRight(f[:i], " \t"))
}

// Value returns the raw value after ':' with folding kept and the final CRLF removed.
func (f Field) Value() string {
	i := bytes.IndexByte(f, ':')
	if i < 0 {
		return ""
	}
	return string(bytes.TrimSuffix(f[i+1:], []byte("\r\n")))
}

// Is reports whether the field is named name, ASCII case-insensitively.
func (f Field) Is(name string) bool {
	if len(f) <= len(name) {
		return false
	}
	if !strings.EqualFold(string(f[:len(name)]), name) {
		return false
	}
	for _, c := range f[len(name):] {
		switch c {
		case ':':
			return true
		case ' ', '\t':
		default:
			return false
		}
	}
	return false
}

// Header is a message header: its fields in order, top first.
type Header []Field

// Values returns the unfolded values of every field named name, top first, with leading and
// trailing white space removed.
func (h Header) Values(name string) []string {
	var vs []string
	for _, f := range h {
		if f.Is(name) {
			vs = append(vs, strings.TrimSpace(unfoldValue(f.Value())))
		}
	}
	return vs
}

// Has reports whether a field named name is present.
func (h Header) Has(name string) bool {
	for _, f := range h {
		if f.Is(name) {
			return true
		}
	}
	return false
}

// Count returns how many fields are named name.
func (h Header) Count(name string) int {
	n := 0
	for _, f := range h {
		if f.Is(name) {
			n++
		}
	}
	return n
}

// Bytes returns the header block: all fields concatenated, without the blank line that ends it.
func (h Header) Bytes() []byte {
	n := 0
	for _, f := range h {
		n += len(f)
	}
	b := make([]byte, 0, n)
	for _, f := range h {
		b = append(b, f...)
	}
	return b
}

// WriteTo writes the header block followed by the blank line that separates it from the body.
func (h Header) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, f := range h {
		m, err := w.Write(f)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	m, err := io.WriteString(w, "\r\n")
	return n + int64(m), err
}

// unfoldValue removes the CRLF of folded lines, keeping the white space after them (RFC 5322 §2.2.3).
func unfoldValue(v string) string {
	if !strings.Contains(v, "\n") {
		return v
	}
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.ReplaceAll(v, "\n", "")
}

// ErrBareLineEnd is returned by ReadHeader in strict mode for a CR or LF that is not part of
// a CRLF pair.
var crlf = []byte("\r\n")

var ErrBareLineEnd = errors.New("bare CR or LF in header (lines must end in CRLF)")

// ReadHeader reads the header block of a message from r, up to and including the blank line
// that ends it, leaving r at the first byte of the body. A message that ends inside the
// header (no blank line) has an empty body.
//
// Lines may end in CRLF or, unless strict is set, in a bare LF; the fields returned always
// end in CRLF. In strict mode a bare CR or LF is ErrBareLineEnd. A line that is neither a
// field nor a continuation, or a header larger than MaxHeaderBytes, is an error.
func ReadHeader(r *bufio.Reader, strict bool) (Header, error) {
	var h Header
	total := 0
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A very long line: gather it whole.
			buf := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				if total+len(buf) > MaxHeaderBytes {
					return nil, fmt.Errorf("header larger than %d bytes", MaxHeaderBytes)
				}
				line, err = r.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		total += len(line)
		if total > MaxHeaderBytes {
			return nil, fmt.Errorf("header larger than %d bytes", MaxHeaderBytes)
		}
		if len(line) == 0 {
			return h, nil // EOF
		}
		content, terminated := trimLineEnd(line)
		if strict && (terminated && !bytes.HasSuffix(line, crlf) || bytes.IndexByte(content, '\r') >= 0) {
			return nil, ErrBareLineEnd
		}
		if len(content) == 0 {
			return h, nil // the blank line (or EOF): end of header
		}
		if isWSP(content[0]) {
			if len(h) == 0 {
				return nil, errors.New("header starts with a continuation line")
			}
			last := h[len(h)-1]
			last = append(last, content...)
			h[len(h)-1] = append(last, '\r', '\n')
		} else {
			colon := bytes.IndexByte(content, ':')
			if colon <= 0 || !validFieldName(bytes.TrimRight(content[:colon], " \t")) {
				return nil, fmt.Errorf("malformed header line %q: not a field (name: value) nor a continuation", shorten(string(content)))
			}
			f := make(Field, 0, len(content)+2)
			f = append(f, content...)
			h = append(h, append(f, '\r', '\n'))
		}
		if err == io.EOF {
			return h, nil
		}
	}
}

// trimLineEnd strips CRLF or LF; ok is false when the line had no LF at all.
func trimLineEnd(line []byte) ([]byte, bool) {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		return line, true
	}
	return line, false
}

// validFieldName reports whether b is 1*ftext (printable US-ASCII except ':'), RFC 5322 §3.6.8.
func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}
