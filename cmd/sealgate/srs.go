package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"sealgate/internal/config"
	"sealgate/internal/srs"
)

func newSRSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "srs",
		Short: "Map Sender Rewriting Scheme addresses back to the original sender",
		Long: `A forwarder with "srs: true" passes mail on with its envelope sender rewritten into its
own domain (SRS0=HASH=TT=orig.example=alice@fwd.example), so that SPF checks the
forwarder's domain. A bounce comes back to that address; "srs reverse" maps it back.`,
	}
	var file string
	var secretFiles []string
	reverse := &cobra.Command{
		Use:   "reverse ADDRESS [--config FILE | --secret-file FILE...]",
		Short: "Print the original sender of an SRS address, checking its hash and age",
		Long: `Check the hash of an SRS0 or SRS1 address against every secret of srs.secret_files (the
first signs, all verify) and, for SRS0, that its timestamp is at most srs.max_age_days old;
print the original sender (for SRS1: the first forwarder's SRS0 address).

Exits 0 with the address, 1 when the hash is forged or damaged, the stamp expired or the
address is not SRS, and 2 when the secrets cannot be read.`,
		Example: `  sealgate srs reverse 'SRS0=HHHH=TT=orig.example=alice@fwd.example' --config /etc/sealgate/sealgate.yaml
  sealgate srs reverse "$BOUNCE_ADDRESS" --secret-file /etc/sealgate/srs.secret`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := srsFromConfig(file, secretFiles)
			if err != nil {
				return err
			}
			orig, err := s.Reverse(args[0])
			if errors.Is(err, srs.ErrHash) || errors.Is(err, srs.ErrTimestamp) || errors.Is(err, srs.ErrNotSRS) {
				return exitStatus(1, err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), orig)
			return nil
		},
	}
	reverse.Flags().StringVar(&file, "config", "/etc/sealgate/sealgate.yaml", "configuration file (for srs.secret_files and srs.max_age_days)")
	reverse.Flags().StringArrayVar(&secretFiles, "secret-file", nil, "SRS secret file instead of the configuration's (repeatable; the first signs)")
	cmd.AddCommand(reverse)
	return cmd
}

// srsFromConfig reads the SRS secrets of --secret-file, or of the configuration's srs
// section. Only that section matters here: a problem elsewhere in the file does not keep a
// bounce from being mapped.
func srsFromConfig(file string, secretFiles []string) (*srs.SRS, error) {
	maxAge := 0
	if len(secretFiles) == 0 {
		cfg, err := loadConfig(file)
		if cfg == nil {
			return nil, err
		}
		secretFiles, maxAge = cfg.SRS.SecretFiles, cfg.SRS.MaxAgeDays
		if len(secretFiles) == 0 {
			return nil, fmt.Errorf("srs: %s has no srs.secret_files", file)
		}
	}
	s := &srs.SRS{MaxAge: maxAge}
	for _, f := range secretFiles {
		secret, err := config.ReadSRSSecret(f)
		if err != nil {
			return nil, fmt.Errorf("srs: %w", err)
		}
		s.Secrets = append(s.Secrets, secret)
	}
	return s, nil
}

func init() {
	rootCmd.AddCommand(newSRSCmd())
}
