package submit

import (
	"crypto/tls"
)

// Settings are the parts of a Server that Reload replaces while it serves: logins,
// client identities, the pipeline (keys, ARC sealer, resolver) and the listeners' TLS
// configurations (certificates, client CAs). Listener addresses and modes, limits and the
// hostname are fixed at Listen; changing them needs a restart.
type Settings struct {
	Users    Authenticator
	Networks []NetworkIdentity
	Certs    []CertIdentity
	Pipeline *Pipeline
	// TLS is each listener's TLS configuration, by listener name. A listener without an
	// entry keeps the configuration it has.
	TLS map[string]*tls.Config
}

// Reload makes next the settings of every session that starts from now on, and of every
// AUTH, sender identification and message that starts from now on in sessions already
// open; what is in progress finishes with what it started with. The spool in
// next.Pipeline must be the one the server runs on. TLS handshakes from now on use
// next.TLS, and a listener whose TLS is nil in next keeps its configuration.
func (s *Server) Reload(next Settings) {
	cur := s.settings()
	tlsByName := make(map[string]*tls.Config, len(cur.TLS))
	for name, c := range cur.TLS {
		tlsByName[name] = c
	}
	for name, c := range next.TLS {
		if c != nil {
			tlsByName[name] = c
		}
	}
	next.TLS = tlsByName
	s.live.Store(&next)
}

// settings returns the current settings: those of the last Reload, or the Server's own
// fields before any.
func (s *Server) settings() *Settings {
	if st := s.live.Load(); st != nil {
		return st
	}
	st := &Settings{Users: s.Users, Networks: s.Networks, Certs: s.Certs, Pipeline: s.Pipeline, TLS: map[string]*tls.Config{}}
	for _, lc := range s.Listeners {
		st.TLS[lc.Name] = lc.TLS
	}
	s.live.CompareAndSwap(nil, st)
	return s.live.Load()
}

// liveTLS returns the configuration a listener serves with: base, whose
// GetConfigForClient hands each handshake the listener's configuration of the current
// settings (tls.Config.GetConfigForClient), so that a reload changes certificates for new
// handshakes without closing the listener.
func (s *Server) liveTLS(name string, base *tls.Config) *tls.Config {
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if c := s.settings().TLS[name]; c != nil && c != base {
			if c.GetConfigForClient != nil {
				return c.GetConfigForClient(hello)
			}
			return c, nil
		}
		if base.GetConfigForClient != nil {
			return base.GetConfigForClient(hello)
		}
		return nil, nil
	}
	return cfg
}
