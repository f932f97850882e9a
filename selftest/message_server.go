package selftest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// Received is one mail transaction a receiving server took: the envelope as sent and the
// message exactly as it arrived (dot-stuffing undone).
type Received struct {
	HELO      string
	MailFrom  string // without angle brackets; "" for the null reverse-path
	Submitter string // the SUBMITTER parameter, xtext-decoded (RFC 4405 §4.2)
	Rcpts     []string
	Message   []byte
}

// receiver is a small receiving SMTP server (RFC 5321) on 127.0.0.1: it offers PIPELINING,
// 8BITMIME, SMTPUTF8 and SUBMITTER (RFC 4405), accepts every recipient and keeps what it
// received. It is not a mail server: it exists so the selftest sees a message as a receiver
// does, after our outbound client sent it.
type receiver struct {
	ln       net.Listener
	hostname string
	mu       sync.Mutex
	got      []Received
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
}

// maxReceived bounds the size of one message the receiver takes.
const maxReceived = 64 << 20

func startReceiver(hostname string) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("selftest: receiving server: %w", err)
	}
	rv := &receiver{ln: ln, hostname: hostname, conns: map[net.Conn]bool{}}
	rv.wg.Add(1)
	go rv.serve()
	return rv, nil
}

func (rv *receiver) addr() string { return rv.ln.Addr().String() }

// close stops the server, ending sessions a client left open (a kept connection), and
// returns what it received.
func (rv *receiver) close() []Received {
	rv.ln.Close()
	rv.mu.Lock()
	for c := range rv.conns {
		c.Close()
	}
	rv.mu.Unlock()
	rv.wg.Wait()
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.got
}

func (rv *receiver) serve() {
	defer rv.wg.Done()
	for {
		c, err := rv.ln.Accept()
		if err != nil {
			return
		}
		rv.mu.Lock()
		rv.conns[c] = true
		rv.mu.Unlock()
		rv.wg.Add(1)
		go func() {
			defer rv.wg.Done()
			defer func() {
				rv.mu.Lock()
				delete(rv.conns, c)
				rv.mu.Unlock()
				c.Close()
			}()
			rv.session(c)
		}()
	}
}

func (rv *receiver) session(c net.Conn) {
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	tp := textproto.NewConn(c)
	tp.PrintfLine("220 %s ESMTP sealgate selftest receiver", rv.hostname)
	var helo string
	var tx *Received
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			helo, tx = arg, nil
			tp.PrintfLine("250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE %d\r\n250 SUBMITTER", rv.hostname, maxReceived)
		case "HELO":
			helo, tx = arg, nil
			tp.PrintfLine("250 %s", rv.hostname)
		case "MAIL":
			path, params, err := pathArg(arg, "FROM:")
			if err != nil {
				tp.PrintfLine("501 5.5.4 %v", err)
				continue
			}
			tx = &Received{HELO: helo, MailFrom: path}
			for _, p := range params {
				k, v, _ := strings.Cut(p, "=")
				if strings.EqualFold(k, "SUBMITTER") {
					tx.Submitter = decodeXText(v)
				}
			}
			tp.PrintfLine("250 2.1.0 ok")
		case "RCPT":
			path, _, err := pathArg(arg, "TO:")
			switch {
			case tx == nil:
				tp.PrintfLine("503 5.5.1 MAIL first")
			case err != nil:
				tp.PrintfLine("501 5.5.4 %v", err)
			default:
				tx.Rcpts = append(tx.Rcpts, path)
				tp.PrintfLine("250 2.1.5 ok")
			}
		case "DATA":
			if tx == nil || len(tx.Rcpts) == 0 {
				tp.PrintfLine("503 5.5.1 no valid recipients")
				continue
			}
			tp.PrintfLine("354 go ahead")
			msg, err := readData(tp.R)
			if err != nil {
				tp.PrintfLine("552 5.3.4 %v", err)
				return
			}
			tx.Message = msg
			rv.mu.Lock()
			rv.got = append(rv.got, *tx)
			rv.mu.Unlock()
			tx = nil
			tp.PrintfLine("250 2.0.0 received")
		case "RSET":
			tx = nil
			tp.PrintfLine("250 2.0.0 ok")
		case "NOOP":
			tp.PrintfLine("250 2.0.0 ok")
		case "QUIT":
			tp.PrintfLine("221 2.0.0 bye")
			return
		default:
			tp.PrintfLine("502 5.5.2 not implemented")
		}
	}
}

// pathArg splits "FROM:<a@b> PARAM=V" into the path without brackets and the parameters.
func pathArg(arg, prefix string) (string, []string, error) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", nil, fmt.Errorf("want %s<path>", prefix)
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", nil, errors.New("the path must be in angle brackets")
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", nil, errors.New("no closing '>'")
	}
	return rest[1:end], strings.Fields(rest[end+1:]), nil
}

// readData reads a dot-terminated message (RFC 5321 §4.5.2), undoing the dot-stuffing and
// keeping every other byte as it came.
func readData(r *bufio.Reader) ([]byte, error) {
	var b bytes.Buffer
	start := true // at the start of a line
	for {
		line, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("reading the message: %w", err)
		}
		if start && string(line) == ".\r\n" {
			return b.Bytes(), nil
		}
		if start && len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		b.Write(line)
		start = err == nil
		if b.Len() > maxReceived {
			return nil, fmt.Errorf("message over %d bytes", maxReceived)
		}
	}
}

// decodeXText decodes xtext (RFC 3461 §4): "+HH" stands for the octet HH.
func decodeXText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '+' && i+2 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+3], "%02X", &c); err == nil {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
