package smtpedge

import (
	"bytes"
	"strconv"
	"strings"
)

// WireConn is what WireScanner needs of the connection it watches (submit's clientConn).
type WireConn interface {
	// WireCopy says what the bytes handed to the scanner are, from what happened on the
	// connection beneath since its previous Write, and forgets it: reply if they are the
	// copy of a reply (bytes were written and none read), fresh if a TLS handshake began
	// since (the stream starts anew at a line start).
	WireCopy() (reply, fresh bool)
	// DataState reports whether Data is running, and which call of it.
	DataState() (running bool, seq uint64)
	// Smuggling records a line "." followed by a bare CR.
	Smuggling()
	// AddPath records a MAIL FROM or RCPT TO argument as the client wrote it.
	AddPath(WirePath)
}

// WireScanner is the Debug writer of a connection's smtp.Server: go-smtp
// (v0.26.0, Conn.init) copies to it, in one stream, every byte it reads from the
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
type WireScanner struct {
	Conn  WireConn
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

func (w *WireScanner) Write(p []byte) (int, error) {
	n := len(p)
	reply, fresh := w.Conn.WireCopy()
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
				w.Conn.Smuggling()
			} else if running, seq := w.Conn.DataState(); running && !w.bdat {
				w.dataEnded = seq // the end of the DATA message (RFC 5321 §4.1.1.4)
			}
			w.state = wsMidLine
		}
	}
	return n, nil
}

// commandLine reports whether a line that starts now is a command (see
// WireScanner), not a line of a DATA message being read.
func (w *WireScanner) commandLine() bool {
	running, seq := w.Conn.DataState()
	if !running {
		w.bdat = false
		return true
	}
	return w.bdat || w.dataEnded == seq
}

func (w *WireScanner) capture(p []byte) {
	if !w.capt {
		return
	}
	if len(w.line)+len(p) > maxCapturedLine {
		w.capt = false
		return
	}
	w.line = append(w.line, p...)
}

func (w *WireScanner) endLine() {
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
		arg, ok = CutPrefixFold(arg, "FROM:")
	case "RCPT":
		arg, ok = CutPrefixFold(arg, "TO:")
	}
	if !ok {
		return
	}
	if wp, ok := ParseWirePath(verb, strings.TrimSpace(arg)); ok {
		w.Conn.AddPath(wp)
	}
}

// bdatChunk notes the chunk that follows a BDAT command, if go-smtp reads one:
// whenever its arguments parse (go-smtp's handleBdat), even if it refuses the
// command.
func (w *WireScanner) bdatChunk(arg string) {
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

// CutPrefixFold is strings.CutPrefix ignoring ASCII case.
func CutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// WirePath is a MAIL FROM or RCPT TO argument as the client wrote it.
type WirePath struct {
	Verb string // "MAIL" or "RCPT"
	// value is what go-smtp passes to the session for it (quoting removed).
	Value string
	// mailbox is the mailbox as written, quoting kept, without the angle brackets
	// and source route; "" for the null reverse-path.
	Mailbox string
}

// ParseWirePath parses a path the way go-smtp v0.26.0's parser does
// (parser.parsePath and parseReversePath in its parse.go), so that the result
// can be matched with the value go-smtp passes to the session, and keeps the
// mailbox as written.
func ParseWirePath(verb, s string) (WirePath, bool) {
	wp := WirePath{Verb: verb}
	if verb == "MAIL" && strings.HasPrefix(s, "<>") {
		return wp, true
	}
	// RFC 5321 §4.1.1.3: RCPT TO:<Postmaster> needs no domain; go-smtp v0.26.0 passes
	// "Postmaster" on as written (parseForwardPath).
	const postmaster = "<postmaster>"
	if verb == "RCPT" && len(s) >= len(postmaster) && strings.EqualFold(s[:len(postmaster)], postmaster) {
		wp.Value = s[1 : len(postmaster)-1]
		wp.Mailbox = wp.Value
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
	wp.Value, wp.Mailbox = value.String(), s[:j]
	return wp, true
}
