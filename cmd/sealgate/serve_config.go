package main

import (
	"errors"
	"log/slog"

	"github.com/spf13/cobra"
)

// runConfigured runs the relay from a configuration file.
func runConfigured(cmd *cobra.Command, file string, log *slog.Logger) error {
	return errors.New("serve: running from a configuration file is not wired up yet; use --dev")
}
