package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"sealgate/submit"
)

func newConfigCmd() *cobra.Command {
	config := &cobra.Command{
		Use:   "config",
		Short: "Check sealgate's configuration file",
	}
	var file string
	check := &cobra.Command{
		Use:   "check [--config FILE]",
		Short: "Check a configuration file and print every problem",
		Long: `Load the configuration file with its SEALGATE_* environment overrides, exactly as
"sealgate serve" would, and check everything that can be checked without starting: key
names and types, listeners, limits, may_send_as patterns, network ranges, the users file
and that every referenced file exists.

Prints "OK" and exits 0, or prints every problem, one per line with its key path
(listeners[1].tls_cert: file /x not found), and exits 1.`,
		Example: `  sealgate config check --config /etc/sealgate/sealgate.yaml
  SEALGATE_HOSTNAME=relay.corp.example sealgate config check --config ./sealgate.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := submit.LoadConfig(file)
			if err == nil {
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
	config.AddCommand(check)
	return config
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
