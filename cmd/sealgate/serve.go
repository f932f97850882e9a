package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
	"sealgate/relay"
	"sealgate/sign"
	"sealgate/submit"
)

func newServeCmd() *cobra.Command {
	var dev bool
	var dir, nextHop, configFile, cpuProfile string
	var subAddr, subsAddr, smartAddr string
	cmd := &cobra.Command{
		Use:   "serve [--dev [--dir DIR] [--next-hop HOST:PORT]] [--config FILE]",
		Short: "Run the relay: accept, check, sign, seal, queue and deliver mail",
		Long: `Runs the submission relay.

With --dev it runs on its embedded default, for trying sealgate out: it creates DIR
(default ./sealgate-dev) holding a self-signed certificate, DKIM keys (RSA and Ed25519) for
example.test, an ARC key, DIR/example.test.zone with the DNS records a real deployment
would publish, and a demo login demo@example.test whose random password is written to
DIR/credentials and printed. It listens on
  127.0.0.1:2587  submission, STARTTLS + AUTH (PLAIN, LOGIN)
  127.0.0.1:2465  submissions, implicit TLS + AUTH
  127.0.0.1:2525  smart host; the trusted network 127.0.0.1/32 may send as *@example.test
and delivers to DIR/outbox/ (one .eml file per message), or with --next-hop to that SMTP
server (plain SMTP, no auth). Running it again reuses DIR.`,
		Example: `  sealgate serve --dev
  swaks --server 127.0.0.1:2587 --tls --auth PLAIN --auth-user demo@example.test \
        --auth-password "$(cut -d' ' -f2 sealgate-dev/credentials)" \
        --from demo@example.test --to someone@example.net`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			if cpuProfile != "" {
				stopProfile, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			if !dev {
				return runConfigured(cmd, configFile, log)
			}
			return runDev(cmd, dir, nextHop, [3]string{subAddr, subsAddr, smartAddr}, log)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dev, "dev", false, "run on the embedded dev default (generated keys, demo login, local outbox)")
	f.StringVar(&dir, "dir", "sealgate-dev", "dev mode: state directory")
	f.StringVar(&nextHop, "next-hop", "", "dev mode: deliver to this SMTP server (HOST:PORT) instead of DIR/outbox")
	f.StringVar(&subAddr, "submission-addr", "127.0.0.1:2587", "dev mode: submission (STARTTLS) listen address")
	f.StringVar(&subsAddr, "submissions-addr", "127.0.0.1:2465", "dev mode: implicit-TLS submission listen address")
	f.StringVar(&smartAddr, "smarthost-addr", "127.0.0.1:2525", "dev mode: smart-host listen address")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (for performance work)")
	f.MarkHidden("cpuprofile")
	f.StringVar(&configFile, "config", "/etc/sealgate/sealgate.yaml", "configuration file (not with --dev)")
	return cmd
}

func runDev(cmd *cobra.Command, dir, nextHop string, addrs [3]string, log *slog.Logger) error {
	st, err := prepareDev(dir)
	if err != nil {
		return err
	}
	users, err := devUsers(st)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(st.certFile, st.keyFile)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	zr, err := resolver.New(resolver.Config{ZoneFile: st.zoneFile})
	if err != nil {
		return err
	}
	spool, err := relay.OpenSpool(filepath.Join(dir, "spool"))
	if err != nil {
		return err
	}
	defer spool.Close()
	domain := addr.Domain(devDomain)
	smart := submit.NewIdentity("smarthost-localhost", submit.KindClientNetwork, submit.MustParsePatterns("*@"+devDomain))
	smart.AllowNullSender = true
	pipeline := &submit.Pipeline{
		Hostname: devHostname, AuthServID: devHostname,
		Domains: map[addr.Domain]*submit.DomainSigning{domain: {Keys: []sign.Key{
			{Selector: devRSASelector, Signer: st.rsaKey},
			{Selector: devEdSelector, Signer: st.edKey},
		}}},
		ARC:      &submit.ARCSealer{Domain: devDomain, Selector: devARCSelector, Signer: st.arcKey},
		Spool:    spool,
		Resolver: zr,
		Log:      log,
	}
	srv := &submit.Server{
		Hostname: devHostname,
		Listeners: []submit.Listener{
			{Name: "submission", Address: addrs[0], Mode: submit.ModeSubmission, SASL: true, TLS: tlsCfg},
			{Name: "submissions", Address: addrs[1], Mode: submit.ModeSubmissions, SASL: true, TLS: tlsCfg},
			{Name: "smarthost", Address: addrs[2], Mode: submit.ModeSmartHost, Network: true, TLS: tlsCfg},
		},
		Limits:       submit.Limits{MaxMessageBytes: 25 << 20, MaxRecipients: 100, MaxConnections: 200, CommandTimeout: 5 * time.Minute, DataTimeout: 3 * time.Minute},
		Users:        users,
		Networks:     []submit.NetworkIdentity{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Identity: smart}},
		Pipeline:     pipeline,
		AuthThrottle: submit.NewAuthThrottle(5, 5*time.Minute),
		Rate:         submit.NewMessageRate(),
		Log:          log,
	}
	var deliverer relay.Deliverer = relay.OutboxSink{Dir: filepath.Join(dir, "outbox")}
	if nextHop != "" {
		deliverer = &relay.NextHop{Addr: nextHop, HeloName: devHostname, Timeout: time.Minute}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "sealgate dev mode in %s\n  login:    %s\n  password: %s  (also in %s)\n  DNS:      %s\n",
		dir, devLogin, st.password, filepath.Join(dir, "credentials"), st.zoneFile)
	return run(srv, &relay.Runner{Spool: spool, Deliverer: deliverer, Logger: log}, log)
}

// run serves until SIGINT or SIGTERM, then stops accepting, lets sessions and deliveries
// in flight end, and returns.
func run(srv *submit.Server, runner *relay.Runner, log *slog.Logger) error {
	if err := srv.Listen(); err != nil {
		return err
	}
	for i, a := range srv.Addrs() {
		log.Info("listening", "listener", srv.Listeners[i].Name, "address", a.String())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runnerDone := make(chan error, 1)
	go func() { runnerDone <- runner.Run(ctx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve() }()
	select {
	case err := <-serveDone:
		stop()
		<-runnerDone
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return <-runnerDone
}

func init() {
	rootCmd.AddCommand(newServeCmd())
}

// startCPUProfile profiles the process until the returned function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
