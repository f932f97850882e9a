package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition of /readyz.
type Check struct {
	Name string
	// Func returns nil when the condition holds, else what is wrong. It should finish
	// within a second: /readyz runs every check on each request.
	Func func(ctx context.Context) error
	// Degraded makes a failure of this check a "degraded NAME: why" line that leaves
	// /readyz at 200: the node still takes mail, worse (shared counters unreachable),
	// and taking every node out of the balancer for it would be an outage.
	Degraded bool
}

// Handler serves /metrics, /healthz and /readyz:
//
//   - /metrics: every metric, in the Prometheus text format;
//   - /healthz: 200 "ok" while the process serves HTTP at all;
//   - /readyz: 200 with one "ok NAME" line per check when every check passes, else 503 with
//     "failed NAME: why" for each one that does not; a Degraded check that fails says
//     "degraded NAME: why" and keeps 200.
func (m *Metrics) Handler(checks ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var b strings.Builder
		ok := true
		for _, c := range checks {
			if err := c.Func(ctx); err != nil && c.Degraded {
				fmt.Fprintf(&b, "degraded %s: %v\n", c.Name, err)
			} else if err != nil {
				ok = false
				fmt.Fprintf(&b, "failed %s: %v\n", c.Name, err)
			} else {
				fmt.Fprintf(&b, "ok %s\n", c.Name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, b.String())
	})
	return mux
}

// Server is the admin HTTP listener.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr and serves h on it until Shutdown. Errors of the server after it
// started are logged to log.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	s := &Server{ln: ln, srv: &http.Server{
		Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the admin listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the admin listener, waiting up to ctx for requests in progress.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
