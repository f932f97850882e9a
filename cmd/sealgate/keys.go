package main

import (
	"crypto"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"sealgate/internal/addr"
	"sealgate/keys"
)

var keysCmd = &cobra.Command{
	Use:   "keys",
	Short: "Generate DKIM keys, print their DNS records and check that they are published",
	Long: `The keys commands manage DKIM signing keys (RFC 6376, RFC 8463).

A key is published as a TXT record at <selector>._domainkey.<domain>. Use a new selector for
each new key, publish its record, check it, and only then sign with it ("keys rotate" does
that for a running relay; "keys status" follows it). Sign with both an
rsa2048 and an ed25519 key (two selectors): receivers that do not know Ed25519 ignore that
signature.

Key files are PKCS#8 PEM with mode 0600; sealgate refuses key files that other users can read.`,
}

var keysGenerateCmd = &cobra.Command{
	Use:   "generate --domain DOMAIN --selector SELECTOR [--algorithm rsa2048|rsa3072|ed25519] [--out FILE]",
	Short: "Generate a key and print the DNS record to publish",
	Long: `Generate a new DKIM private key, write it to a file readable by its owner only (mode 0600)
and print the TXT record that publishes it, as a zone-file line, on standard output.

The file defaults to ./<selector>.<domain>.key; an existing file is never replaced unless
--force is given. Long records are split into 255-character strings, which receivers join;
DNS provider web forms usually want the text between the quotes joined without spaces.`,
	Example: `  sealgate keys generate --domain example.com --selector rsa2026
  sealgate keys generate --domain example.com --selector ed2026 --algorithm ed25519 \
      --out /etc/sealgate/keys/ed2026.example.com.key`,
	Args: cobra.NoArgs,
	RunE: runKeysGenerate,
}

var keysDNSCmd = &cobra.Command{
	Use:   "dns --key FILE --domain DOMAIN --selector SELECTOR",
	Short: "Print the DNS record of an existing key",
	Long: `Print the TXT record that publishes the public half of an existing private key, as a
zone-file line on standard output.`,
	Example: `  sealgate keys dns --key /etc/sealgate/keys/rsa2026.example.com.key --domain example.com --selector rsa2026`,
	Args:    cobra.NoArgs,
	RunE:    runKeysDNS,
}

var keysCheckCmd = &cobra.Command{
	Use:   "check --key FILE --domain DOMAIN --selector SELECTOR [--dns HOST:PORT | --zone FILE]",
	Short: "Check that a key is published in DNS",
	Long: `Look up <selector>._domainkey.<domain> and say whether it publishes this key.

Exit status: 0 when the record publishes this key and is not in testing mode (t=y);
1 when it does not: no record, another key, t=y set, key revoked, a syntax error in the
record or several records at the name; 2 when the check could not be made (unreadable key,
DNS failure: try again later).

With --zone the record is checked in a zone file before it is published.`,
	Example: `  sealgate keys check --key rsa2026.example.com.key --domain example.com --selector rsa2026
  sealgate keys check --key rsa2026.example.com.key --domain example.com --selector rsa2026 --dns 192.0.2.53:53
  sealgate keys check --key rsa2026.example.com.key --domain example.com --selector rsa2026 --zone example.com.zone`,
	Args: cobra.NoArgs,
	RunE: runKeysCheck,
}

// keyFlags are the flags naming a key record and key file.
type keyFlags struct {
	domain, selector, key string
}

func addKeyFlags(cmd *cobra.Command, withKey bool) *keyFlags {
	f := &keyFlags{}
	cmd.Flags().StringVar(&f.domain, "domain", "", "signing `DOMAIN` (the d= of signatures); Unicode names are converted to A-labels")
	cmd.Flags().StringVar(&f.selector, "selector", "", "`SELECTOR` (the s= of signatures), such as rsa2026")
	_ = cmd.MarkFlagRequired("domain")
	_ = cmd.MarkFlagRequired("selector")
	if withKey {
		cmd.Flags().StringVar(&f.key, "key", "", "private key `FILE` (PKCS#8 or PKCS#1 PEM, mode 0600)")
		_ = cmd.MarkFlagRequired("key")
	}
	return f
}

// names returns the normalised domain and selector.
func (f *keyFlags) names() (domain, selector string, err error) {
	if domain, err = normaliseDomain(f.domain); err != nil {
		return "", "", err
	}
	if selector, err = normaliseSelector(f.selector); err != nil {
		return "", "", err
	}
	return domain, selector, nil
}

var (
	generateFlags  *keyFlags
	generateAlg    string
	generateOut    string
	generateForce  bool
	dnsKeyFlags    *keyFlags
	checkKeyFlags  *keyFlags
	checkDNSConfig *dnsFlags
)

