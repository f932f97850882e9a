package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"sealgate/internal/config"
	"sealgate/internal/tlsrpt"
	"sealgate/relay"
)

// newTLSRPTCmd is "sealgate tlsrpt": the TLS reports (RFC 8460) of what serve counted.
func newTLSRPTCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tlsrpt",
		Short: "TLS reports (RFC 8460) of delivery to MX hosts",
	}
	var configFile, dir, day, domain, out string
	report := &cobra.Command{
		Use:   "report --day YYYY-MM-DD [--domain D] [--out DIR]",
		Short: "Write a day's RFC 8460 JSON reports, one per recipient domain",
		Long: `Writes the aggregate TLS reports (RFC 8460 §4) of one UTC day from the counts serve
keeps in DIR/tlsrpt (tlsrpt.enabled): one report per policy domain, with its sessions under
its DANE TLSA records, MTA-STS policy or none, and the failures by result type. Printed as
JSON to stdout, one report after the other, or written to --out as the files RFC 8460 §5.3
names (reporter!domain!begin!end.json). Sending them to the domain's rua is not done.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if day == "" {
				return fmt.Errorf("--day YYYY-MM-DD is required")
			}
			cfg, err := loadConfig(configFile)
			if cfg == nil {
				return fmt.Errorf("configuration %s: %w", configFile, err)
			}
			state := cfg.TLSRPTDir()
			if dir != "" {
				state = filepath.Join(dir, "tlsrpt")
			}
			d, err := tlsrpt.ReadDay(state, day)
			if err != nil {
				return err
			}
			reports, err := d.Reports(tlsrpt.ReportOptions{OrganizationName: cfg.TLSRPTOrganization(),
				ContactInfo: cfg.TLSRPT.ContactInfo, Domain: domain})
			if err != nil {
				return err
			}
			if len(reports) == 0 {
				fmt.Fprintf(c.ErrOrStderr(), "no TLS sessions counted for %s on %s (in %s)\n", orAll(domain), day, state)
				return nil
			}
			return writeReports(c, cfg, reports, out)
		},
	}
	f := report.Flags()
	f.StringVar(&configFile, "config", "/etc/sealgate/sealgate.yaml", "configuration file (for dir, hostname and tlsrpt)")
	f.StringVar(&dir, "dir", "", "the relay's state directory, instead of the configuration's")
	f.StringVar(&day, "day", "", "the UTC day, YYYY-MM-DD")
	f.StringVar(&domain, "domain", "", "only this recipient (policy) domain")
	f.StringVar(&out, "out", "", "write one file per report into this directory instead of stdout")
	cmd.AddCommand(report)
	return cmd
}

func orAll(domain string) string {
	if domain == "" {
		return "any domain"
	}
	return domain
}

// writeReports prints reports to stdout, or writes them to dir as RFC 8460 §5.3 names them.
func writeReports(c *cobra.Command, cfg *config.Config, reports []tlsrpt.Report, dir string) error {
	for _, r := range reports {
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		data = append(data, '\n')
		if dir == "" {
			if _, err := c.OutOrStdout().Write(data); err != nil {
				return err
			}
			continue
		}
		name := tlsrpt.FileName(cfg.TLSRPTOrganization(), r)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("tlsrpt report: %w", err)
		}
		fmt.Fprintln(c.OutOrStdout(), filepath.Join(dir, name))
	}
	return nil
}

func init() {
	rootCmd.AddCommand(newTLSRPTCmd())
}

// startTLSRPT gives tr a TLS reporting recorder (tlsrpt.enabled) that saves its counts every
// tlsrpt.flush_interval; the function returned saves them a last time and stops. A state
// directory that cannot be made is logged and reporting is off.
func startTLSRPT(cfg *config.Config, tr *relay.Transport, log *slog.Logger) func() {
	if !cfg.TLSRPT.Enabled {
		return func() {}
	}
	rec, err := tlsrpt.Open(cfg.TLSRPTDir(), log)
	if err != nil {
		log.Error("TLS reporting off", "error", err)
		return func() {}
	}
	tr.TLSRPT = rec
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rec.Run(ctx, cfg.TLSRPT.FlushInterval)
	}()
	log.Info("TLS reporting (RFC 8460): counting sessions", "dir", cfg.TLSRPTDir(), "flush_interval", cfg.TLSRPT.FlushInterval)
	return func() {
		cancel()
		<-done
	}
}
