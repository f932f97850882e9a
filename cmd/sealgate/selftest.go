package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"sealgate/internal/addr"
	"sealgate/internal/config"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/relay"
	"sealgate/selftest"
	"sealgate/sign"
	"sealgate/submit"
	"sealgate/verify"
)

func newSelftestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "selftest",
		Short: "Prove, before publishing p=reject, that what sealgate sends passes a strict receiver",
	}
	cmd.AddCommand(newSelftestMessageCmd(), newSelftestDomainCmd())
	return cmd
}

// selftestFlags are the flags both selftests share.
type selftestFlags struct {
	config string
	egress []string
	dnsbl  []string
	json   bool
	dns    *dnsFlags
}

func addSelftestFlags(cmd *cobra.Command) *selftestFlags {
	f := &selftestFlags{dns: addDNSFlags(cmd)}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "/etc/sealgate/sealgate.yaml", "configuration file")
	fl.StringArrayVar(&f.egress, "egress", nil, "verify as sent from `IP[=HELO]` instead of the configured egress (repeatable)")
	fl.StringArrayVar(&f.dnsbl, "dnsbl", nil, "DNSBL `ZONE` to look the egress addresses up in (repeatable)")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON")
	return f
}

// load reads the configuration and opens what it names; the resolver is --dns/--zone when
// given, else the configuration's.
func (f *selftestFlags) load() (*config.Config, *resources, resolver.Resolver, error) {
	cfg, res, err := loadAndOpen(f.config)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("configuration %s:\n%w", f.config, err)
	}
	r := res.Resolver
	if f.dns.server != "" || f.dns.zone != "" {
		if r, err = f.dns.resolver(); err != nil {
			return nil, nil, nil, err
		}
	}
	return cfg, res, r, nil
}

// egressOf is where mail leaves: --egress, else the source addresses of the relay routes
// with their HELO names, else (dev outbox) 127.0.0.1, else the host's own addresses.
func (f *selftestFlags) egressOf(cfg *config.Config, res *resources) ([]selftest.Egress, error) {
	var out []selftest.Egress
	for _, e := range f.egress {
		ipText, helo, _ := strings.Cut(e, "=")
		ip, err := netip.ParseAddr(ipText)
		if err != nil {
			return nil, fmt.Errorf("--egress %q: want IP or IP=HELO", e)
		}
		if helo == "" {
			helo = cfg.Hostname
		}
		out = append(out, selftest.Egress{IP: ip, HELO: helo})
	}
	if len(out) > 0 {
		return out, nil
	}
	return configuredEgress(cfg, res), nil
}

