package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"sealgate/internal/addr"
	"sealgate/internal/config"
	"sealgate/internal/dmarcreport"
	"sealgate/internal/resolver"
)

// The dmarc commands: import DMARC aggregate reports into DIR/dmarc/reports.db, and read
// them joined with the send log serve keeps in DIR/sendlog (dmarc_serve.go).

func newDMARCCmd() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "dmarc",
		Short: "DMARC aggregate reports: import them, see which sources are ours, decide on p=reject",
		Long: `Receivers send DMARC aggregate reports (RFC 7489 §7.2, RFC 9990) to the rua address of a
domain's DMARC record. These commands keep them in DIR/dmarc/reports.db and join them with
the send log serve writes (DIR/sendlog/), so each sending source is "ours" or not.

  import PATH...      store the reports of files (XML, .gz, .zip), messages (.eml) or Maildirs
  summary --domain D  per source: ours or not, messages, aligned DKIM/SPF pass rates,
                      dispositions, likely causes of our failures, PTR of the others
  readiness --domain D  the share p=reject would reject, the sources responsible, and the
                      next record to publish; exit 0 when the domain is ready for it
  prune --days N      remove reports and send log days older than N days

See the README section "DMARC reports".`,
	}
	cmd.PersistentFlags().StringVar(&configFile, "config", "/etc/sealgate/sealgate.yaml", "configuration file (for dir, domains, dns and dmarc_reports)")
	cmd.AddCommand(newDMARCImportCmd(&configFile), newDMARCSummaryCmd(&configFile), newDMARCReadinessCmd(&configFile),
		newDMARCPruneCmd(&configFile))
	return cmd
}

// dmarcStore is the report store of cfg.
func dmarcStore(cfg *config.Config) *dmarcreport.Store {
	return &dmarcreport.Store{Path: dmarcStorePath(cfg.Dir), Limits: dmarcLimits(cfg)}
}

func dmarcLimits(cfg *config.Config) dmarcreport.Limits {
	d := cfg.DMARCReports
	return dmarcreport.Limits{MaxInputBytes: d.MaxInputBytes, MaxXMLBytes: d.MaxXMLBytes, MaxRecords: d.MaxRecords, MaxReports: d.MaxReports}
}

// servedDomains are the configured domains, the only ones reports are taken for.
func servedDomains(cfg *config.Config) []addr.Domain {
	var out []addr.Domain
	for _, d := range cfg.Domains {
		if dd, err := addr.ParseDomain(d.Domain); err == nil {
			out = append(out, dd)
		}
	}
	return out
}

