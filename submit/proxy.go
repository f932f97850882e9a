package submit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"
)

// PROXY protocol (HAProxy's "PROXY protocol" versions 1 and 2, docs/scale-out.md):
// behind a TCP load balancer every connection comes from the balancer, so the
// balancer sends the real client's address in a header before the first SMTP byte.
// That address then drives everything an address decides: client_networks trust,
// per-address connection slots, the AUTH throttle, the SPF and iprev checks recorded
// in our ARC-Authentication-Results, logs and metrics.
//
// Trust is per listener (Listener.TrustedProxies), and strict both ways:
//   - a connection from a trusted proxy must begin with a header (there is no
//     "optional" mode: SMTP is server-speaks-first, so a connection without one
//     could only be told apart by waiting out a timeout before the greeting);
//   - a connection from anywhere else that begins with one is refused, on every
//     listener, so that nobody can claim a trusted address by writing a header.
//
// A version 2 LOCAL header (a balancer's own health check) and a version 1 UNKNOWN
// header carry no client, and are refused too: health checks belong on /readyz.

// proxyHeaderTimeout bounds the wait for a trusted proxy's header. HAProxy sends it
// with the connection, so a trusted peer that sends nothing for this long is not a
// proxy speaking the protocol.
const proxyHeaderTimeout = 5 * time.Second

// proxyRefusal is why a PROXY connection is refused: the reason code for the log and
// metric and the reply text.
type proxyRefusal struct {
	reason Reason
	text   string
}

// readProxyHeader reads the PROXY header a trusted proxy must send first on c and
// returns the client's address and a connection that reads on after the header.
// The read deadline is left cleared for clientConn to set.
func readProxyHeader(c net.Conn) (netip.Addr, net.Conn, *proxyRefusal) {
	c.SetReadDeadline(time.Now().Add(proxyHeaderTimeout))
	defer c.SetReadDeadline(time.Time{})
	br := bufio.NewReader(c)
	hdr, err := proxyproto.Read(br)
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol), errors.Is(err, os.ErrDeadlineExceeded):
		return netip.Addr{}, nil, &proxyRefusal{ReasonProxyHeaderMissing,
			"a PROXY protocol header is required from this address (it is a trusted proxy)"}
	case err != nil:
		return netip.Addr{}, nil, &proxyRefusal{ReasonProxyHeaderInvalid,
			fmt.Sprintf("malformed PROXY protocol header: %v", err)}
	case hdr.Command.IsLocal():
		return netip.Addr{}, nil, &proxyRefusal{ReasonProxyLocal,
			"a PROXY LOCAL connection carries no client; check health on /readyz instead"}
	}
	src, ok := hdr.SourceAddr.(*net.TCPAddr)
	if !ok || !hdr.TransportProtocol.IsStream() {
		return netip.Addr{}, nil, &proxyRefusal{ReasonProxyLocal,
			"the PROXY header names no TCP client (UNKNOWN or UNSPEC)"}
	}
	ip, ok := netip.AddrFromSlice(src.IP)
	if !ok {
		return netip.Addr{}, nil, &proxyRefusal{ReasonProxyHeaderInvalid, "the PROXY header's source address is not an IP address"}
	}
	return ip.Unmap(), &proxiedConn{Conn: c, r: br, remote: src}, nil
}

// proxiedConn is a connection after its PROXY header: reads go through the buffer
// the header was read with (a client's TLS ClientHello may already be in it), and
// RemoteAddr is the client's address.
type proxiedConn struct {
	net.Conn
	r      *bufio.Reader
	remote net.Addr
}

func (c *proxiedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }

// CloseWrite half-closes the TCP connection beneath (see clientConn.CloseWrite).
func (c *proxiedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// looksLikeProxyHeader reports whether the first bytes a client sent begin a PROXY
// header (version 1 "PROXY " or the version 2 signature). No SMTP command and no TLS
// record starts so.
func looksLikeProxyHeader(b []byte) bool {
	for _, sig := range [][]byte{proxyproto.SIGV1, proxyproto.SIGV2} {
		n := min(len(b), len(sig))
		if n >= len(proxyproto.SIGV1) && bytes.Equal(b[:n], sig[:n]) {
			return true
		}
	}
	return false
}

var errUntrustedProxyHeader = refusal(ReasonProxyUntrusted, 554, smtp.EnhancedCode{5, 7, 1},
	"PROXY protocol header refused: this address is not a trusted proxy")

// trustedProxy reports whether ip may send a PROXY header on lc.
func (lc Listener) trustedProxy(ip netip.Addr) bool {
	for _, p := range lc.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// acceptProxied reads the PROXY header of a connection from a trusted proxy, then
// admits it as a connection from the client the header names (serveConn). It runs
// in a goroutine of its own, so a proxy that is slow to send its header holds up
// no other connection.
func (s *Server) acceptProxied(c net.Conn, lc Listener, peer netip.Addr) {
	ip, pc, why := readProxyHeader(c)
	if why != nil {
		s.metrics().Refused(why.reason)
		s.refLog.refused(lc.Name, peer, why.reason, why.text)
		// Plain text whatever the listener: the peer spoke no TLS yet, or sent a TLS
		// handshake we never answered, so a reply inside TLS is not possible.
		c.SetWriteDeadline(time.Now().Add(refusalTimeout))
		fmt.Fprintf(c, "421 4.7.0 %s %s\r\n", s.Hostname, why.text)
		c.Close()
		return
	}
	s.serveConn(pc, lc, ip)
}