func configuredEgress(cfg *config.Config, res *resources) []selftest.Egress {
	var out []selftest.Egress
	if cfg.Relay.Outbox != "" {
		return []selftest.Egress{{IP: netip.MustParseAddr("127.0.0.1"), HELO: cfg.Hostname,
			Note: "relay.outbox: mail stays on this host, as if sent from 127.0.0.1"}}
	}
	add := func(rt config.Route) {
		ip, ok := netip.AddrFromSlice(rt.SourceIP)
		if !ok {
			return
		}
		helo := rt.HeloName
		if helo == "" {
			helo = cfg.Hostname
		}
		e := selftest.Egress{IP: ip.Unmap(), HELO: helo}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	var defHELO string
	if res.Routes != nil {
		add(res.Routes.Default)
		defHELO = res.Routes.Default.HeloName
		for _, k := range sortedKeys(res.Routes.Identities) {
			add(res.Routes.Identities[k])
		}
		for _, k := range sortedKeys(res.Routes.Domains) {
			add(res.Routes.Domains[k])
		}
	}
	if len(out) > 0 {
		return out
	}
	if defHELO == "" {
		defHELO = cfg.Hostname
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if pn, ok := a.(*net.IPNet); ok && pn.IP.IsGlobalUnicast() {
			ip, _ := netip.AddrFromSlice(pn.IP)
			out = append(out, selftest.Egress{IP: ip.Unmap(), HELO: defHELO,
				Note: "no relay source_ip: an address of this host (behind NAT receivers see another; give it with --egress)"})
		}
	}
	if len(out) == 0 {
		out = append(out, selftest.Egress{IP: netip.MustParseAddr("127.0.0.1"), HELO: defHELO,
			Note: "no relay source_ip and no global address on this host: give the egress with --egress"})
	}
	return out
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func writeReport(w io.Writer, asJSON bool, v any, text func(io.Writer) error) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	return text(w)
}

func newSelftestMessageCmd() *cobra.Command {
	var as, mailFrom string
	var rcpts []string
	var sample bool
	cmd := &cobra.Command{
		Use:   "message --as IDENTITY [--config FILE] [FILE | --sample]",
		Short: "Send a message through the relay as IDENTITY and verify it as a strict receiver would",
		Long: `Runs a message (FILE, stdin, or with --sample one made up for the identity) through the
real relay: the pipeline built from the configuration as serve builds it (sender policy, DKIM
signing, ARC sealing) as the login, client network or client certificate IDENTITY, a
temporary spool, and the outbound SMTP client, to a receiving SMTP server in this process that
offers SUBMITTER. That server verifies exactly the bytes and envelope it received (see
"sealgate verify") as seen from each egress address and HELO name: the relay routes'
source_ip and helo_name, 127.0.0.1 for a dev outbox, else this host's addresses (--egress
overrides).

Prints every check with pass, warn or fail, the reason and the fix (the record to publish or
the change to make), and per egress a verdict: whether DMARC passes, through which aligned
identifier, and whether p=reject would lose this mail. For a forwarder (role: forwarder) it
adds what receivers see: the author's domain (X-Original-From when From was rewritten) and its
DMARC result without the rewrite, whether From was rewritten and why, and the ARC result with
oldest-pass. Nothing is sent to the Internet.

When the DNS of the return path's SPF times out, the verdict is "could not check SPF (DNS
timed out)": neither ready nor not, since a receiver would defer the mail.

Exit status 0 when ready, 1 when not, 3 when SPF could not be checked (DNS timed out), 2 on
errors.`,
		Example: `  sealgate selftest message --config sealgate-dev/sealgate.yaml --as demo@example.test --sample
  sealgate selftest message --as corp-mx --egress 198.51.100.7=out.relay.example msg.eml`,
		Args: cobra.MaximumNArgs(1),
	}
	f := addSelftestFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if as == "" {
			return errors.New("--as IDENTITY is required: a login of the users file, or the name of a client network or client certificate")
		}
		if sample == (len(args) == 1) {
			return errors.New("give a message FILE (- for stdin) or --sample, not both or neither")
		}
		cfg, res, r, err := f.load()
		if err != nil {
			return err
		}
		egress, err := f.egressOf(cfg, res)
		if err != nil {
			return err
		}
		mt, err := newMessageTest(cfg, res, as)
		if err != nil {
			return err
		}
		mt.resolver = r
		if len(rcpts) == 0 {
			rcpts = []string{"selftest@receiver.invalid"}
		}
		var msg []byte
		if sample {
			msg = mt.sample()
		} else if msg, err = readInput(cmd, args); err != nil {
			return err
		}
		o := &selftest.MessageOptions{
			Options: verify.Options{Resolver: r, AuthServID: "selftest.invalid", DNSBLZones: f.dnsbl, Timeout: f.dns.timeout * 4},
			Egress:  egress,
			Keys:    localKeys(res.KeyRing),
			Send: func(ctx context.Context, server string) error {
				return mt.send(ctx, server, egress[0].HELO, msg, mailFrom, rcpts)
			},
		}
		if fw := mt.identity.Forwarder; fw != nil {
			o.Forwarder = &selftest.Forwarder{SignAs: string(fw.SignAs), FromRewrite: fw.FromRewrite}
			if !fw.ListAddress.IsZero() {
				o.Forwarder.ListAddress = fw.ListAddress.String()
			}
		}
		rep, err := selftest.Message(cmd.Context(), o)
		if err != nil {
			return err
		}
		if err := writeReport(cmd.OutOrStdout(), f.json, rep, rep.WriteText); err != nil {
			return err
		}
		if rep.SPFTimedOut {
			return exitStatus(3, errors.New("selftest message: could not check SPF (DNS timed out)"))
		}
		if !rep.Ready {
			return exitStatus(1, errors.New("selftest message: not ready"))
		}
		return nil
	}
	fl := cmd.Flags()
	fl.StringVar(&as, "as", "", "the `IDENTITY` to submit as: a login, or a client network or client certificate name")
	fl.BoolVar(&sample, "sample", false, "send a made-up message From an address the identity may use")
	fl.StringVar(&mailFrom, "mail-from", "", "the MAIL FROM address (default: the From address)")
	fl.StringArrayVar(&rcpts, "rcpt", nil, "a recipient (repeatable; default selftest@receiver.invalid); the message goes to the in-process server whatever the domain")
	return cmd
}

