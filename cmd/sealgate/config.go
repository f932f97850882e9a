package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newConfigCmd() *cobra.Command {
	configCmd := &cobra.Command{
		Use:   "config",
		Short: "Check or show sealgate's configuration file",
	}
	var file string
	check := &cobra.Command{
		Use:   "check [--config FILE]",
		Short: "Check a configuration file and print every problem",
		Long: `Load the configuration file with its SEALGATE_* environment overrides, exactly as
"sealgate serve" would, and check everything serve will load, for real: key names and
types, listeners, limits, may_send_as patterns, network ranges; DKIM and ARC keys (readable
by us only, parseable, RSA of at least min_rsa_bits), TLS certificates and keys (and that
they match), the client CA, the users file, the pseudonym secret, the DNS zone file; a relay
route; and that every may_send_as pattern of every identity has DKIM keys to sign with or
may be relayed unsigned. OK means serve starts and can sign for every identity.

Prints "OK" and exits 0 (with a warning on stderr for each RSA key under 2048 bits that
min_rsa_bits lets in), or prints every problem, one per line with its key path
(listeners[1].tls_cert: file /x not found), and exits 1.`,
		Example: `  sealgate config check --config /etc/sealgate/sealgate.yaml
  SEALGATE_HOSTNAME=relay.corp.example sealgate config check --config ./sealgate.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, res, err := loadAndOpen(file)
			if err == nil {
				for _, w := range res.WeakKeys {
					fmt.Fprintf(cmd.ErrOrStderr(), "sealgate: warning: %s: under 2048 bits (RFC 8301 §3.2 recommends 2048); rotate it\n", w)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "OK")
				return nil
			}
			problems := flatten(err)
			for _, e := range problems {
				fmt.Fprintln(cmd.OutOrStdout(), e)
			}
			return exitStatus(1, fmt.Errorf("config check: %s: %d problem(s)", file, len(problems)))
		},
	}
	check.Flags().StringVar(&file, "config", "/etc/sealgate/sealgate.yaml", "configuration file")
	configCmd.AddCommand(check, newConfigShowCmd())
	return configCmd
}

// flatten returns the leaves of a tree of errors.Join results.
func flatten(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		if e != nil {
			out = append(out, flatten(e)...)
		}
	}
	return out
}

func init() {
	rootCmd.AddCommand(newConfigCmd())
}