func init() {
	generateFlags = addKeyFlags(keysGenerateCmd, false)
	keysGenerateCmd.Flags().StringVar(&generateAlg, "algorithm", keys.RSA2048,
		"key `ALGORITHM`: "+strings.Join(keys.Algorithms, ", "))
	keysGenerateCmd.Flags().StringVar(&generateOut, "out", "", "write the key to `FILE` (default ./<selector>.<domain>.key)")
	keysGenerateCmd.Flags().BoolVar(&generateForce, "force", false, "replace an existing key file")

	dnsKeyFlags = addKeyFlags(keysDNSCmd, true)

	checkKeyFlags = addKeyFlags(keysCheckCmd, true)
	checkDNSConfig = addDNSFlags(keysCheckCmd)

	keysCmd.AddCommand(keysGenerateCmd, keysDNSCmd, keysCheckCmd)
	rootCmd.AddCommand(keysCmd)
}

func runKeysGenerate(cmd *cobra.Command, _ []string) error {
	domain, selector, err := generateFlags.names()
	if err != nil {
		return err
	}
	out := generateOut
	if out == "" {
		out = "./" + selector + "." + domain + ".key"
	}
	key, err := keys.Generate(generateAlg)
	if err != nil {
		return err
	}
	write := keys.WritePrivateKey
	if generateForce {
		write = keys.ReplacePrivateKey
	}
	if err := write(out, key); err != nil {
		if !generateForce && strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("%w (use --force to replace it, or choose another --out)", err)
		}
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Wrote %s key to %s (mode 0600). Publish this TXT record, then run\n"+
		"  sealgate keys check --key %s --domain %s --selector %s\n",
		generateAlg, filepath.Clean(out), filepath.Clean(out), domain, selector)
	return printRecord(cmd, key.Public(), selector, domain)
}

func runKeysDNS(cmd *cobra.Command, _ []string) error {
	domain, selector, err := dnsKeyFlags.names()
	if err != nil {
		return err
	}
	key, err := keys.Load(dnsKeyFlags.key)
	if err != nil {
		return err
	}
	return printRecord(cmd, key.Public(), selector, domain)
}

func printRecord(cmd *cobra.Command, pub crypto.PublicKey, selector, domain string) error {
	line := keys.DNSRecord(pub, selector, domain)
	if line == "" {
		return fmt.Errorf("keys: cannot make a DNS record for a %T key", pub)
	}
	_, err := fmt.Fprintln(cmd.OutOrStdout(), line)
	return err
}

func runKeysCheck(cmd *cobra.Command, _ []string) error {
	domain, selector, err := checkKeyFlags.names()
	if err != nil {
		return err
	}
	key, err := keys.Load(checkKeyFlags.key)
	if err != nil {
		return err
	}
	r, err := checkDNSConfig.resolver()
	if err != nil {
		return err
	}
	res, err := keys.Check(cmd.Context(), r, key, selector, domain)
	if err != nil {
		return err // exit 2: no verdict
	}
	w := cmd.OutOrStdout()
	if res.OK() {
		fmt.Fprintf(w, "OK: %s\n", res.Detail)
		return nil
	}
	fmt.Fprintf(w, "NOT OK (%s): %s\n", res.Status, res.Detail)
	for _, txt := range res.Records {
		fmt.Fprintf(w, "  found:   %s\n", txt)
	}
	fmt.Fprintf(w, "  publish: %s\n", keys.DNSRecord(key.Public(), selector, domain))
	return exitStatus(1, errors.New("")) // the verdict is on stdout; nothing more to say
}

// normaliseDomain returns domain as lower-case A-labels without a trailing dot, through the
// project's one domain type (addr.ParseDomain); a key's domain needs at least two labels.
func normaliseDomain(domain string) (string, error) {
	if strings.TrimSpace(domain) == "" {
		return "", errors.New("--domain is empty")
	}
	a, err := addr.ParseDomain(domain)
	if err != nil {
		return "", fmt.Errorf("--domain %q is not a valid domain name: %w", domain, err)
	}
	d := string(a)
	if !strings.Contains(d, ".") {
		return "", fmt.Errorf("--domain %q is not a valid domain name: it needs at least two labels (example.com)", domain)
	}
	return d, nil
}

// normaliseSelector checks a selector by the project's one rule (addr.CheckSelector) and
// returns it in lower case.
func normaliseSelector(selector string) (string, error) {
	if selector == "" {
		return "", errors.New("--selector is empty")
	}
	s := strings.ToLower(selector)
	if err := addr.CheckSelector(s); err != nil {
		return "", fmt.Errorf("--selector %q is not valid: %w", selector, err)
	}
	return s, nil
}
