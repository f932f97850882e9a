package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"sealgate/internal/config"
	"sealgate/internal/metrics"
	"sealgate/internal/redisstore"
	"sealgate/relay"
	"sealgate/submit"
)

// process is one running relay: what it was started with, and what a reload replaces.
type process struct {
	file    string
	started *config.Config // the configuration the listeners, limits and relay run on
	logs    *logging
	log     *slog.Logger
	srv     *submit.Server
	runner  *relay.Runner
	spool   *relay.Spool
	metrics *metrics.Metrics
	shared  *redisstore.Store // limits.shared; nil: this node counts alone
	dev     bool

	mu       sync.Mutex // one reload at a time
	pipeline atomic.Pointer[submit.Pipeline]
	stopping atomic.Bool
	start    time.Time

	// Key rotation (serve_rotation.go): the configuration last loaded, one round of
	// checks at a time, and a nudge for a round now.
	cfg       atomic.Pointer[config.Config]
	rotMu     sync.Mutex
	rotateNow chan struct{}
}

// config returns the configuration last loaded, at start or by a reload.
func (p *process) config() *config.Config { return p.cfg.Load() }

// serveFile runs the relay on a configuration file until SIGINT or SIGTERM; SIGHUP reloads
// it. banner, when set (dev mode), prints where things are once the relay listens.
func serveFile(cmd *cobra.Command, file string, logs *logging, banner func(admin string)) error {
	// Signals are taken from the start: SIGTERM while the relay starts stops it cleanly
	// once it has, and a SIGHUP (logrotate) is a reload then, not the default action's
	// end of the process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, res, err := loadAndOpen(file)
	if err != nil {
		return fmt.Errorf("configuration %s:\n%w", file, err)
	}
	logs.configure(cfg.Log.Format, cfg.Log.Level)
	log := logs.logger
	logStartup(log, file, cfg)
	m := newMetrics()
	srv, runner, shared, cleanup, err := buildMetered(cfg, res, log, m)
	if err != nil {
		return err
	}
	defer cleanup()
	p := &process{file: file, started: cfg, logs: logs, log: log, srv: srv, runner: runner,
		spool: srv.Pipeline.Spool, metrics: m, shared: shared, dev: banner != nil, start: time.Now(),
		rotateNow: make(chan struct{}, 1)}
	p.cfg.Store(cfg)
	m.WatchRotations(p.rotationCounts)
	var sharedUp func() bool
	if shared != nil {
		sharedUp = shared.Up
	}
	m.WatchCluster(sharedUp, srv.Draining)
	srv.Metrics = submitMetrics{m}
	srv.Pipeline.Metrics = submitMetrics{m}
	p.pipeline.Store(srv.Pipeline)
	runner.OnAttempt = countAttempts(m, runner.OnAttempt)
	sends, stopSends := startSendLog(cfg, log) // DMARC reports' send log (dmarc_serve.go)
	defer stopSends()
	runner.OnAttempt = recordSends(sends, runner.OnAttempt)
	m.WatchDMARCReports(dmarcTotals(cfg))
	m.WatchQueue(spoolQueue{p.spool}, filepath.Join(cfg.Dir, "spool"))
	if c := runner.Control; c != nil {
		// "sealgate reload" (reload.go).
		c.Handle("reload", func(context.Context, json.RawMessage) (any, error) {
			restart, err := p.reload("sealgate reload")
			return reloadResult{Restart: restart}, err
		})
		p.handleDrain(c)     // "sealgate drain" (drain.go)
		p.handleRotations(c) // "sealgate keys rotate --check-now" (serve_rotation.go)
	}
	go p.watchRotations(ctx)
	return p.run(ctx, stop, hup, banner)
}

// logStartup writes the first line of a run: what is starting, on what.
func logStartup(log *slog.Logger, file string, cfg *config.Config) {
	var listeners, domains []string
	for _, l := range cfg.Listeners {
		listeners = append(listeners, fmt.Sprintf("%s=%s(%s)", l.Name, l.Address, l.Mode))
	}
	for _, d := range cfg.Domains {
		var sels []string
		for _, k := range d.Keys {
			sels = append(sels, k.Selector)
		}
		domains = append(domains, d.Domain+"("+strings.Join(sels, ",")+")")
	}
	arc := "none"
	if cfg.ARC.Domain != "" {
		arc = cfg.ARC.Domain + "(" + cfg.ARC.Selector + ")"
	}
	log.Info("sealgate starting", "version", buildVersion(), "config", file, "hostname", cfg.Hostname,
		"listeners", strings.Join(listeners, " "), "domains", strings.Join(domains, " "), "arc", arc,
		"route", route(cfg), "admin", cmp(cfg.Admin.Listen, "off"), "pid", os.Getpid())
}

func route(cfg *config.Config) string {
	switch {
	case cfg.Relay.NextHop != "":
		return "next_hop " + cfg.Relay.NextHop
	case cfg.Relay.Outbox != "":
		return "outbox " + cfg.Relay.Outbox
	}
	if n := len(cfg.Relay.Identities) + len(cfg.Relay.Domains); n > 0 {
		return fmt.Sprintf("mx (%d routes by identity or domain)", n)
	}
	return "mx"
}

