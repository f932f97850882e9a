package submit

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// ListenerMode is what a listener is for.
type ListenerMode string

// Listener modes: submission with STARTTLS (RFC 6409, port 587), submission over implicit TLS
// (RFC 8314, port 465), and smart-host relay for client organisations' servers (port 25/2525).
const (
	ModeSubmission  ListenerMode = "submission"
	ModeSubmissions ListenerMode = "submissions"
	ModeSmartHost   ListenerMode = "smarthost"
)

// Listener is one listening socket and the identities it accepts.
type Listener struct {
	Name    string
	Address string
	Mode    ListenerMode
	// Which identity kinds this listener accepts.
	SASL, ClientCert, Network bool
	// TLS is the server TLS configuration (TLS 1.2 or later); required for SASL.
	TLS *tls.Config
}

// Limits bound what one client may make us do.
type Limits struct {
	MaxMessageBytes int64
	MaxRecipients   int
	MaxConnections  int
	CommandTimeout  time.Duration
	DataTimeout     time.Duration
}

// Authenticator checks a login and password (the users file).
type Authenticator interface {
	Authenticate(login, password string) (*Identity, error)
}

// NetworkIdentity is a client organisation known by the addresses of its servers.
type NetworkIdentity struct {
	Prefixes []netip.Prefix
	Identity *Identity
}

// CertIdentity is a client known by its TLS client certificate: the SHA-256 fingerprint of
// the certificate (hex) or its subject's common name. Certificates must chain to the
// listener's client CA.
type CertIdentity struct {
	Fingerprint string
	Subject     string
	Identity    *Identity
}

// Server accepts mail on its listeners and hands each message to the Pipeline.
type Server struct {
	Hostname     string
	Listeners    []Listener
	Limits       Limits
	Users        Authenticator
	Networks     []NetworkIdentity
	Certs        []CertIdentity
	Pipeline     *Pipeline
	AuthThrottle *AuthThrottle // nil: no AUTH failure throttling
	Rate         *MessageRate  // nil: no per-identity message rate limit
	Log          *slog.Logger

	mu      sync.Mutex
	servers []*smtp.Server
	lns     []net.Listener
	conns   chan struct{} // connection slots
}

// Addrs returns the addresses the listeners are bound to, in order (after Listen).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, l := range s.lns {
		out = append(out, l.Addr())
	}
	return out
}

// Listen binds every listener. Serve must follow.
func (s *Server) Listen() error {
	if s.Limits.MaxConnections > 0 {
		s.conns = make(chan struct{}, s.Limits.MaxConnections)
	}
	for _, lc := range s.Listeners {
		if lc.SASL && lc.TLS == nil {
			return fmt.Errorf("listener %s: SASL needs TLS (AUTH is only offered over TLS)", lc.Name)
		}
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			s.Close()
			return fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		ln = &limitListener{Listener: ln, slots: s.conns, log: s.Log}
		if lc.Mode == ModeSubmissions {
			ln = tls.NewListener(ln, lc.TLS)
		}
		srv := s.newSMTPServer(lc)
		s.mu.Lock()
		s.servers = append(s.servers, srv)
		s.lns = append(s.lns, ln)
		s.mu.Unlock()
	}
	return nil
}

// Serve serves every listener until Close; it returns the first error.
func (s *Server) Serve() error {
	s.mu.Lock()
	servers, lns := s.servers, s.lns
	s.mu.Unlock()
	errs := make(chan error, len(servers))
	for i := range servers {
		go func() { errs <- servers[i].Serve(lns[i]) }()
	}
	err := <-errs
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops accepting and closes every connection.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, srv := range s.servers {
		srv.Close()
	}
	return nil
}

func (s *Server) newSMTPServer(lc Listener) *smtp.Server {
	srv := smtp.NewServer(&backend{s: s, lc: lc})
	srv.Domain = s.Hostname
	srv.TLSConfig = lc.TLS
	srv.MaxMessageBytes = s.Limits.MaxMessageBytes
	srv.MaxRecipients = s.Limits.MaxRecipients
	srv.MaxLineLength = 1000 // RFC 5321 §4.5.3.1.6: text line, CRLF included
	srv.ReadTimeout = s.Limits.CommandTimeout
	srv.WriteTimeout = s.Limits.CommandTimeout
	// AUTH is advertised only over TLS by AuthMechanisms; this lets us answer AUTH on a
	// plain connection with 538 5.7.11 (RFC 4954 §6) instead of go-smtp's 523.
	srv.AllowInsecureAuth = true
	srv.EnableDSN = true
	srv.EnableSMTPUTF8 = false
	srv.ErrorLog = slogLogger{s.Log}
	return srv
}

// slogLogger adapts slog to go-smtp's logger.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) { l.l.Warn(fmt.Sprintf(format, v...)) }
func (l slogLogger) Println(v ...any)               { l.l.Warn(fmt.Sprint(v...)) }

// limitListener refuses connections beyond the configured number with a 421 greeting.
type limitListener struct {
	net.Listener
	slots chan struct{}
	log   *slog.Logger
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.slots == nil {
			return c, err
		}
		select {
		case l.slots <- struct{}{}:
			return &slotConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			l.log.Warn("connection refused: too many connections", "client_ip", c.RemoteAddr().String())
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
			c.Close()
		}
	}
}

type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// CloseWrite half-closes the connection where the one underneath can (TCP), so that
// a reply written just before closing is followed by FIN at once (see session.hangUp).
func (c *slotConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

type backend struct {
	s  *Server
	lc Listener
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ip := remoteIP(c.Conn())
	sess := &session{s: b.s, lc: b.lc, conn: c, ip: ip, log: b.s.Log.With("listener", b.lc.Name, "client_ip", ip.String())}
	if st, ok := c.TLSConnectionState(); ok {
		sess.tls = &st
		if b.lc.ClientCert && len(st.VerifiedChains) > 0 {
			sess.identity = b.s.certIdentity(st.VerifiedChains[0][0])
		}
	}
	if sess.identity == nil && b.lc.Network {
		sess.identity = b.s.networkIdentity(ip)
	}
	return sess, nil
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

func (s *Server) networkIdentity(ip netip.Addr) *Identity {
	for _, n := range s.Networks {
		for _, p := range n.Prefixes {
			if p.Contains(ip) {
				return n.Identity
			}
		}
	}
	return nil
}

func (s *Server) certIdentity(cert *x509.Certificate) *Identity {
	sum := sha256.Sum256(cert.Raw)
	fp := hex.EncodeToString(sum[:])
	for _, c := range s.Certs {
		if c.Fingerprint != "" && strings.EqualFold(strings.ReplaceAll(c.Fingerprint, ":", ""), fp) {
			return c.Identity
		}
		if c.Subject != "" && c.Subject == cert.Subject.CommonName {
			return c.Identity
		}
	}
	return nil
}

// Shutdown closes the listeners and waits up to ctx for sessions to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		errs = append(errs, srv.Shutdown(ctx))
	}
	return errors.Join(errs...)
}
