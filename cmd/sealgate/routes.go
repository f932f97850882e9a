package main

import (
	"crypto/x509"

	"sealgate/internal/addr"
	"sealgate/internal/config"
	"sealgate/relay"
)

// routes are the relay section's routes as relay.Transport takes them.
type routes struct {
	Default    relay.Route
	Identities map[string]relay.Route
	Domains    map[addr.Domain]relay.Route
	RootCAs    *x509.CertPool
}

// relayRoutes makes relay's routes of the checked relay section (config.Open's Routes).
func relayRoutes(rs *config.Routes) *routes {
	out := &routes{Default: relayRoute(rs.Default), RootCAs: rs.RootCAs,
		Identities: make(map[string]relay.Route, len(rs.Identities)),
		Domains:    make(map[addr.Domain]relay.Route, len(rs.Domains))}
	for k, r := range rs.Identities {
		out.Identities[k] = relayRoute(r)
	}
	for k, r := range rs.Domains {
		out.Domains[k] = relayRoute(r)
	}
	return out
}

// relayRoute makes a relay.Route of one checked route.
func relayRoute(r config.Route) relay.Route {
	rt := relay.Route{NextHop: r.NextHop, TLS: relayTLS[r.TLS], HeloName: r.HeloName, SourceIP: r.SourceIP}
	if r.Auth != nil {
		rt.Auth = &relay.Credentials{Mechanism: r.Auth.Mechanism, Username: r.Auth.Username, Password: r.Auth.Password}
	}
	return rt
}

// relayTLS maps each next_hop_tls value config accepts to relay's mode; "" stays "", which
// relay takes as opportunistic.
var relayTLS = map[string]relay.TLSMode{
	"":                             "",
	config.NextHopTLSOpportunistic: relay.TLSOpportunistic,
	config.NextHopTLSRequired:      relay.TLSRequired,
	config.NextHopTLSImplicit:      relay.TLSImplicit,
}
