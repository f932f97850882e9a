package main

import (
	"crypto/tls"
	"fmt"

	"sealgate/internal/config"
	"sealgate/internal/resolver"
	"sealgate/submit"
)

// submitSettings builds, from a validated configuration and what config.Open loaded, the
// parts of the server that a reload replaces (submit.Settings): logins, client networks
// and certificates, the listeners' TLS, and a pipeline with the key ring and ARC sealer.
// The pipeline's Spool, Log and Metrics are the caller's to set: they outlive a reload.
func submitSettings(cfg *config.Config, res *resources) (submit.Settings, error) {
	st := submit.Settings{TLS: map[string]*tls.Config{}}
	if res.Users != nil { // a nil *Users in the interface would look like a users file
		users, err := submit.NewUsers(res.Users, submit.UsersOptions{})
		if err != nil {
			return st, fmt.Errorf("users_file: %w", err)
		}
		st.Users = users
	}
	for i, nc := range cfg.ClientNetworks {
		id, err := submit.IdentityFromRules(nc.Name, submit.KindClientNetwork, nc.SenderRules)
		if err != nil {
			return st, fmt.Errorf("client_networks[%d]: %w", i, err)
		}
		st.Networks = append(st.Networks, submit.NetworkIdentity{Prefixes: res.NetworkPrefixes[i], Identity: id})
	}
	for i, cc := range cfg.ClientCerts {
		id, err := submit.IdentityFromRules(cc.Name, submit.KindClientCert, cc.SenderRules)
		if err != nil {
			return st, fmt.Errorf("client_certs[%d]: %w", i, err)
		}
		st.Certs = append(st.Certs, submit.CertIdentity{Fingerprint: cc.SHA256, Subject: cc.Subject, Identity: id})
	}
	for i, lc := range cfg.Listeners {
		st.TLS[lc.Name] = res.ListenerTLS[i]
	}
	var sealer *submit.ARCSealer
	if res.ARCKey != nil {
		sealer = &submit.ARCSealer{Domain: cfg.ARC.Domain, Selector: cfg.ARC.Selector, Signer: res.ARCKey, PseudonymKey: res.PseudonymKey}
	}
	st.Pipeline = &submit.Pipeline{
		Hostname: cfg.Hostname, AuthServID: cfg.AuthservID, KeyRing: res.KeyRing, ARC: sealer, Resolver: res.Resolver,
		SRS:           res.SRS(cfg),
		CheckResolver: checkResolver(res.Resolver),
	}
	return st, nil
}

// checkResolver is the resolver of the checks the pipeline records on every message
// (submit.Pipeline.CheckResolver): r behind a cache, since a client's messages ask the same
// few names again.
func checkResolver(r resolver.Resolver) resolver.Resolver {
	return resolver.NewCache(r, resolver.DefaultCacheTTL, resolver.DefaultCacheSize)
}
