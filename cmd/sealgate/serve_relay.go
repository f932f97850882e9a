package main

import (
	"log/slog"

	"sealgate/internal/config"
	"sealgate/relay"
)

// delivererFromConfig builds what delivers spooled mail: the outbox in dev mode, else a
// relay.Transport with the configured routes (MX delivery when there is no next_hop),
// MTA-STS and connection limits. close ends its kept sessions.
func delivererFromConfig(cfg *config.Config, res *resources, log *slog.Logger) (d relay.Deliverer, close func()) {
	rc := cfg.Relay
	if rc.Outbox != "" {
		return relay.OutboxSink{Dir: rc.Outbox, Verify: outboxVerifier(cfg, res, log)}, func() {}
	}
	rt := relayRoutes(res.Routes)
	tr := &relay.Transport{
		Resolver: res.Resolver, HeloName: cfg.Hostname,
		Default: rt.Default, Identities: rt.Identities, Domains: rt.Domains,
		MXPort: rc.MXPort, RootCAs: rt.RootCAs,
		MaxConnections: rc.MaxConnections, MaxPerDestination: rc.MaxPerDestination,
		MaxIdle: rc.Workers, // a session kept for each worker delivering to one destination
		Logger:  log,
	}
	if rc.MTASTS {
		tr.MTASTS = &relay.MTASTS{Resolver: res.Resolver, RootCAs: rt.RootCAs, Logger: log}
	}
	closeTLSRPT := startTLSRPT(cfg, tr, log)
	route := "MX hosts"
	if rt.Default.NextHop != "" {
		route = rt.Default.NextHop
	}
	log.Info("delivery", "default_route", route, "tls", string(rt.Default.TLS), "auth", rt.Default.Auth.String(),
		"identity_routes", len(rt.Identities), "domain_routes", len(rt.Domains), "mta_sts", rc.MTASTS, "dane", cfg.DNS.DNSSEC)
	return tr, func() { tr.Close(); closeTLSRPT() }
}
