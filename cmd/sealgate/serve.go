package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// devOnlyFlags are the flags that only dev mode uses; with --config they are errors, since
// the configuration file says all of it.
var devOnlyFlags = []string{"dir", "next-hop", "submission-addr", "submissions-addr", "smarthost-addr", "admin-addr"}

func newServeCmd() *cobra.Command {
	var dev bool
	var dir, configFile, cpuProfile string
	var opts devOptions
	cmd := &cobra.Command{
		Use:   "serve [--dev [--dir DIR] [--next-hop HOST:PORT]] [--config FILE]",
		Short: "Run the relay: accept, check, sign, seal, queue and deliver mail",
		Long: `Runs the submission relay from a configuration file (--config, see
examples/sealgate.yaml; "sealgate config check" checks one).

With --dev it runs on its embedded default, for trying sealgate out: it creates DIR
(default ./sealgate-dev) holding a self-signed certificate, DKIM keys (RSA and Ed25519) for
example.test, an ARC key, DIR/example.test.zone with the DNS records a real deployment
would publish, and a demo login demo@example.test whose random password is written to
DIR/credentials and printed (the file's second line is the mailing-list login
list@lists.example.test, a forwarder with its own keys for lists.example.test and SRS). It writes DIR/sealgate.yaml, a commented configuration of all
that, and serves it exactly as "serve --config DIR/sealgate.yaml" would: copy it to start a
real deployment. It listens on
  127.0.0.1:2587  submission, STARTTLS + AUTH (PLAIN, LOGIN)
  127.0.0.1:2465  submissions, implicit TLS + AUTH
  127.0.0.1:2525  smart host; the trusted network 127.0.0.1/32 may send as *@example.test
  127.0.0.1:2580  admin: /metrics, /healthz, /readyz (HTTP)
and delivers to DIR/outbox/ (one .eml file per message), or with --next-hop to that SMTP
server (plain SMTP, no auth). Running it again reuses DIR's keys and login and rewrites
DIR/sealgate.yaml from the flags.

--dir, --next-hop and the listener address flags belong to dev mode; with --config the
file says all of that, and giving them is an error.`,
		Example: `  sealgate serve --dev
  swaks --server 127.0.0.1:2587 --tls --auth PLAIN --auth-user demo@example.test \
        --auth-password "$(grep '^demo@' sealgate-dev/credentials | cut -d' ' -f2)" \
        --from demo@example.test --to someone@example.net
  sealgate serve --config sealgate-dev/sealgate.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dev && cmd.Flags().Changed("config") {
				return errors.New("--config is not used with --dev: dev mode writes and serves DIR/sealgate.yaml; to serve a file, drop --dev")
			}
			if !dev {
				for _, name := range devOnlyFlags {
					if cmd.Flags().Changed(name) {
						return fmt.Errorf("--%s is a dev-mode flag (serve --dev); with --config, the configuration file sets the state directory, listener addresses and relay.next_hop", name)
					}
				}
			}
			logs := newLogging(os.Stderr)
			if cpuProfile != "" {
				stopProfile, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			if !dev {
				return serveFile(cmd, configFile, logs, nil)
			}
			return runDev(cmd, dir, opts, logs)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dev, "dev", false, "run on the embedded dev default (generated keys, demo login, local outbox)")
	f.StringVar(&dir, "dir", "sealgate-dev", "dev mode: state directory")
	f.StringVar(&opts.nextHop, "next-hop", "", "dev mode: deliver to this SMTP server (HOST:PORT) instead of DIR/outbox")
	f.StringVar(&opts.submission, "submission-addr", "127.0.0.1:2587", "dev mode: submission (STARTTLS) listen address")
	f.StringVar(&opts.submissions, "submissions-addr", "127.0.0.1:2465", "dev mode: implicit-TLS submission listen address")
	f.StringVar(&opts.smarthost, "smarthost-addr", "127.0.0.1:2525", "dev mode: smart-host listen address")
	f.StringVar(&opts.admin, "admin-addr", "127.0.0.1:2580", "dev mode: admin listen address (/metrics, /healthz, /readyz)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (for performance work)")
	f.MarkHidden("cpuprofile")
	f.StringVar(&configFile, "config", "/etc/sealgate/sealgate.yaml", "configuration file (not with --dev)")
	return cmd
}

// runDev prepares DIR, writes DIR/sealgate.yaml and serves it through the path
// `serve --config` takes, printing where things are once the relay is up.
func runDev(cmd *cobra.Command, dir string, opts devOptions, logs *logging) error {
	st, err := prepareDev(dir, opts)
	if err != nil {
		return err
	}
	banner := func(admin string) {
		fmt.Fprintf(cmd.OutOrStdout(), "sealgate dev mode in %s\n  login:    %s\n  password: %s  (also in %s)\n  DNS:      %s\n  config:   %s\n",
			dir, devLogin, st.password, filepath.Join(dir, "credentials"), st.zoneFile, st.configFile)
		if admin != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "  admin:    http://%s/metrics  /healthz  /readyz\n", admin)
		}
	}
	return serveFile(cmd, st.configFile, logs, banner)
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