func cmp(s, empty string) string {
	if s == "" {
		return empty
	}
	return s
}

// run serves until ctx is done (SIGINT or SIGTERM; stop ends the signal handling), reloading
// at each signal from hup; then it stops accepting, lets sessions and deliveries in flight
// end, and returns.
func (p *process) run(ctx context.Context, stop func(), hup <-chan os.Signal, banner func(admin string)) error {
	log, srv := p.log, p.srv
	if err := srv.Listen(); err != nil {
		return err
	}
	adminAddr := ""
	if a := p.started.Admin.Listen; a != "" {
		as, err := metrics.Listen(a, p.metrics.Handler(p.readinessChecks()...), log)
		switch {
		case err != nil && p.dev:
			// Another dev relay may hold the port: dev mode runs on without it.
			log.Warn("admin listener not started", "address", a, "err", err)
		case err != nil:
			srv.Close()
			return err
		default:
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				as.Shutdown(ctx)
			}()
			adminAddr = as.Addr().String()
			log.Info("listening", "listener", "admin", "address", adminAddr)
			if ip, err := netip.ParseAddrPort(adminAddr); err == nil && !ip.Addr().IsLoopback() {
				log.Warn("the admin listener is not on a loopback address; /metrics and /readyz have no authentication", "address", adminAddr)
			}
		}
	}
	// The admin listener first: once the SMTP listeners are reported, everything is.
	for i, a := range srv.Addrs() {
		log.Info("listening", "listener", srv.Listeners[i].Name, "address", a.String())
	}
	if banner != nil {
		banner(adminAddr)
	}
	// Delivery runs on its own context: a SIGTERM drains the node, and delivery goes
	// on until what is due is delivered (see drainAndStop).
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	runnerDone := make(chan error, 1)
	go func() { runnerDone <- p.runner.Run(runCtx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve() }()
loop:
	for {
		select {
		case err := <-serveDone:
			p.stopping.Store(true)
			stop()
			cancelRun()
			<-runnerDone
			p.logStopped(err)
			return err
		case <-hup:
			p.reload("SIGHUP")
		case <-ctx.Done():
			break loop
		}
	}
	p.drainAndStop(cancelRun)
	err := <-runnerDone
	p.logStopped(err)
	return err
}

func (p *process) logStopped(err error) {
	if err != nil {
		p.log.Error("sealgate stopped", "uptime", time.Since(p.start).Round(time.Second).String(), "err", err)
		return
	}
	p.log.Info("sealgate stopped", "uptime", time.Since(p.start).Round(time.Second).String())
}

// reload reads the configuration file again and, if it is valid, swaps in its logins,
// client identities, keys, certificates and log level (submit.Server.Reload): sessions
// stay connected and the spool is untouched. Changes that need the listeners or the
// delivery runner rebuilt are logged as needing a restart. An invalid configuration
// changes nothing, and every problem is logged.
func (p *process) reload(trigger string) (restart []string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	log := p.log.With("trigger", trigger)
	fail := func(msg string, err error) ([]string, error) {
		p.metrics.Reloaded(false)
		for _, line := range strings.Split(err.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				log.Error(msg, "problem", line)
			}
		}
		log.Error("reload failed: still running the previous configuration", "config", p.file)
		return nil, err
	}
	cfg, res, err := loadAndOpen(p.file)
	if err != nil {
		return fail("reload: configuration problem", err)
	}
	st, err := submitSettings(cfg, res)
	if err != nil {
		return fail("reload: configuration problem", err)
	}
	restart = restartNeeded(p.started, cfg)
	for _, k := range restart {
		log.Warn("reload: this change takes effect only after a restart", "key", k)
	}
	// The running pipeline with its keys, sealer, authserv-id and resolver replaced; the
	// rest (hostname, spool, log, anything else set up at start) stays as it started.
	np := *p.pipeline.Load()
	np.KeyRing, np.ARC, np.AuthServID = st.Pipeline.KeyRing, st.Pipeline.ARC, st.Pipeline.AuthServID
	np.Resolver = p.metrics.Resolver(st.Pipeline.Resolver) // delivery keeps the resolver it started with
	np.CheckResolver = checkResolver(np.Resolver)
	st.Pipeline = &np
	p.srv.Reload(st)
	p.pipeline.Store(&np)
	if ds, ok := p.runner.Bouncer.(*relay.DSNSender); ok {
		ds.SetKeys(dsnKeys(cfg, res.KeyRing, log))
	}
	p.cfg.Store(cfg)
	if trigger != "key rotation" {
		select { // a reload checks the key rotations too
		case p.rotateNow <- struct{}{}:
		default:
		}
	}
	p.logs.setLevel(cfg.Log.Level)
	p.metrics.Reloaded(true)
	for _, w := range res.WeakKeys {
		log.Warn("signing with an RSA key under 2048 bits (min_rsa_bits); RFC 8301 §3.2 recommends 2048: rotate it", "key", w)
	}
	users := 0
	if res.Users != nil {
		users = len(res.Users)
	}
	log.Info("configuration reloaded", "config", p.file, "users", users, "domains", len(res.KeyRing.Domains()))
	return restart, nil
}

