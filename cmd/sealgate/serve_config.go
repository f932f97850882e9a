package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
	"sealgate/keys"
	"sealgate/relay"
	"sealgate/sign"
	"sealgate/submit"
)

// runConfigured runs the relay from a configuration file (see examples/sealgate.yaml).
func runConfigured(cmd *cobra.Command, file string, log *slog.Logger) error {
	cfg, err := submit.LoadConfig(file)
	if err != nil {
		return fmt.Errorf("configuration %s:\n%w", file, err)
	}
	srv, runner, cleanup, err := buildFromConfig(cfg, log)
	if err != nil {
		return err
	}
	defer cleanup()
	return run(srv, runner, log)
}

// buildFromConfig turns a validated configuration into a server and a delivery runner.
func buildFromConfig(cfg *submit.Config, log *slog.Logger) (*submit.Server, *relay.Runner, func(), error) {
	var users *submit.Users
	if cfg.UsersFile != "" {
		var err error
		if users, err = submit.LoadUsers(cfg.UsersFile, submit.UsersOptions{}); err != nil {
			return nil, nil, nil, err
		}
	}
	res, err := resolver.New(resolver.Config{})
	if err != nil {
		return nil, nil, nil, err
	}
	domains := map[addr.Domain]*submit.DomainSigning{}
	for _, dc := range cfg.Domains {
		d, err := addr.ParseDomain(dc.Domain)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("domains: %s: %w", dc.Domain, err)
		}
		ds := &submit.DomainSigning{RelayUnsigned: dc.Unsigned == "relay"}
		for _, kc := range dc.Keys {
			k, err := keys.Load(kc.KeyFile)
			if err != nil {
				return nil, nil, nil, err
			}
			ds.Keys = append(ds.Keys, sign.Key{Selector: kc.Selector, Signer: k})
		}
		domains[d] = ds
	}
	var sealer *submit.ARCSealer
	if cfg.ARC.KeyFile != "" {
		k, err := keys.Load(cfg.ARC.KeyFile)
		if err != nil {
			return nil, nil, nil, err
		}
		sealer = &submit.ARCSealer{Domain: cfg.ARC.Domain, Selector: cfg.ARC.Selector, Signer: k}
		if cfg.ARC.PseudonymousAuth {
			secret, err := os.ReadFile(cfg.ARC.PseudonymSecretFile)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("arc.pseudonym_secret_file: %w", err)
			}
			if len(strings.TrimSpace(string(secret))) < 16 {
				return nil, nil, nil, errors.New("arc.pseudonym_secret_file: secret shorter than 16 bytes")
			}
			sealer.PseudonymKey = []byte(strings.TrimSpace(string(secret)))
		}
	}
	spool, err := relay.OpenSpool(filepath.Join(cfg.Dir, "spool"))
	if err != nil {
		return nil, nil, nil, err
	}
	authservID := cfg.AuthservID
	if authservID == "" {
		authservID = cfg.Hostname
	}
	srv := &submit.Server{
		Hostname: cfg.Hostname,
		Limits: submit.Limits{
			MaxMessageBytes: cfg.Limits.MaxMessageBytes, MaxRecipients: cfg.Limits.MaxRecipients,
			MaxConnections: cfg.Limits.MaxConnections, CommandTimeout: cfg.Limits.CommandTimeout, DataTimeout: cfg.Limits.DataTimeout,
		},
		Pipeline: &submit.Pipeline{
			Hostname: cfg.Hostname, AuthServID: authservID, Domains: domains, ARC: sealer,
			Spool: spool, Resolver: res, Log: log,
		},
		AuthThrottle: submit.NewAuthThrottle(cfg.Limits.AuthFailures, cfg.Limits.AuthCooldown),
		Rate:         submit.NewMessageRate(),
		Log:          log,
	}
	if users != nil { // a nil *Users in the interface would look like a users file
		srv.Users = users
	}
	for _, nc := range cfg.ClientNetworks {
		id, err := nc.Identity()
		if err != nil {
			return nil, nil, nil, err
		}
		prefixes, err := nc.Prefixes()
		if err != nil {
			return nil, nil, nil, err
		}
		srv.Networks = append(srv.Networks, submit.NetworkIdentity{Prefixes: prefixes, Identity: id})
	}
	for _, cc := range cfg.ClientCerts {
		id, err := cc.Identity()
		if err != nil {
			return nil, nil, nil, err
		}
		srv.Certs = append(srv.Certs, submit.CertIdentity{Fingerprint: cc.SHA256, Subject: cc.Subject, Identity: id})
	}
	for _, lc := range cfg.Listeners {
		l := submit.Listener{Name: lc.Name, Address: lc.Address, Mode: submit.ListenerMode(lc.Mode)}
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
		if lc.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(lc.TLSCert, lc.TLSKey)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("listener %s: %w", lc.Name, err)
			}
			l.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			if lc.ClientCA != "" {
				pem, err := os.ReadFile(lc.ClientCA)
				if err != nil {
					return nil, nil, nil, fmt.Errorf("listener %s: %w", lc.Name, err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return nil, nil, nil, fmt.Errorf("listener %s: client_ca %s holds no PEM certificate", lc.Name, lc.ClientCA)
				}
				l.TLS.ClientCAs = pool
				l.TLS.ClientAuth = tls.VerifyClientCertIfGiven
			}
		}
		srv.Listeners = append(srv.Listeners, l)
	}
	var deliverer relay.Deliverer
	switch {
	case cfg.Relay.NextHop != "":
		deliverer = &relay.NextHop{Addr: cfg.Relay.NextHop, HeloName: cfg.Hostname}
	case cfg.Relay.Outbox != "":
		deliverer = relay.OutboxSink{Dir: cfg.Relay.Outbox}
	default:
		spool.Close()
		return nil, nil, nil, errors.New("relay: set relay.next_hop or relay.outbox (MX delivery is not built yet)")
	}
	return srv, &relay.Runner{Spool: spool, Deliverer: deliverer, Logger: log}, func() { spool.Close() }, nil
}
