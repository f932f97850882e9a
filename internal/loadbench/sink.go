//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// ---- sink ----

// sink is the relay's next hop: an SMTP server that accepts everything, counts the
// messages it receives, notes when each loadbench message (by its idHeader) arrived, and
// discards them. While held (hold, until release) it answers no MAIL command: the relay's
// delivery sessions, new (after the greeting and EHLO) and kept ones alike, wait on that
// reply, which costs the relay a blocked read and nothing else.
type sink struct {
	srv      *smtp.Server
	addr     string
	received atomic.Int64

	mu       sync.Mutex
	stalled  chan struct{} // non-nil while held; closed by release
	arrivals map[string]time.Time
}

// idHeader carries each message's id from the load client to the sink, through the relay
// (which adds its own header fields above it and changes none of ours).
const idHeader = "X-Loadbench-Id:"

func startSink() (*sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s := &sink{addr: l.Addr().String(), arrivals: map[string]time.Time{}}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "sink.loadbench.test"
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxMessageBytes = 64 << 20
	s.srv.MaxRecipients = 1000
	s.srv.ErrorLog = discardLog{}
	go s.srv.Serve(l)
	return s, nil
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession{s}, nil }
func (s *sink) count() int64                                { return s.received.Load() }
func (s *sink) close()                                      { s.release(); s.srv.Close() }

// hold makes every MAIL command wait until release.
func (s *sink) hold() {
	s.mu.Lock()
	if s.stalled == nil {
		s.stalled = make(chan struct{})
	}
	s.mu.Unlock()
}

func (s *sink) release() {
	s.mu.Lock()
	if s.stalled != nil {
		close(s.stalled)
		s.stalled = nil
	}
	s.mu.Unlock()
}

func (s *sink) waitReleased() {
	s.mu.Lock()
	ch := s.stalled
	s.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// takeArrivals returns the arrival time of each message id received since the last call.
func (s *sink) takeArrivals() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.arrivals
	s.arrivals = map[string]time.Time{}
	return a
}

type sinkSession struct{ s *sink }

func (sinkSession) Reset()        {}
func (sinkSession) Logout() error { return nil }

func (ss sinkSession) Mail(string, *smtp.MailOptions) error {
	ss.s.waitReleased()
	return nil
}

func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

// Data reads the header for idHeader, discards the rest, and notes the arrival time: the
// end of DATA (the reader ends at the final dot), just before the sink's 250.
func (ss sinkSession) Data(r io.Reader) error {
	br := bufio.NewReader(r)
	var id string
	cont := false // the previous read ended inside an over-long line
	for {
		line, err := br.ReadSlice('\n')
		if !cont {
			if err == nil && len(bytes.TrimRight(line, "\r\n")) == 0 {
				break // the blank line ending the header
			}
			if len(line) >= len(idHeader) && bytes.EqualFold(line[:len(idHeader)], []byte(idHeader)) {
				id = string(bytes.TrimSpace(line[len(idHeader):]))
			}
		}
		cont = err == bufio.ErrBufferFull
		if err == io.EOF {
			break
		}
		if err != nil && !cont {
			return err
		}
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	now := time.Now()
	if id != "" {
		ss.s.mu.Lock()
		ss.s.arrivals[id] = now
		ss.s.mu.Unlock()
	}
	ss.s.received.Add(1)
	return nil
}

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}
