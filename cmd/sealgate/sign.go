package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"sealgate/arc"
	"sealgate/internal/addr"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/keys"
	"sealgate/sign"
)

// domainArg normalises a --domain value to its lower-case A-label form.
func domainArg(s string) (string, error) {
	d, err := addr.ParseDomain(s)
	if err != nil {
		return "", fmt.Errorf("--domain %q: %w", s, err)
	}
	return string(d), nil
}

// readMessageWithResolver reads the message named by args and sets up the resolver of the
// --dns/--zone flags, for the commands that check signatures.
func readMessageWithResolver(cmd *cobra.Command, args []string, dns *dnsFlags) (resolver.Resolver, []byte, dkimcore.Header, []byte, error) {
	r, err := dns.resolver()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	msg, err := readInput(cmd, args)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	hdr, body, err := sign.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return r, msg, hdr, body, nil
}

// readInput reads the message named by args (one file) or stdin.
func readInput(cmd *cobra.Command, args []string) ([]byte, error) {
	if len(args) == 0 || args[0] == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return nil, err
	}
	return b, nil
}

// parseTimestamp turns --timestamp into a time; empty means now.
func parseTimestamp(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("--timestamp %q is not Unix seconds", s)
	}
	return time.Unix(n, 0), nil
}

// headerList splits a --headers value "a:b:c"; empty means the default list.
func headerList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var out []string
	for h := range strings.SplitSeq(s, ":") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// minRSABitsFlag is --min-rsa-bits of sign and arc seal: the smallest RSA key accepted,
// 2048 by default, down to 1024 (RFC 8301 §3.2) for an existing key still to be rotated.
func minRSABitsFlag(cmd *cobra.Command) *int {
	return cmd.Flags().Int("min-rsa-bits", sign.MinRSABits,
		"smallest RSA key to sign with; lower it, down to 1024 (RFC 8301 §3.2), only for an existing key still to be rotated")
}

// checkMinRSABitsFlag checks --min-rsa-bits.
func checkMinRSABitsFlag(n int) error {
	if n < sign.LowestMinRSABits {
		return fmt.Errorf("--min-rsa-bits %d: must be at least %d (RFC 8301 §3.2)", n, sign.LowestMinRSABits)
	}
	return nil
}

// warnWeakKey warns on stderr about an RSA key under sign.MinRSABits.
func warnWeakKey(cmd *cobra.Command, file string, key crypto.Signer) {
	if pub, ok := key.Public().(*rsa.PublicKey); ok && pub.N.BitLen() < sign.MinRSABits {
		fmt.Fprintf(cmd.ErrOrStderr(), "sealgate: warning: %s: RSA key of %d bits; RFC 8301 §3.2 recommends 2048: rotate it\n", file, pub.N.BitLen())
	}
}