// reloadResult is the answer to the control command "reload".
type reloadResult struct {
	// Restart lists the changed keys that take effect only after a restart.
	Restart []string `json:"restart,omitempty"`
}

// restartNeeded lists the configuration keys whose change a reload cannot apply.
func restartNeeded(running, next *config.Config) []string {
	var keys []string
	diff := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	diff("hostname", running.Hostname, next.Hostname)
	diff("dir", running.Dir, next.Dir)
	type listener struct {
		Name, Address, Mode  string
		Auth, TrustedProxies []string
	}
	var a, b []listener
	for _, l := range running.Listeners {
		a = append(a, listener{l.Name, l.Address, l.Mode, l.Auth, l.TrustedProxies})
	}
	for _, l := range next.Listeners {
		b = append(b, listener{l.Name, l.Address, l.Mode, l.Auth, l.TrustedProxies})
	}
	diff("listeners (names, addresses, modes, auth, trusted_proxies)", a, b)
	diff("limits", running.Limits, next.Limits)
	diff("relay", running.Relay, next.Relay)
	diff("admin.listen", running.Admin.Listen, next.Admin.Listen)
	diff("log.format", running.Log.Format, next.Log.Format)
	return keys
}

// readinessChecks are what /readyz checks: the spool takes new files, every listener is
// bound and the relay is not shutting down, and there are keys to sign with.
func (p *process) readinessChecks() []metrics.Check {
	checks := []metrics.Check{
		{Name: "spool", Func: func(context.Context) error { return spoolWritable(filepath.Join(p.started.Dir, "spool")) }},
		{Name: "listeners", Func: func(context.Context) error {
			if p.stopping.Load() {
				return errors.New("shutting down")
			}
			if p.srv.Draining() {
				return errors.New("draining (sealgate drain): no new sessions, delivery goes on")
			}
			// Bound sockets, not dialled: a probe every few seconds would be an SMTP
			// session, and a log line, each time.
			if n, want := len(p.srv.Addrs()), len(p.started.Listeners); n != want {
				return fmt.Errorf("%d of %d listeners bound", n, want)
			}
			return nil
		}},
		{Name: "keys", Func: func(context.Context) error { return keysLoaded(p.pipeline.Load(), p.started) }},
	}
	if p.shared != nil {
		// Degraded, not failed: the node serves on its own counters, and failing
		// every node's check at once would take the whole cluster out of the balancer.
		checks = append(checks, metrics.Check{Name: "shared-counters", Degraded: true, Func: func(context.Context) error {
			if err := p.shared.Status(); err != nil {
				return fmt.Errorf("%v; counting on this node only", err)
			}
			return nil
		}})
	}
	return checks
}

// spoolWritable checks that the spool can take new messages: a file is created, written,
// synced and removed in tmp/ (which OpenSpool empties, so a probe a crash leaves behind
// does no harm), and msg/, where messages are created, is a directory this process may
// write to (access(2), which also sees a read-only file system). No probe file goes into
// msg/: one left there by a crash would be warned about at every start.
func spoolWritable(dir string) error {
	f, err := os.CreateTemp(filepath.Join(dir, "tmp"), ".readyz-*")
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte("probe"))
	serr := f.Sync()
	f.Close()
	os.Remove(f.Name())
	if err := errors.Join(werr, serr); err != nil {
		return fmt.Errorf("spool tmp: %w", err)
	}
	msg := filepath.Join(dir, "msg")
	st, err := os.Stat(msg)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", msg)
	}
	if err := canWrite(msg); err != nil {
		return fmt.Errorf("%s: %w", msg, err)
	}
	return nil
}

// keysLoaded checks that every configured domain has keys to sign with (or relays
// unsigned) and that the ARC key is loaded when arc is configured.
func keysLoaded(pl *submit.Pipeline, cfg *config.Config) error {
	if pl == nil || pl.KeyRing == nil {
		return errors.New("no key ring")
	}
	var missing []string
	for _, d := range pl.KeyRing.Domains() {
		dk, ok := pl.KeyRing.Lookup(d)
		if !ok || len(dk.Keys) == 0 && !dk.RelayUnsigned {
			missing = append(missing, d.String())
		}
	}
	if len(pl.KeyRing.Domains()) < len(cfg.Domains) {
		missing = append(missing, fmt.Sprintf("%d of %d domains loaded", len(pl.KeyRing.Domains()), len(cfg.Domains)))
	}
	if cfg.ARC.KeyFile != "" && pl.ARC == nil {
		missing = append(missing, "arc key")
	}
	if len(missing) > 0 {
		return fmt.Errorf("no keys for %s", strings.Join(missing, ", "))
	}
	return nil
}
