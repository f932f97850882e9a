package submit

import (
	"time"
)

// Metrics is told what the server and the pipeline do, for monitoring; package
// internal/metrics implements it for Prometheus. Its methods run on the per-message path:
// they must be cheap (no allocation, no lock held long) and safe for concurrent use.
type Metrics interface {
	// Refused counts one refusal or deferral, connection-level ones included.
	Refused(r Reason)
	// Accepted counts one message durably spooled; d is the time from DATA (or the first
	// BDAT) to the 250 reply.
	Accepted(d time.Duration)
	// Signed counts one message DKIM-signed for the signing domain d= (A-label).
	Signed(domain string)
	// Sealed counts one message ARC-sealed by the sealing domain d= (A-label).
	Sealed(domain string)
	// TLSIn counts one session on a TLS connection of the given version (tls.VersionTLS13 ...).
	TLSIn(version uint16)
}

// nopMetrics counts nothing.
type nopMetrics struct{}

func (nopMetrics) Refused(Reason)         {}
func (nopMetrics) Accepted(time.Duration) {}
func (nopMetrics) Signed(string)          {}
func (nopMetrics) Sealed(string)          {}
func (nopMetrics) TLSIn(uint16)           {}

func (s *Server) metrics() Metrics {
	if s.Metrics == nil {
		return nopMetrics{}
	}
	return s.Metrics
}

func (p *Pipeline) metrics() Metrics {
	if p.Metrics == nil {
		return nopMetrics{}
	}
	return p.Metrics
}
