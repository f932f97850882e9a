package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"sealgate/verify"
)

func newVerifyCmd() *cobra.Command {
	var ip, helo, mailFrom, submitter, authservID string
	var dnsbl []string
	var callback, asJSON bool
	cmd := &cobra.Command{
		Use:   "verify [--ip IP] [--helo NAME] [--mail-from ADDR] [--submitter PRA] [--authserv-id ID] [--json] [FILE...]",
		Short: "Evaluate a message as a strict receiving MTA would (SPF, DKIM, ARC, DMARC, iprev, DNSBL)",
		Long: `Evaluates a message (each FILE, or stdin) stage by stage, as a strict receiver would have:
at connect the DNSBLs (--dnsbl) and iprev of --ip; at HELO whether --helo resolves to --ip;
at MAIL FROM SPF (RFC 7208) of the --mail-from domain and of --helo, counting DNS lookups;
at RCPT callback verification of the return path (--callback) and, with --submitter, whether
SPF is aligned with the PRA's domain; at DATA every DKIM signature, the ARC chain, whether the
From domain exists, and DMARC both by RFC 9989 (DNS tree walk, psd=, np=, t=) and by RFC 7489
(Public Suffix List, pct=), saying where they disagree.

Prints one Authentication-Results field, one line per check and the verdict (accept, or reject,
quarantine or tempfail with the stage and reply). Checks that need what was not given say
"not checked". --mail-from '<>' is the null reverse-path; one with a malformed domain or no
local part is evaluated as SPF's initial processing says (RFC 7208 §4.3: none, or
postmaster@DOMAIN) and the verdict refuses it at MAIL. A DNS timeout in SPF is temperror
"(DNS timed out)". --json prints the report as JSON.
With several files, each report is headed by "==> FILE <==" (with --json: one JSON document
per file, in order).

Exit status 0 whatever the results, 2 on errors (unreadable file, malformed message or
arguments, bad DNS flags).`,
		Example: `  sealgate verify --zone sealgate-dev/example.test.zone sealgate-dev/outbox/m.eml
  sealgate verify --ip 192.0.2.25 --helo relay.corp.example --mail-from b@bounce.corp.example msg.eml`,
		Args: cobra.ArbitraryArgs,
	}
	dns := addDNSFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		r, err := dns.resolver()
		if err != nil {
			return err
		}
		env := verify.Envelope{HELO: helo, MailFrom: mailFrom, Submitter: submitter}
		if ip != "" {
			a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]"))
			if err != nil {
				return fmt.Errorf("--ip %q is not an IP address", ip)
			}
			env.IP = a
		}
		if authservID == "" {
			authservID, _ = os.Hostname()
		}
		o := &verify.Options{Resolver: r, AuthServID: authservID, DNSBLZones: dnsbl, Callback: callback}
		if len(args) <= 1 {
			return verifyOne(cmd, env, o, args, asJSON)
		}
		for i, file := range args {
			if !asJSON {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				fmt.Fprintf(cmd.OutOrStdout(), "==> %s <==\n", file)
			}
			if err := verifyOne(cmd, env, o, []string{file}, asJSON); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
		return nil
	}
	f := cmd.Flags()
	f.StringVar(&ip, "ip", "", "the connecting client's IP address")
	f.StringVar(&helo, "helo", "", "the EHLO/HELO name (or address literal) the client gave")
	f.StringVar(&mailFrom, "mail-from", "", "the MAIL FROM reverse-path ('<>' for the null path)")
	f.StringVar(&submitter, "submitter", "", "the SUBMITTER parameter of MAIL FROM (RFC 4405): the PRA")
	f.StringVar(&authservID, "authserv-id", "", "authserv-id of the Authentication-Results field (default: the host name)")
	f.StringArrayVar(&dnsbl, "dnsbl", nil, "DNSBL zone to look --ip up in (repeatable)")
	f.BoolVar(&callback, "callback", false, "callback-verify the return path: connect to its MX, MAIL FROM:<>, RCPT TO, QUIT (never DATA)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// verifyOne evaluates the message of args (one file, or stdin) and prints its report.
func verifyOne(cmd *cobra.Command, env verify.Envelope, o *verify.Options, args []string, asJSON bool) error {
	msg, err := readInput(cmd, args)
	if err != nil {
		return err
	}
	rep, err := verify.Verify(cmd.Context(), env, bytes.NewReader(msg), o)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}
	return rep.WriteText(cmd.OutOrStdout())
}