func newDMARCImportCmd(configFile *string) *cobra.Command {
	return &cobra.Command{
		Use:   "import PATH...",
		Short: "Store the DMARC aggregate reports of files, messages or Maildirs",
		Long: `Each PATH is a report (XML, gzip or zip), a message with a report attached, or a Maildir
(its cur/ and new/ messages). A report already stored (same org_name and report_id) is
skipped. A report that is malformed, over the dmarc_reports limits, carries a DOCTYPE or is
about a domain not in domains is refused and stored nowhere; the other inputs go on, and the
exit status is 1 when any was refused.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(*configFile)
			if err != nil {
				return fmt.Errorf("configuration %s:\n%w", *configFile, err)
			}
			im := &dmarcreport.Importer{Store: dmarcStore(cfg), Domains: servedDomains(cfg), Limits: dmarcLimits(cfg)}
			var stored, dups, refused int
			w := cmd.OutOrStdout()
			for _, p := range args {
				for _, r := range im.ImportPath(p) {
					switch {
					case r.Err != nil:
						refused++
						fmt.Fprintf(cmd.ErrOrStderr(), "refused %v\n", r.Err)
					case r.Duplicate:
						dups++
						fmt.Fprintf(w, "duplicate %s: %s report %s already stored\n", r.Source, r.Report.Org, r.Report.ID)
					default:
						stored++
						var msgs int64
						for _, rec := range r.Report.Records {
							msgs += rec.Count
						}
						fmt.Fprintf(w, "imported %s: %s report %s for %s, %s to %s, %d records, %d messages\n", r.Source,
							r.Report.Org, r.Report.ID, r.Report.Policy.Domain, r.Report.Begin.Format(time.DateOnly),
							r.Report.End.Format(time.DateOnly), len(r.Report.Records), msgs)
					}
				}
			}
			fmt.Fprintf(w, "%d imported, %d duplicates, %d refused\n", stored, dups, refused)
			if refused > 0 {
				return exitStatus(1, fmt.Errorf("dmarc import: %d refused (nothing of them was stored)", refused))
			}
			return nil
		},
	}
}

// dmarcQuery is what summary and readiness share: the domain, the period, the summary.
type dmarcQuery struct {
	domain   string
	days     int
	asJSON   bool
	sendLogs []string
}

func (q *dmarcQuery) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&q.domain, "domain", "", "the domain (policy_published domain) to summarise")
	f.IntVar(&q.days, "days", 7, "reports whose date range ends within the last N days")
	f.BoolVar(&q.asJSON, "json", false, "print JSON")
	f.StringArrayVar(&q.sendLogs, "send-log", nil, "also the send log `DIR` of another node sending for the domain (its DIR/sendlog, copied or mounted here); repeatable")
	cmd.MarkFlagRequired("domain")
}

func (q *dmarcQuery) summary(cmd *cobra.Command, configFile string) (*config.Config, *dmarcreport.Summary, error) {
	d, err := addr.ParseDomain(q.domain)
	if err != nil {
		return nil, nil, fmt.Errorf("--domain %q: %w", q.domain, err)
	}
	if q.days < 1 {
		return nil, nil, fmt.Errorf("--days %d: want at least 1", q.days)
	}
	cfg, res, err := loadAndOpen(configFile)
	if err != nil {
		return nil, nil, fmt.Errorf("configuration %s:\n%w", configFile, err)
	}
	now := time.Now()
	since := now.Add(-time.Duration(q.days) * 24 * time.Hour)
	reports, err := dmarcStore(cfg).Reports(d, since)
	if err != nil {
		return nil, nil, err
	}
	var r resolver.Resolver
	if res != nil {
		r = res.Resolver
	}
	s, err := dmarcreport.Summarize(cmd.Context(), reports, dmarcreport.SummaryOptions{Domain: d, Since: since, Until: now,
		SendLogDir: sendLogDir(cfg.Dir), SendLogDirs: q.sendLogs, Resolver: r})
	return cfg, s, err
}

func newDMARCSummaryCmd(configFile *string) *cobra.Command {
	q := &dmarcQuery{}
	cmd := &cobra.Command{
		Use:   "summary --domain D [--days N] [--json]",
		Short: "Per sending source: ours or not, pass rates, dispositions, likely causes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, s, err := q.summary(cmd, *configFile)
			if err != nil {
				return err
			}
			if q.asJSON {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			printSummary(cmd.OutOrStdout(), s)
			return nil
		},
	}
	q.flags(cmd)
	return cmd
}

func newDMARCReadinessCmd(configFile *string) *cobra.Command {
	q := &dmarcQuery{}
	cmd := &cobra.Command{
		Use:   "readiness --domain D [--days N] [--json]",
		Short: "Would p=reject be safe? The share it would reject, who is responsible, the next record",
		Long: `readiness summarises the domain's reports like summary, then says which share of its mail
would be rejected under p=reject (and quarantined under p=quarantine), which sources fail,
and the next record of the ladder p=none, p=quarantine; pct=25, p=quarantine, p=reject;
pct=25, p=reject (README "DMARC reports"). The next step is advised only when none of our
own mail fails and all failing mail is under dmarc_reports.max_fail_share. Exit status 0
when the domain is ready for the next step, 1 when not (the reason is printed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, s, err := q.summary(cmd, *configFile)
			if err != nil {
				return err
			}
			v := dmarcreport.Readiness(s, dmarcreport.ReadinessOptions{MaxFailShare: cfg.DMARCReports.MaxFailShare, RUA: cfg.DMARCReports.RUA})
			if q.asJSON {
				if err := writeJSON(cmd.OutOrStdout(), v); err != nil {
					return err
				}
			} else {
				printVerdict(cmd.OutOrStdout(), v)
			}
			if !v.Ready {
				return exitStatus(1, errors.New("not ready: "+v.Reason))
			}
			return nil
		},
	}
	q.flags(cmd)
	return cmd
}