// messageTest is the relay's submission side built from the configuration, for one
// identity.
type messageTest struct {
	cfg      *config.Config
	pipeline *submit.Pipeline
	identity *submit.Identity
	clientIP net.IP
	resolver resolver.Resolver
}

func newMessageTest(cfg *config.Config, res *resources, as string) (*messageTest, error) {
	// The pipeline is the one serve builds (buildMetered uses submitSettings too).
	settings, err := submitSettings(cfg, res)
	if err != nil {
		return nil, err
	}
	mt := &messageTest{cfg: cfg, pipeline: settings.Pipeline, clientIP: net.IPv4(127, 0, 0, 1)}
	for _, n := range settings.Networks {
		if n.Identity.Name == as {
			mt.identity = n.Identity
			if len(n.Prefixes) > 0 {
				mt.clientIP = net.IP(n.Prefixes[0].Addr().AsSlice())
			}
		}
	}
	for _, c := range settings.Certs {
		if c.Identity.Name == as {
			mt.identity = c.Identity
		}
	}
	for _, e := range res.Users {
		if config.FoldLogin(e.Login) == config.FoldLogin(as) {
			// The identity submit.NewUsers gives this login after AUTH.
			id := submit.NewIdentity(e.Login, submit.KindLogin, e.MaySendAs)
			id.AllowNullSender, id.Seal, id.AllowUnsigned = e.AllowNullSender, e.Seal, e.AllowUnsigned
			id.RatePerMinute, id.MaxRecipients = e.RatePerMinute, e.MaxRecipients
			if id.Forwarder, err = submit.NewForwarder(e.Forwarder); err != nil {
				return nil, fmt.Errorf("--as %q: %w", as, err)
			}
			mt.identity = id
		}
	}
	if mt.identity == nil {
		return nil, fmt.Errorf("--as %q: no such login in the users file, client network or client certificate", as)
	}
	return mt, nil
}

// fromAddress is an address the identity may use: selftest@ its first pattern's domain, or
// the pattern's address.
func (mt *messageTest) fromAddress() string {
	for _, p := range mt.identity.MaySendAs {
		a, err := addr.ParseAddress("selftest@" + string(p.Domain()))
		if err == nil && p.Matches(a) {
			return a.String()
		}
		if a, err := addr.ParseAddress(p.String()); err == nil && p.Matches(a) {
			return a.String()
		}
	}
	return "selftest@" + mt.cfg.Hostname
}

