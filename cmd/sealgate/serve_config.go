package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"sealgate/internal/config"
	"sealgate/internal/libcrypto"
	"sealgate/internal/metrics"
	"sealgate/internal/redisstore"
	"sealgate/relay"
	"sealgate/sign"
	"sealgate/submit"
)

// buildMetered turns a validated configuration and what validating it opened (res, from
// loadAndOpen: the keys already loaded, so they are read once) into a server and a
// delivery runner: the one constructor of the relay, for `serve --config` and `serve --dev`
// alike. It warns about every RSA key under 2048 bits a configured min_rsa_bits let in. It
// counts into m (nil: nothing counted): the server, pipeline and delivery report to it, and
// every DNS lookup goes through its counting resolver. shared is the store of
// limits.shared (nil without it).
func buildMetered(cfg *config.Config, res *resources, log *slog.Logger, m *metrics.Metrics) (srv *submit.Server, runner *relay.Runner, shared *redisstore.Store, cleanup func(), err error) {
	if m != nil {
		res.Resolver = m.Resolver(res.Resolver)
	}
	for _, w := range res.WeakKeys {
		log.Warn("signing with an RSA key under 2048 bits (min_rsa_bits); RFC 8301 §3.2 recommends 2048: rotate it", "key", w)
	}
	for _, d := range res.KeyRing.Domains() {
		dk, _ := res.KeyRing.Lookup(d)
		for _, k := range dk.Keys {
			log.Info("signing key", "domain", d, "selector", k.Selector, "signer", libcrypto.Implementation(k.Signer))
		}
	}
	if res.ARCKey != nil {
		log.Info("signing key", "arc_domain", cfg.ARC.Domain, "selector", cfg.ARC.Selector, "signer", libcrypto.Implementation(res.ARCKey))
	}
	settings, err := submitSettings(cfg, res)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	lm := cfg.Limits
	srv = &submit.Server{
		Hostname: cfg.Hostname,
		Limits: submit.Limits{
			MaxMessageBytes: lm.MaxMessageBytes, MaxRecipients: lm.MaxRecipients,
			MaxConnections: lm.MaxConnections, MaxConnectionsPerIP: lm.MaxConnectionsPerIP,
			PreAuthTimeout: lm.PreAuthTimeout, MaxHeaderFields: lm.MaxHeaderFields,
			CommandTimeout: lm.CommandTimeout, DataTimeout: lm.DataTimeout,
		},
		AuthThrottle: submit.NewAuthThrottle(lm.AuthFailures, lm.AuthCooldown),
		Rate:         submit.NewMessageRate(),
		Log:          log,
		ReportIntake: reportIntake(cfg, log), // dmarc_serve.go
	}
	srv.Users, srv.Networks, srv.Certs = settings.Users, settings.Networks, settings.Certs
	for _, lc := range cfg.Listeners {
		l := submit.Listener{Name: lc.Name, Address: lc.Address, Mode: submit.ListenerMode(lc.Mode), TLS: settings.TLS[lc.Name],
			TrustedProxies: lc.TrustedProxyPrefixes()}
		for _, a := range lc.Auth {
			switch a {
			case "sasl":
				l.SASL = true
			case "client-cert":
				l.ClientCert = true
			case "network":
				l.Network = true
			}
		}
		srv.Listeners = append(srv.Listeners, l)
	}
	if shared, err = openShared(cfg, log); err != nil {
		return nil, nil, nil, nil, err
	}
	var stopMirror func()
	if shared != nil {
		// One count for every node behind the balancer (README "Running several nodes").
		counter := submit.NewSharedCounter(shared)
		stopMirror = mirrorBlocks(counter, shared)
		srv.AuthThrottle.Counter = counter
		srv.Rate.Limiter = submit.NewSharedRateLimiter(shared)
		srv.SharedConnections = &submit.SharedConnections{Store: shared, Node: cfg.Hostname}
	}
	deliverer, closeDeliverer := delivererFromConfig(cfg, res, log)
	spool, err := relay.OpenSpool(filepath.Join(cfg.Dir, "spool"))
	if err != nil {
		closeShared(srv, shared, stopMirror)
		return nil, nil, nil, nil, err
	}
	srv.Pipeline = settings.Pipeline
	srv.Pipeline.Spool, srv.Pipeline.Log = spool, log
	runner = &relay.Runner{Spool: spool, Deliverer: deliverer, Logger: log, Workers: cfg.Relay.Workers,
		Backoff: cfg.Relay.Retry.Backoff(), MaxAge: cfg.Relay.Retry.GiveUpAfter,
		Bouncer: dsnSender(cfg, res.KeyRing, spool, log), DelayWarning: cfg.Relay.DSN.DelayWarning,
		DrainTimeout: relay.DefaultDrainTimeout,
		Control:      &relay.ControlServer{Path: controlSocket(cfg.Dir), Logger: log}}
	// While the workers are behind, MAIL waits (limits.in_flow_delay), so intake slows
	// to what delivery achieves instead of growing the queue.
	srv.Flow = &submit.FlowControl{Backlog: runner, Delay: lm.InFlowDelay}
	return srv, runner, shared, func() { closeDeliverer(); spool.Close(); closeShared(srv, shared, stopMirror) }, nil
}