func newSignCmd() *cobra.Command {
	var domain, headers, oversign, timestamp, identifier string
	var selectors, keyFiles []string
	var expire time.Duration
	var minRSABits *int
	cmd := &cobra.Command{
		Use:   "sign --domain D --selector S --key FILE [--selector S2 --key FILE2] [FILE]",
		Short: "DKIM-sign a message (RFC 6376, RFC 8463)",
		Long: `Reads a message (FILE, or stdin) and writes it to stdout with one DKIM-Signature per
key prepended, c=relaxed/relaxed, t= set, no l=. Repeat --selector/--key to sign with several
keys, for example RSA and Ed25519 side by side. Input may use CRLF or bare LF line ends;
the output always uses CRLF and the body is otherwise unchanged.

By default the fields From, Sender, Reply-To, Subject, Date, To, Cc, Message-ID, In-Reply-To,
References, MIME-Version, Content-*, List-* and Resent-* are signed where present, and the
most important are oversigned so that copies added later break the signature.`,
		Example: `  sealgate keys generate --domain example.com --selector rsa2026 --out rsa.key
  sealgate sign --domain example.com --selector rsa2026 --key rsa.key message.eml > signed.eml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(selectors) != len(keyFiles) {
				return fmt.Errorf("give one --key per --selector (%d selectors, %d keys)", len(selectors), len(keyFiles))
			}
			if err := checkMinRSABitsFlag(*minRSABits); err != nil {
				return err
			}
			t, err := parseTimestamp(timestamp)
			if err != nil {
				return err
			}
			d, err := domainArg(domain)
			if err != nil {
				return err
			}
			o := &sign.Options{Domain: d, HeaderKeys: headerList(headers), Time: t, Expiration: expire, Identifier: identifier, MinRSABits: *minRSABits}
			if oversign != "" {
				o.Oversign = headerList(oversign)
			}
			for i, sel := range selectors {
				k, err := keys.LoadWithOptions(keyFiles[i], keys.LoadOptions{MinRSABits: *minRSABits})
				if err != nil {
					return err
				}
				warnWeakKey(cmd, keyFiles[i], k)
				o.Keys = append(o.Keys, sign.Key{Selector: sel, Signer: k})
			}
			msg, err := readInput(cmd, args)
			if err != nil {
				return err
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			if err := sign.SignMessage(w, bytes.NewReader(msg), o); err != nil {
				return err
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&domain, "domain", "", "signing domain (d=), normally the From domain")
	f.StringArrayVar(&selectors, "selector", nil, "selector (s=); repeat with --key to sign with several keys")
	f.StringArrayVar(&keyFiles, "key", nil, "PKCS#8 PEM private key file (mode 0600)")
	f.StringVar(&headers, "headers", "", "colon-separated fields to sign (default: the built-in list)")
	f.StringVar(&oversign, "oversign", "", "colon-separated fields to oversign (default: From:To:Cc:Subject:Date:Reply-To:Sender:Message-ID:Content-Type:MIME-Version)")
	f.StringVar(&timestamp, "timestamp", "", "signing time t= in Unix seconds (default: now)")
	f.DurationVar(&expire, "expire", 0, "add x= this long after t= (e.g. 168h); 0 means no expiry")
	f.StringVar(&identifier, "identifier", "", "AUID i= (an address or @domain within --domain)")
	minRSABits = minRSABitsFlag(cmd)
	cmd.MarkFlagRequired("domain")
	cmd.MarkFlagRequired("selector")
	cmd.MarkFlagRequired("key")
	return cmd
}

func newArcCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "arc",
		Short: "Seal messages with ARC and validate ARC chains (RFC 8617)",
	}
	cmd.AddCommand(newArcSealCmd(), newArcVerifyCmd())
	return cmd
}

func newArcSealCmd() *cobra.Command {
	var domain, selector, keyFile, authservID, headers, timestamp string
	var results []string
	cmd := &cobra.Command{
		Use:   "seal --domain D --selector S --key FILE --authserv-id ID [FILE]",
		Short: "Add an ARC set to a message",
		Long: `Validates the message's ARC chain, then writes the message to stdout with a new ARC set
(ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results) prepended, cv= set from the
validation. The AAR carries the results given with --result, or else those of the message's
Authentication-Results fields with our authserv-id, plus arc=<chain status>.

Where no set may be added (the newest seal says cv=fail, the chain has 50 sets, or its
instances cannot be told) the message is written unchanged and the reason goes to stderr;
the exit status is still 0.`,
		Example: `  sealgate arc seal --domain example.com --selector arc2026 --key arc.key \
      --authserv-id relay.example.com --result 'auth=pass smtp.auth=ana@example.com' msg.eml`,
		Args: cobra.MaximumNArgs(1),
		RunE: nil,
	}
	dns := addDNSFlags(cmd)
	minRSABits := minRSABitsFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		t, err := parseTimestamp(timestamp)
		if err != nil {
			return err
		}
		if err := checkMinRSABitsFlag(*minRSABits); err != nil {
			return err
		}
		if err := addr.CheckSelector(selector); err != nil {
			return fmt.Errorf("--selector %w", err)
		}
		key, err := keys.LoadWithOptions(keyFile, keys.LoadOptions{MinRSABits: *minRSABits})
		if err != nil {
			return err
		}
		warnWeakKey(cmd, keyFile, key)
		r, _, hdr, body, err := readMessageWithResolver(cmd, args, dns)
		if err != nil {
			return err
		}
		d, err := domainArg(domain)
		if err != nil {
			return err
		}
		o := &arc.SealOptions{
			Domain: d, Selector: selector, Signer: key, AuthServID: authservID,
			HeaderKeys: headerList(headers), Time: t, Resolver: r,
		}
		if len(results) > 0 {
			o.Results = results
		}
		bodies := dkimcore.HashBody(body, arc.RequiredCanonicalizations(hdr)...)
		fields, _, err := arc.Seal(context.Background(), hdr, bodies, o)
		var ns *arc.NoSealError
		switch {
		case asNoSeal(err, &ns):
			fmt.Fprintln(cmd.ErrOrStderr(), "sealgate: message left unsealed:", ns.Reason)
		case err != nil:
			return err
		default:
			hdr = append(fields, hdr...)
		}
		return sign.WriteMessage(cmd.OutOrStdout(), hdr, body)
	}
	f := cmd.Flags()
	f.StringVar(&domain, "domain", "", "sealing domain (d=)")
	f.StringVar(&selector, "selector", "", "selector (s=) of the sealing key")
	f.StringVar(&keyFile, "key", "", "PKCS#8 PEM private key file (mode 0600)")
	f.StringVar(&authservID, "authserv-id", "", "authserv-id of the ARC-Authentication-Results (our host name)")
	f.StringArrayVar(&results, "result", nil, `AAR result entry, e.g. "auth=pass smtp.auth=ana@example.com" (repeatable)`)
	f.StringVar(&headers, "headers", "", "colon-separated fields the ARC-Message-Signature signs (default: the built-in list plus DKIM-Signature)")
	f.StringVar(&timestamp, "timestamp", "", "signing time t= in Unix seconds (default: now)")
	for _, req := range []string{"domain", "selector", "key", "authserv-id"} {
		cmd.MarkFlagRequired(req)
	}
	return cmd
}

func asNoSeal(err error, target **arc.NoSealError) bool {
	if e, ok := err.(*arc.NoSealError); ok {
		*target = e
		return true
	}
	return false
}

func newArcVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify [FILE]",
		Short: "Validate a message's ARC chain",
		Long: `Runs the ARC chain validation of RFC 8617 §5.2 and prints the result as an
Authentication-Results method on the first line of stdout: arc=none, arc=pass (i=N)
header.oldest-pass=K, or arc=fail (reason). Exit status 0 for none and pass, 1 for fail,
2 for errors (unreadable file, malformed message).`,
		Args: cobra.MaximumNArgs(1),
	}
	dns := addDNSFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		r, _, hdr, body, err := readMessageWithResolver(cmd, args, dns)
		if err != nil {
			return err
		}
		res := arc.Validate(context.Background(), hdr, dkimcore.HashBody(body, arc.RequiredCanonicalizations(hdr)...), arc.ValidateOptions{Resolver: r})
		fmt.Fprintln(cmd.OutOrStdout(), res.String())
		if res.Status == arc.Fail {
			return exitStatus(1, fmt.Errorf("ARC chain failed: %s", res.Reason))
		}
		return nil
	}
	return cmd
}

func init() {
	rootCmd.AddCommand(newSignCmd(), newArcCmd(), newVerifyCmd())
}