func (mt *messageTest) sample() []byte {
	from := mt.fromAddress()
	return []byte("From: sealgate selftest <" + from + ">\r\n" +
		"To: <selftest@receiver.invalid>\r\n" +
		"Subject: sealgate selftest\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"This message was sent by sealgate selftest message to prove it passes DMARC.\r\n")
}

// send runs msg through the pipeline into a temporary spool and delivers it with the
// outbound client to server.
func (mt *messageTest) send(ctx context.Context, server, helo string, msg []byte, mailFrom string, rcpts []string) error {
	dir, err := os.MkdirTemp("", "sealgate-selftest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	spool, err := relay.OpenSpool(dir)
	if err != nil {
		return err
	}
	defer spool.Close()
	qid, err := mt.accept(ctx, spool, msg, mailFrom, rcpts)
	if err != nil {
		return err
	}
	env, rc, err := spool.Open(qid)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := &relay.Transport{HeloName: helo, Default: relay.Route{NextHop: server, HeloName: helo}}
	defer tr.Close()
	if err := tr.Deliver(ctx, env, rc); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	return nil
}

// accept runs msg through the pipeline as the identity into spool, as a session does after
// DATA, and returns its queue id. mailFrom "" means the first From address.
func (mt *messageTest) accept(ctx context.Context, spool *relay.Spool, msg []byte, mailFrom string, rcpts []string) (string, error) {
	hdr, body, err := sign.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return "", fmt.Errorf("the message: %w", err)
	}
	if mailFrom == "" {
		if vs := hdr.Values("From"); len(vs) > 0 {
			if mbs, err := addr.ParseHeaderMailboxes(vs[0]); err == nil && len(mbs) > 0 {
				mailFrom = mbs[0].Addr.String()
			}
		}
	}
	p := *mt.pipeline
	p.Spool, p.Log = spool, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if mt.resolver != nil {
		p.Resolver = mt.resolver
	}
	in, err := spool.Create()
	if err != nil {
		return "", err
	}
	hasher := dkimcore.NewBodyHasher(p.BodyCanonicalizationsFor(mt.identity, hdr)...)
	hasher.Write(body)
	if _, err := in.Write(body); err != nil {
		in.Abort()
		return "", err
	}
	sub := &submit.Submission{Identity: mt.identity, Authenticated: mt.identity.Kind == submit.KindLogin,
		From: mailFrom, To: rcpts, ClientIP: mt.clientIP, HELO: "selftest.invalid",
		Header: hdr, Body: in, Bodies: hasher.Sum()}
	qid, err := p.Accept(ctx, sub)
	if err != nil {
		return "", fmt.Errorf("the relay refused the message: %w", err)
	}
	return qid, nil
}

// localKeys are the key ring's keys, for the fixes that publish a missing record.
func localKeys(ring *sign.KeyRing) []selftest.LocalKey {
	var out []selftest.LocalKey
	if ring == nil {
		return nil
	}
	for _, d := range ring.Domains() {
		dk, _ := ring.Lookup(d)
		for _, k := range dk.Keys {
			out = append(out, selftest.LocalKey{Domain: string(dk.Domain), Selector: k.Selector, Signer: k.Signer})
		}
	}
	return out
}

func newSelftestDomainCmd() *cobra.Command {
	var returnPath string
	cmd := &cobra.Command{
		Use:   "domain DOMAIN [--config FILE] [--zone PLANNED.zone]",
		Short: "Check that DOMAIN's DNS is ready for mail sealgate sends (DKIM, SPF, DMARC, MX, HELO, DNSBL)",
		Long: `Checks the DNS of DOMAIN as receivers will read it: every DKIM selector configured for it
published, parseable, matching the local key, its size, not t=y; SPF passing for every egress
address within 10 DNS lookups and 2 void lookups, and parsing; the DMARC record parsing under
RFC 9989 and RFC 7489, with rua= (and, for a report address in another domain, its
<domain>._report._dmarc.<rua domain> opt-in record), alignment modes that fit how sealgate
signs, p=none and sp=none flagged; an MX (or null MX) for the return-path domain; each HELO
name resolving to its egress address and back; the egress addresses on no --dnsbl list.

Prints each check with pass, warn or fail and its fix, then the zone-file lines to publish
for whatever is missing or wrong. --zone answers from a zone file of planned records, to test
them before they go live.

A check whose DNS timed out is "unknown", neither pass nor fail; when SPF's did and nothing
failed, the report ends "NOT CHECKED: could not check SPF (DNS timed out)".

Exit status 0 when nothing failed, 1 when something did, 3 when nothing failed but SPF could
not be checked (DNS timed out), 2 on errors.`,
		Example: `  sealgate selftest domain example.test --config sealgate-dev/sealgate.yaml --zone sealgate-dev/example.test.zone
  sealgate selftest domain client.example --return-path bounce.client.example --egress 198.51.100.7=out.relay.example`,
		Args: cobra.ExactArgs(1),
	}
	f := addSelftestFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, res, r, err := f.load()
		if err != nil {
			return err
		}
		egress, err := f.egressOf(cfg, res)
		if err != nil {
			return err
		}
		d, err := addr.ParseDomain(args[0])
		if err != nil {
			return fmt.Errorf("domain %q: %w", args[0], err)
		}
		o := &selftest.DomainOptions{Resolver: r, ReturnPathDomain: returnPath, Egress: egress, DNSBLZones: f.dnsbl, Timeout: f.dns.timeout * 4}
		if dk, ok := res.KeyRing.Lookup(d); ok {
			o.SigningDomain = string(dk.Domain)
			for _, k := range dk.Keys {
				o.Keys = append(o.Keys, selftest.LocalKey{Domain: string(dk.Domain), Selector: k.Selector, Signer: k.Signer})
			}
		}
		rep, err := selftest.Domain(cmd.Context(), string(d), o)
		if err != nil {
			return err
		}
		if err := writeReport(cmd.OutOrStdout(), f.json, rep, rep.WriteText); err != nil {
			return err
		}
		if rep.SPFTimedOut {
			return exitStatus(3, errors.New("selftest domain: could not check SPF (DNS timed out)"))
		}
		if !rep.Ready {
			return exitStatus(1, errors.New("selftest domain: not ready"))
		}
		return nil
	}
	cmd.Flags().StringVar(&returnPath, "return-path", "", "the MAIL FROM `DOMAIN` of its mail (default: DOMAIN)")
	return cmd
}