func newDMARCPruneCmd(configFile *string) *cobra.Command {
	var days int
	cmd := &cobra.Command{
		Use:   "prune --days N",
		Short: "Remove reports whose date range ended, and send log days, more than N days ago",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 1 {
				return fmt.Errorf("--days %d: want at least 1", days)
			}
			cfg, err := loadConfig(*configFile)
			if err != nil {
				return fmt.Errorf("configuration %s:\n%w", *configFile, err)
			}
			before := time.Now().Add(-time.Duration(days) * 24 * time.Hour)
			n, err := dmarcStore(cfg).Prune(before)
			if err != nil {
				return err
			}
			// The send log's days are written by serve; removing whole old days never
			// races its flush, which writes today's (or yesterday's) file.
			m, err := dmarcreport.PruneSendLog(sendLogDir(cfg.Dir), before)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d reports and %d send log days older than %s\n", n, m, before.Format(time.DateOnly))
			return nil
		},
	}
	cmd.Flags().IntVar(&days, "days", 90, "keep the last N days")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// count is "1 report", "2 reports".
func count[N int | int64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

func printSummary(w io.Writer, s *dmarcreport.Summary) {
	fmt.Fprintf(w, "%s: %s, %s, %d pass, %d fail (%s to %s)\n", s.Domain, count(s.Reports, "report"), count(s.Messages, "message"),
		s.Pass, s.Fail, s.Since.Format(time.DateOnly), s.Until.Format(time.DateOnly))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tKIND\tPTR\tMESSAGES\tDKIM ALIGNED\tSPF ALIGNED\tDISPOSITIONS")
	for _, src := range s.Sources {
		var disp []string
		for _, k := range []string{"none", "quarantine", "reject", "pass"} {
			if n := src.Dispositions[k]; n > 0 {
				disp = append(disp, fmt.Sprintf("%s=%d", k, n))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", src.IP, src.Kind, cmp(src.PTR, "-"), src.Messages,
			pct(src.DKIMPassRate), pct(src.SPFPassRate), strings.Join(disp, " "))
	}
	tw.Flush()
	for _, src := range s.Sources {
		for _, c := range src.Causes {
			fmt.Fprintf(w, "  %s (ours), %d failing: %s: %s\n", src.IP, c.Messages, c.Code, c.Detail)
		}
	}
}

func printVerdict(w io.Writer, v dmarcreport.Verdict) {
	fmt.Fprintf(w, "%s: %d messages, %d fail DMARC\n", v.Domain, v.Messages, v.Failing)
	fmt.Fprintf(w, "p=reject would reject %s of the mail; p=quarantine would quarantine %s\n", pct(v.RejectShare), pct(v.QuarantineShare))
	for _, r := range v.Responsible {
		fmt.Fprintf(w, "  %s %s %s: %d failing (%s)\n", r.IP, r.Kind, cmp(r.PTR, "-"), r.Failing, pct(r.Share))
		for _, c := range r.Causes {
			fmt.Fprintf(w, "    %s: %s\n", c.Code, c.Detail)
		}
	}
	fmt.Fprintf(w, "current: %s\n", v.Current)
	fmt.Fprintf(w, "next:    %s\n", v.Next)
	state := "not ready"
	if v.Ready {
		state = "ready"
	}
	fmt.Fprintf(w, "%s: %s\n", state, v.Reason)
}

func init() {
	rootCmd.AddCommand(newDMARCCmd())
}
