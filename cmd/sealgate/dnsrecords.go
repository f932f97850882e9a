package main

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"sealgate/internal/addr"
	"sealgate/internal/config"
	"sealgate/keys"
)

func newDNSCmd() *cobra.Command {
	dns := &cobra.Command{
		Use:   "dns",
		Short: "DNS records a deployment must publish",
	}
	var file string
	records := &cobra.Command{
		Use:   "records [--config FILE] [DOMAIN]",
		Short: "Print every DNS record a deployment must publish, zone-file ready",
		Long: `Print, for every domain of the configuration (or only DOMAIN), the records receivers
need to check what sealgate signs, as zone-file lines under $ORIGIN DOMAIN.:

  - one DKIM key record per selector (RFC 6376 §3.6.1), from the configured keys;
  - the ARC key record of arc.selector under arc.domain (RFC 8617 §4.1.2);
  - an SPF suggestion (RFC 7208) allowing the relay's egress: relay.source_ip and the
    source_ip of each route when set, else the addresses of the hostname (a:HOSTNAME);
    with relay.next_hop, the next hop's own SPF is included instead, as it sends the mail on;
  - a DMARC suggestion (RFC 7489) starting at p=none with aggregate reports (rua) to
    dmarc-reports@DOMAIN: raise it to quarantine, then reject, once the reports show every
    legitimate source aligned.

The key records are what must be published before mail is signed; SPF and DMARC are
suggestions to adapt. "sealgate keys check" checks a published key record.`,
		Example: `  sealgate dns records --config /etc/sealgate/sealgate.yaml
  sealgate dns records --config /etc/sealgate/sealgate.yaml corp.example > corp.example.zone.part`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, res, err := loadAndOpen(file)
			if err != nil {
				return fmt.Errorf("configuration %s:\n%w", file, err)
			}
			var only addr.Domain
			if len(args) == 1 {
				if only, err = addr.ParseDomain(args[0]); err != nil {
					return fmt.Errorf("dns records: %w", err)
				}
			}
			return writeRecords(cmd.OutOrStdout(), cfg, res, only)
		},
	}
	records.Flags().StringVar(&file, "config", "/etc/sealgate/sealgate.yaml", "configuration file")
	dns.AddCommand(records)
	return dns
}

// writeRecords writes the zone-file lines of every domain (or only one).
func writeRecords(w io.Writer, cfg *config.Config, res *resources, only addr.Domain) error {
	domains := map[addr.Domain]bool{}
	for _, d := range res.KeyRing.Domains() {
		domains[d] = true
	}
	arcDomain, _ := addr.ParseDomain(cfg.ARC.Domain)
	if res.ARCKey != nil {
		domains[arcDomain] = true
	}
	if only != "" {
		if !domains[only] {
			return fmt.Errorf("dns records: %s is not a domain of the configuration (domains, arc.domain)", only)
		}
		domains = map[addr.Domain]bool{only: true}
	}
	var list []addr.Domain
	for d := range domains {
		list = append(list, d)
	}
	slices.Sort(list)
	spf := spfSuggestion(cfg)
	for i, d := range list {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "; DNS records for %s, for sealgate on %s\n$ORIGIN %s.\n", d.Unicode(), cfg.Hostname, d)
		if dk, ok := res.KeyRing.Lookup(d); ok && dk.Domain == d {
			for _, k := range dk.Keys {
				fmt.Fprintf(w, "; DKIM key, selector %s\n%s\n", k.Selector, keys.DNSRecord(k.Signer.Public(), k.Selector, string(d)))
			}
			rotationRecords(w, cfg, d) // dnsrecords_rotation.go
			if len(dk.Keys) == 0 {
				fmt.Fprintf(w, "; no DKIM keys: mail for %s is relayed unsigned or refused\n", d)
			}
			if dk.SignSubdomains {
				fmt.Fprintf(w, "; these keys also sign (d=%s) mail from subdomains of %s\n", d, d)
			}
		}
		if res.ARCKey != nil && d == arcDomain {
			fmt.Fprintf(w, "; ARC key, selector %s\n%s\n", cfg.ARC.Selector, keys.DNSRecord(res.ARCKey.Public(), cfg.ARC.Selector, string(d)))
		}
		fmt.Fprintf(w, "; SPF suggestion: every host that sends mail From @%s must be in it; ~all until checked, then -all\n", d)
		fmt.Fprintf(w, "@ IN TXT %q\n", spf)
		fmt.Fprintf(w, "; DMARC suggestion: start at p=none and read the aggregate reports; then quarantine, then reject\n")
		fmt.Fprintf(w, "_dmarc IN TXT %q\n", "v=DMARC1; p=none; rua=mailto:dmarc-reports@"+string(d)+"; adkim=r; aspf=r")
	}
	return nil
}

// spfSuggestion is an SPF record allowing the relay's egress (RFC 7208 §5).
func spfSuggestion(cfg *config.Config) string {
	var mech []string
	add := func(ip string) {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return
		}
		m := "ip4:" + a.String()
		if a.Is6() {
			m = "ip6:" + a.String()
		}
		if !slices.Contains(mech, m) {
			mech = append(mech, m)
		}
	}
	add(cfg.Relay.SourceIP)
	for _, r := range cfg.Relay.Identities {
		add(r.SourceIP)
	}
	for _, r := range cfg.Relay.Domains {
		add(r.SourceIP)
	}
	if cfg.Relay.NextHop != "" {
		host := cfg.Relay.NextHop
		if h, _, ok := strings.Cut(host, ":"); ok {
			host = h
		}
		if _, err := netip.ParseAddr(host); err == nil {
			add(host)
		} else {
			mech = append(mech, "a:"+host)
		}
	}
	if len(mech) == 0 {
		mech = append(mech, "a:"+cfg.Hostname)
	}
	return "v=spf1 " + strings.Join(mech, " ") + " ~all"
}

func init() {
	rootCmd.AddCommand(newDNSCmd())
}