func init() {
	rootCmd.AddCommand(newSelftestCmd())
}

// outboxVerifier is the outbox's Verify hook: each message is verified as a strict receiver
// would have seen it from 127.0.0.1 with the relay's host name as HELO (the dev zone publishes
// both), and the Authentication-Results it would get are logged on one line with the
// verdict, so dev mode shows spf, dkim, arc and dmarc passing.
func outboxVerifier(cfg *config.Config, res *resources, log *slog.Logger) func(context.Context, *relay.Envelope, []byte) {
	o := &verify.Options{Resolver: res.Resolver, AuthServID: "receiver.invalid", Timeout: 5 * time.Second}
	return func(ctx context.Context, env *relay.Envelope, msg []byte) {
		from := env.From
		if from == "" {
			from = "<>"
		}
		se := verify.Envelope{IP: netip.MustParseAddr("127.0.0.1"), HELO: cfg.Hostname, MailFrom: from, Submitter: env.Submitter}
		rep, err := verify.Verify(ctx, se, bytes.NewReader(msg), o)
		if err != nil {
			log.Warn("outbox selftest: message not verified", "queue_id", env.ID, "err", err)
			return
		}
		ar := strings.Join(strings.Fields(strings.TrimPrefix(rep.AuthenticationResults, "Authentication-Results:")), " ")
		attrs := []any{"queue_id", env.ID, "authentication_results", ar}
		// The SPF result of the one evaluation Verify made, as sealgate verify and selftest
		// message show it: the MAIL FROM identity, or HELO for the null reverse-path.
		if s := rep.SPF; s != nil || rep.SPFHELO != nil {
			if s == nil {
				s = rep.SPFHELO
			}
			attrs = append(attrs, "spf", s.Result, "spf_domain", s.Domain)
			if s.TimedOut {
				attrs = append(attrs, "spf_timed_out", true)
			}
		}
		attrs = append(attrs, "verdict", rep.Verdict.Action, "reason", rep.Verdict.Reason)
		log.Info("outbox selftest: a strict receiver would add", attrs...)
	}
}
