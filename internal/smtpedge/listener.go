package smtpedge

import (
	"net"
	"sync"
)

// OneConnListener hands one connection to smtp.Server.Serve, then blocks until
// that connection is closed.
type OneConnListener struct {
	Conn net.Conn
	Done <-chan struct{}
	once sync.Once
}

func (l *OneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.Conn })
	if c != nil {
		return c, nil
	}
	<-l.Done
	return nil, net.ErrClosed
}

func (l *OneConnListener) Close() error   { return nil }
func (l *OneConnListener) Addr() net.Addr { return l.Conn.LocalAddr() }
