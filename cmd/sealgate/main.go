// Command sealgate is the sender-side DKIM/ARC signing relay and its admin tools.
//
// Every subcommand lives in its own file in this package and registers itself with rootCmd
// in an init function. Exit status, the same for every command: 0 success, 1 a check that
// found a problem (config check, keys check, arc verify ...), 2 a usage or operational
// error. Errors are printed to stderr as "sealgate: ..." and exit with status 2 unless the
// command chose status 1 with exitStatus. Usage errors (unknown flags, missing arguments)
// are status 2 as well.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:   "sealgate",
	Short: "Outbound mail authentication relay: sender policy, DKIM signing, ARC sealing",
	Long: `sealgate accepts outgoing mail from users and client organisations, checks that each
message may use the identity it claims, DKIM-signs and ARC-seals it and relays it on.

Running it: serve (--dev for a try-out on generated keys), config check|show, reload, drain,
queue, users, keys rotate|status. Before publishing DNS: dns records, keys, selftest
message|domain. On the way to p=reject: dmarc import|summary|readiness, tlsrpt report.
Debugging: verify (a strict receiver's view of a message), sign, arc seal|verify, srs reverse.

Exit status: 0 success, 1 a check found a problem, 2 usage or operational error.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

// exitError carries a process exit status chosen by a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitStatus makes err end the process with the given status.
func exitStatus(code int, err error) error { return &exitError{code: code, err: err} }

func init() {
	rootCmd.Version = buildVersion()
	rootCmd.SetVersionTemplate("sealgate {{.Version}}\n")
}

func main() {
	err := rootCmd.Execute()
	if err == nil {
		return
	}
	code := 2
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if err.Error() != "" {
		fmt.Fprintln(os.Stderr, "sealgate:", err)
	}
	os.Exit(code)
}
