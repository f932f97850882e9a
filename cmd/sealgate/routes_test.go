package main

import (
	"net"
	"testing"

	"sealgate/internal/addr"
	"sealgate/internal/config"
	"sealgate/relay"
)

// Every next_hop_tls value config accepts becomes relay's mode of the same name, and a
// route keeps its next hop, HELO name, source address and login.
func TestRelayRoutes(t *testing.T) {
	for _, tc := range []struct {
		tls  string
		want relay.TLSMode
	}{
		{"", ""},
		{config.NextHopTLSOpportunistic, relay.TLSOpportunistic},
		{config.NextHopTLSRequired, relay.TLSRequired},
		{config.NextHopTLSImplicit, relay.TLSImplicit},
	} {
		if got := relayRoute(config.Route{TLS: tc.tls}).TLS; got != tc.want || string(got) != tc.tls {
			t.Errorf("next_hop_tls %q: relay mode %q, want %q", tc.tls, got, tc.want)
		}
	}
	src := net.ParseIP("192.0.2.7")
	rs := relayRoutes(&config.Routes{
		Default: config.Route{NextHop: "smart.example:587", TLS: config.NextHopTLSRequired, HeloName: "out.example", SourceIP: src,
			Auth: &config.Credentials{Mechanism: "LOGIN", Username: "u", Password: "p"}},
		Identities: map[string]config.Route{"acme": {HeloName: "acme.example"}},
		Domains:    map[addr.Domain]config.Route{"partner.example": {NextHop: "mx.partner.example:25"}},
	})
	d := rs.Default
	if d.NextHop != "smart.example:587" || d.HeloName != "out.example" || !d.SourceIP.Equal(src) ||
		d.Auth == nil || *d.Auth != (relay.Credentials{Mechanism: "LOGIN", Username: "u", Password: "p"}) {
		t.Errorf("default route %+v (auth %v)", d, d.Auth)
	}
	if rs.Identities["acme"].HeloName != "acme.example" || rs.Identities["acme"].Auth != nil {
		t.Errorf("identity routes %+v", rs.Identities)
	}
	if rs.Domains["partner.example"].NextHop != "mx.partner.example:25" {
		t.Errorf("domain routes %+v", rs.Domains)
	}
}

// relay.workers defaults to what the Runner does without it.
func TestDefaultWorkers(t *testing.T) {
	if config.DefaultWorkers != relay.DefaultWorkers {
		t.Errorf("config.DefaultWorkers %d, relay.DefaultWorkers %d", config.DefaultWorkers, relay.DefaultWorkers)
	}
}
