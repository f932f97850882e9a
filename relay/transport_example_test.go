package relay_test

import (
	"context"
	"log"
	"log/slog"
	"net"
	"sync/atomic"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
	"sealgate/relay"
)

// A Transport delivers to the recipients' MX hosts by default, sends one client
// organisation's mail through its provider with AUTH from its own address, and
// mail for one partner domain through a fixed server over verified TLS. Each
// attempt is logged and handed to OnAttempt, here to count bounces.
func ExampleTransport() {
	r, err := resolver.New(resolver.Config{}) // the system's nameservers
	if err != nil {
		log.Fatal(err)
	}
	tr := &relay.Transport{
		Resolver: r,
		HeloName: "relay.corp.example",
		Identities: map[string]relay.Route{
			"globex-gateway": {
				NextHop: "smtp.provider.example:587", TLS: relay.TLSRequired,
				Auth:     &relay.Credentials{Username: "globex", Password: "secret from a 0600 file"},
				SourceIP: net.ParseIP("192.0.2.25"), HeloName: "relay-globex.corp.example",
			},
		},
		Domains: map[addr.Domain]relay.Route{
			"partner.example": {NextHop: "mx.partner.example:25", TLS: relay.TLSRequired},
		},
		MTASTS: &relay.MTASTS{Resolver: r},
	}
	defer tr.Close()

	spool, err := relay.OpenSpool("/var/spool/sealgate")
	if err != nil {
		log.Fatal(err)
	}
	defer spool.Close()
	var bounced atomic.Int64 // OnAttempt runs on the Runner's workers
	runner := &relay.Runner{Spool: spool, Deliverer: tr, Logger: slog.Default(),
		OnAttempt: func(ev relay.AttemptEvent) {
			if ev.Status == relay.StatusBounced {
				bounced.Add(int64(len(ev.Rcpts)))
			}
		}}
	if err := runner.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}