// openShared opens limits.shared's Redis (nil, nil without it). The node starts whether
// or not Redis answers: until it does, each node counts alone (and says so).
func openShared(cfg *config.Config, log *slog.Logger) (*redisstore.Store, error) {
	sh := cfg.Limits.Shared
	if sh.Redis == "" {
		return nil, nil
	}
	pw, err := sh.RedisPassword()
	if err != nil {
		return nil, fmt.Errorf("limits.shared.password_file: %w", err)
	}
	st, err := redisstore.Open(redisstore.Options{URL: sh.Redis, Password: pw, Prefix: sh.Prefix, Timeout: sh.Timeout, Log: log})
	if err != nil {
		return nil, fmt.Errorf("limits.shared.redis: %w", err)
	}
	if st.Up() {
		log.Info("shared counters: counting across nodes", "store", st.String())
	}
	return st, nil
}

// How often each node copies the AUTH blocks of the shared store into its own
// counters, so that a block stays when Redis goes away (submit.SharedCounter).
const mirrorEvery = 2 * time.Second

// mirrorBlocks copies the blocks once now, before the node listens, then every
// mirrorEvery until the returned function is called.
func mirrorBlocks(c *submit.SharedCounter, st *redisstore.Store) (stop func()) {
	from := snapshotter{st}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	c.MirrorBlocks(ctx, from)
	cancel()
	done := make(chan struct{})
	go c.WatchBlocks(from, mirrorEvery, done)
	return func() { close(done) }
}

// snapshotter adapts redisstore.Store.Snapshot to submit.Snapshotter.
type snapshotter struct{ st *redisstore.Store }

func (s snapshotter) Snapshot(ctx context.Context, prefix string, limit int) (map[string]submit.SharedCount, error) {
	m, err := s.st.Snapshot(ctx, prefix, limit)
	out := make(map[string]submit.SharedCount, len(m))
	for k, v := range m {
		out[k] = submit.SharedCount{N: v.N, Left: v.Left}
	}
	return out, err
}

func closeShared(srv *submit.Server, st *redisstore.Store, stopMirror func()) {
	if st == nil {
		return
	}
	if stopMirror != nil {
		stopMirror()
	}
	if srv.SharedConnections != nil {
		srv.SharedConnections.Stop()
	}
	st.Close()
}

// dsnSender builds the relay's DSN sender (RFC 3464): From MAILER-DAEMON@ the relay's
// domain (or relay.dsn.from), signed with that domain's keys from the ring. Without keys
// for it the DSNs go unsigned, which is said once here.
func dsnSender(cfg *config.Config, ring *sign.KeyRing, spool *relay.Spool, log *slog.Logger) *relay.DSNSender {
	domain := cfg.DSNDomain()
	from := cfg.Relay.DSN.From
	if from == "" {
		from = "MAILER-DAEMON@" + string(domain)
	}
	ds := &relay.DSNSender{Spool: spool, Hostname: cfg.Hostname, From: from,
		RetryUntil: cfg.Relay.Retry.GiveUpAfter, Logger: log}
	ds.Keys = dsnKeys(cfg, ring, log)
	return ds
}

// dsnKeys returns the keys DSNs are signed with, those of the relay's domain in ring
// (nil without any), and says which: at start, and at each reload and key rotation's
// switch, which give the running DSNSender new ones (DSNSender.SetKeys).
func dsnKeys(cfg *config.Config, ring *sign.KeyRing, log *slog.Logger) *sign.DomainKeys {
	domain := cfg.DSNDomain()
	if dk, ok := ring.Lookup(domain); ok && len(dk.Keys) > 0 {
		sels := make([]string, len(dk.Keys))
		for i, k := range dk.Keys {
			sels[i] = k.Selector
		}
		log.Info("DSNs are DKIM-signed", "d", dk.Domain, "selectors", strings.Join(sels, ","))
		return dk
	}
	log.Warn("DSNs are sent unsigned: the key ring has no keys for the relay's domain (set relay.dsn.domain to a signing domain)",
		"domain", domain)
	return nil
}
