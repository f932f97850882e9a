package relay

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpSink is a small SMTP server for delivery tests, written on textproto
// because go-smtp's server cannot advertise SUBMITTER or other keywords of a
// test's choice. It records every transaction.
type smtpSink struct {
	Name       string
	Extensions []string    // EHLO keywords besides PIPELINING and STARTTLS
	TLS        *tls.Config // offers STARTTLS when set
	Implicit   bool        // TLS from the first byte (with TLS)
	// Login, when set ("user:password"), is the one AUTH PLAIN/LOGIN credential,
	// offered under TLS only.
	Login string
	// RcptReply answers RCPT for an address; nil accepts all.
	RcptReply func(rcpt string) string
	// HangUp closes the connection right after the 354 reply to DATA.
	HangUp bool

	ln net.Listener

	mu    sync.Mutex
	txs   []sinkTx
	conns map[net.Conn]bool
}

// sinkTx is one transaction as the sink saw it.
type sinkTx struct {
	Remote   string // client IP
	Helo     string
	TLS      bool
	AuthUser string
	Mail     string // the whole MAIL line
	Rcpts    []string
	Data     string
}

// start listens on addr (ip:port, port may be 0) and serves until the test
// ends. It fails the test when addr cannot be bound.
func (s *smtpSink) start(t *testing.T, addr string) *smtpSink {
	t.Helper()
	if err := s.listen(addr); err != nil {
		t.Fatalf("sink %s: %v", addr, err)
	}
	t.Cleanup(func() { s.ln.Close() })
	return s
}

func (s *smtpSink) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if s.Name == "" {
		s.Name = "sink.test"
	}
	s.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return nil
}

func (s *smtpSink) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *smtpSink) transactions() []sinkTx {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkTx(nil), s.txs...)
}

// closeSessions closes every open session from the server's end.
func (s *smtpSink) closeSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

func (s *smtpSink) serve(c net.Conn) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[net.Conn]bool{}
	}
	s.conns[c] = true
	s.mu.Unlock()
	raw := c
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, raw)
		s.mu.Unlock()
	}()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	remote, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	tlsOn := false
	if s.Implicit {
		tc := tls.Server(c, s.TLS)
		if tc.Handshake() != nil {
			return
		}
		c, tlsOn = tc, true
	}
	tp := textproto.NewConn(c)
	reply := func(format string, args ...any) { tp.PrintfLine(format, args...) }
	reply("220 %s ESMTP test", s.Name)
	var cur sinkTx
	var helo, user string
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			helo = arg
			lines := []string{s.Name, "PIPELINING"}
			if s.TLS != nil && !tlsOn {
				lines = append(lines, "STARTTLS")
			}
			if s.Login != "" && tlsOn {
				lines = append(lines, "AUTH PLAIN LOGIN")
			}
			lines = append(lines, s.Extensions...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				reply("250%s%s", sep, l)
			}
		case "HELO":
			helo = arg
			reply("250 %s", s.Name)
		case "STARTTLS":
			if s.TLS == nil || tlsOn {
				reply("502 5.5.1 no")
				continue
			}
			reply("220 2.0.0 go ahead")
			tc := tls.Server(c, s.TLS)
			if tc.Handshake() != nil {
				return
			}
			c, tlsOn = tc, true
			tp = textproto.NewConn(c)
			helo, user = "", ""
		case "AUTH":
			mech, initial, _ := strings.Cut(arg, " ")
			var got string
			switch strings.ToUpper(mech) {
			case "PLAIN":
				b, _ := base64.StdEncoding.DecodeString(initial)
				parts := strings.Split(string(b), "\x00")
				if len(parts) == 3 {
					got = parts[1] + ":" + parts[2]
				}
			case "LOGIN":
				reply("334 VXNlcm5hbWU6")
				u, _ := tp.ReadLine()
				reply("334 UGFzc3dvcmQ6")
				p, _ := tp.ReadLine()
				ub, _ := base64.StdEncoding.DecodeString(u)
				pb, _ := base64.StdEncoding.DecodeString(p)
				got = string(ub) + ":" + string(pb)
			}
			if !tlsOn || got != s.Login {
				reply("535 5.7.8 bad credentials")
				continue
			}
			user, _, _ = strings.Cut(got, ":")
			reply("235 2.7.0 ok")
		case "MAIL":
			if s.Login != "" && user == "" {
				reply("530 5.7.0 authentication required")
				continue
			}
			cur = sinkTx{Remote: remote, Helo: helo, TLS: tlsOn, AuthUser: user, Mail: line}
			reply("250 2.1.0 ok")
		case "RCPT":
			rcpt := strings.TrimSuffix(strings.TrimPrefix(strings.Fields(arg)[0], "TO:<"), ">")
			r := "250 2.1.5 ok"
			if s.RcptReply != nil {
				r = s.RcptReply(rcpt)
			}
			if strings.HasPrefix(r, "2") {
				cur.Rcpts = append(cur.Rcpts, rcpt)
			}
			reply("%s", r)
		case "DATA":
			if cur.Mail == "" || len(cur.Rcpts) == 0 {
				reply("554 5.5.1 no valid recipients")
				continue
			}
			reply("354 go ahead")
			if s.HangUp {
				return
			}
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			cur.Data = string(data)
			s.mu.Lock()
			s.txs = append(s.txs, cur)
			n := len(s.txs)
			s.mu.Unlock()
			cur = sinkTx{}
			reply("250 2.0.0 queued as Q%d", n)
		case "RSET":
			cur = sinkTx{}
			reply("250 2.0.0 ok")
		case "NOOP":
			reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("500 5.5.2 unknown command")
		}
	}
}

// startSinks starts one sink per IP (127.0.0.x) on one common port, so that MX
// hosts resolving to those addresses are reached on Transport.MXPort.
func startSinks(t *testing.T, sinks map[string]*smtpSink) int {
	t.Helper()
	for range 20 {
		port := 0
		var started []*smtpSink
		ok := true
		for ip, s := range sinks {
			if err := s.listen(net.JoinHostPort(ip, fmt.Sprint(port))); err != nil {
				ok = false
				break
			}
			started = append(started, s)
			port = s.port()
		}
		if ok {
			for _, s := range started {
				t.Cleanup(func() { s.ln.Close() })
			}
			return port
		}
		for _, s := range started {
			s.ln.Close()
		}
	}
	t.Fatal("no common free port for the sinks")
	return 0
}
