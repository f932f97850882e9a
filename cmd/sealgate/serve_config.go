package main

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"sealgate/internal/config"
	"sealgate/internal/libcrypto"
	"sealgate/internal/metrics"
	"sealgate/relay"
	"sealgate/sign"
	"sealgate/submit"
)

// buildFromConfig turns a validated configuration into a server and a delivery runner: the
// one constructor of the relay, for `serve --config` and `serve --dev` alike. It loads the
// files through config.Open, the code `config check` runs, and warns about every RSA key
// under 2048 bits a configured min_rsa_bits let in.
func buildFromConfig(cfg *config.Config, log *slog.Logger) (*submit.Server, *relay.Runner, func(), error) {
	return buildMetered(cfg, log, nil)
}

// buildMetered is buildFromConfig counting into m (nil: nothing counted): the server,
// pipeline and delivery report to it, and every DNS lookup goes through its counting
// resolver.
func buildMetered(cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (*submit.Server, *relay.Runner, func(), error) {
	res, err := openConfig(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("configuration:\n%w", err)
	}
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
		return nil, nil, nil, err
	}
	lm := cfg.Limits
	srv := &submit.Server{
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
	}
	srv.Users, srv.Networks, srv.Certs = settings.Users, settings.Networks, settings.Certs
	for _, lc := range cfg.Listeners {
		l := submit.Listener{Name: lc.Name, Address: lc.Address, Mode: submit.ListenerMode(lc.Mode), TLS: settings.TLS[lc.Name]}
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
	deliverer, closeDeliverer := delivererFromConfig(cfg, res, log)
	spool, err := relay.OpenSpool(filepath.Join(cfg.Dir, "spool"))
	if err != nil {
		return nil, nil, nil, err
	}
	srv.Pipeline = settings.Pipeline
	srv.Pipeline.Spool, srv.Pipeline.Log = spool, log
	runner := &relay.Runner{Spool: spool, Deliverer: deliverer, Logger: log, Workers: cfg.Relay.Workers,
		Backoff: cfg.Relay.Retry.Backoff(), MaxAge: cfg.Relay.Retry.GiveUpAfter,
		Bouncer: dsnSender(cfg, res.KeyRing, spool, log), DelayWarning: cfg.Relay.DSN.DelayWarning,
		DrainTimeout: relay.DefaultDrainTimeout,
		Control:      &relay.ControlServer{Path: controlSocket(cfg.Dir), Logger: log}}
	// While the workers are behind, MAIL waits (limits.in_flow_delay), so intake slows
	// to what delivery achieves instead of growing the queue.
	srv.Flow = &submit.FlowControl{Backlog: runner, Delay: lm.InFlowDelay}
	return srv, runner, func() { closeDeliverer(); spool.Close() }, nil
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
	if dk, ok := ring.Lookup(domain); ok && len(dk.Keys) > 0 {
		ds.Keys = dk
		log.Info("DSNs are DKIM-signed", "from", from, "d", dk.Domain)
	} else {
		log.Warn("DSNs are sent unsigned: the key ring has no keys for the relay's domain (set relay.dsn.domain to a signing domain)",
			"from", from, "domain", domain)
	}
	return ds
}
