package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/config"
	"sealgate/relay"
	"sealgate/submit"
)

// TestBuildFromConfig loads a configuration naming real key, certificate and users files
// and checks the relay built from it answers on its listeners with what they are for.
func TestBuildFromConfig(t *testing.T) {
	dir := t.TempDir()
	st, err := prepareDev(filepath.Join(dir, "dev"), devOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keyDir := filepath.Join(st.dir, "keys")
	cfg := fmt.Sprintf(`hostname: relay.example.test
dir: %[1]s/state
listeners:
  - name: submission
    address: "127.0.0.1:0"
    mode: submission
    auth: [sasl]
    tls_cert: %[2]s
    tls_key: %[3]s
  - name: smarthost
    address: "127.0.0.1:0"
    mode: smarthost
    auth: [network]
users_file: %[4]s
client_networks:
  - name: partner-mta
    cidrs: ["127.0.0.1/32"]
    may_send_as: ["*@example.test"]
domains:
  - domain: example.test
    keys:
      - selector: rsa2026
        key_file: %[5]s/rsa2026.example.test.key
      - selector: ed2026
        key_file: %[5]s/ed2026.example.test.key
  - domain: lists.example.test      # the dev users file's forwarder login signs as it
    keys:
      - selector: lst2026
        key_file: %[5]s/lst2026.lists.example.test.key
srs:
  secret_files: [%[7]s]
arc:
  domain: example.test
  selector: arc2026
  key_file: %[5]s/arc2026.example.test.key
relay:
  outbox: %[1]s/outbox
limits:
  max_connections_per_ip: 7
  pre_auth_timeout: 12s
  max_header_fields: 300
dns:
  zone_file: %[6]s
`, dir, st.certFile, st.keyFile, st.usersFile, keyDir, st.zoneFile, filepath.Join(st.dir, "srs.secret"))
	file := filepath.Join(dir, "sealgate.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, res, err := loadAndOpen(file)
	if err != nil {
		t.Fatalf("config.LoadAndOpen: %v", err)
	}
	srv, runner, _, cleanup, err := buildMetered(c, res, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatalf("buildMetered: %v", err)
	}
	defer cleanup()
	if runner == nil || len(srv.Listeners) != 2 || len(srv.Networks) != 1 || srv.Users == nil {
		t.Fatalf("server: %d listeners, %d networks, users %v", len(srv.Listeners), len(srv.Networks), srv.Users != nil)
	}
	if dk, ok := srv.Pipeline.KeyRing.Lookup("example.test"); !ok || len(dk.Keys) != 2 || srv.Pipeline.ARC == nil {
		t.Fatalf("signing configuration not built: %+v", srv.Pipeline)
	}
	// The keys validation loaded are the ones that sign: each key file is read and loaded
	// (into libcrypto where built with it) once, not again when the relay is built.
	if srv.Pipeline.KeyRing != res.KeyRing || srv.Pipeline.ARC.Signer != res.ARCKey {
		t.Errorf("the pipeline signs with keys loaded a second time, not those of config.LoadAndOpen")
	}
	if l := srv.Limits; l.MaxConnectionsPerIP != 7 || l.PreAuthTimeout != 12*time.Second || l.MaxHeaderFields != 300 || l.DataTimeout != 10*time.Minute {
		t.Errorf("limits not wired: %+v", l)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	addrs := srv.Addrs()
	ehlo := func(a net.Addr) string {
		conn, err := net.Dial("tcp", a.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		r.ReadString('\n')
		fmt.Fprintf(conn, "EHLO client.example\r\n")
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(line)
			if len(line) > 3 && line[3] == ' ' {
				return b.String()
			}
		}
	}
	if got := ehlo(addrs[0]); !strings.Contains(got, "STARTTLS") || strings.Contains(got, "AUTH") {
		t.Errorf("submission EHLO before TLS must offer STARTTLS and no AUTH:\n%s", got)
	}
	if got := ehlo(addrs[1]); strings.Contains(got, "AUTH") {
		t.Errorf("smart-host EHLO offers AUTH:\n%s", got)
	}

	// A configuration with problems is refused with every problem named.
	bad := strings.Replace(cfg, "mode: smarthost", "mode: smarthose", 1)
	bad = strings.Replace(bad, "selector: arc2026", "selector: \"arc 2026\"", 1)
	os.WriteFile(file, []byte(bad), 0o600)
	_, err = loadConfig(file)
	if err == nil || !strings.Contains(err.Error(), "listeners[1].mode") || !strings.Contains(err.Error(), "arc.selector") {
		t.Errorf("bad configuration: %v", err)
	}
}

// TestDevModeIsAConfiguration: serve --dev writes DIR/sealgate.yaml, which config check
// accepts and which, served with --config from a copy of the directory, builds the same
// relay; that relay then signs and delivers a message.
func TestDevModeIsAConfiguration(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	st, err := prepareDev(dir, devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if st.configFile != filepath.Join(dir, "sealgate.yaml") {
		t.Fatalf("config file %s", st.configFile)
	}
	out, errOut, code := runCLI(t, "config", "check", "--config", st.configFile)
	if code != 0 || out != "OK\n" || errOut != "" {
		t.Fatalf("config check of the dev configuration: exit %d\n%s%s", code, out, errOut)
	}
	// The file names are relative: a copy of the directory serves from where it is.
	copied := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(copied, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"tls.key", "users", "credentials", "sealgate.yaml", "srs.secret"} {
		os.Chmod(filepath.Join(copied, secret), 0o600) // CopyFS keeps only the execute bits' shape
	}
	filepath.WalkDir(filepath.Join(copied, "keys"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			os.Chmod(p, 0o600)
		}
		return nil
	})

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	build := func(file string) (*config.Config, *submit.Server, *relay.Runner) {
		t.Helper()
		cfg, res, err := loadAndOpen(file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		srv, runner, _, cleanup, err := buildMetered(cfg, res, log, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cleanup)
		return cfg, srv, runner
	}
	devCfg, dev, _ := build(st.configFile)
	cfg, srv, runner := build(filepath.Join(copied, "sealgate.yaml"))
	if cfg.Dir != copied || cfg.Relay.Outbox != filepath.Join(copied, "outbox") || cfg.DNS.ZoneFile != filepath.Join(copied, "example.test.zone") {
		t.Errorf("paths of the copy not relative to it: dir %s, outbox %s, zone %s", cfg.Dir, cfg.Relay.Outbox, cfg.DNS.ZoneFile)
	}

	// The same relay: listeners, limits (the configuration's defaults), identities, keys.
	want := submit.Limits{MaxMessageBytes: 25 << 20, MaxRecipients: 100, MaxConnections: 200, MaxConnectionsPerIP: 20,
		PreAuthTimeout: 30 * time.Second, MaxHeaderFields: 1000, CommandTimeout: 5 * time.Minute, DataTimeout: 10 * time.Minute}
	if dev.Limits != want || srv.Limits != want {
		t.Errorf("limits: dev %+v, config %+v; want the configuration defaults %+v", dev.Limits, srv.Limits, want)
	}
	describe := func(s *submit.Server, c *config.Config) string {
		var b strings.Builder
		fmt.Fprintf(&b, "host %s authserv %s\n", s.Hostname, s.Pipeline.AuthServID)
		for _, l := range s.Listeners {
			fmt.Fprintf(&b, "listener %s %s %s sasl=%v cert=%v net=%v tls=%v\n", l.Name, l.Address, l.Mode, l.SASL, l.ClientCert, l.Network, l.TLS != nil)
		}
		for _, n := range s.Networks {
			fmt.Fprintf(&b, "network %v %+v\n", n.Prefixes, *n.Identity)
		}
		id, err := s.Users.Authenticate(devLogin, st.password)
		if err != nil {
			t.Fatalf("demo login: %v", err)
		}
		fmt.Fprintf(&b, "user %+v\n", *id)
		for _, d := range s.Pipeline.KeyRing.Domains() {
			dk, _ := s.Pipeline.KeyRing.Lookup(d)
			fmt.Fprintf(&b, "domain %s subdomains=%v unsigned=%v", d, dk.SignSubdomains, dk.RelayUnsigned)
			for _, k := range dk.Keys {
				fmt.Fprintf(&b, " %s:%T", k.Selector, k.Signer.Public()) // the private half may be libcrypto's
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "arc %s %s %T\n", s.Pipeline.ARC.Domain, s.Pipeline.ARC.Selector, s.Pipeline.ARC.Signer.Public())
		return b.String()
	}
	got, wantDesc := describe(srv, cfg), describe(dev, devCfg)
	if got != wantDesc {
		t.Errorf("serve --config of the copy differs from serve --dev:\n%s\nwant:\n%s", got, wantDesc)
	}
	for _, line := range []string{
		"listener submission 127.0.0.1:0 submission sasl=true cert=false net=false tls=true",
		"listener submissions 127.0.0.1:0 submissions sasl=true cert=false net=false tls=true",
		"listener smarthost 127.0.0.1:0 smarthost sasl=false cert=false net=true tls=true",
		"network [127.0.0.1/32] {Name:smarthost-localhost Kind:client network MaySendAs:[*@example.test] AllowNullSender:true Seal:true RatePerMinute:0",
		"user {Name:demo@example.test Kind:login MaySendAs:[*@example.test] AllowNullSender:false Seal:true",
		"domain example.test subdomains=false unsigned=false rsa2026:*rsa.PublicKey ed2026:ed25519.PublicKey",
		"arc example.test arc2026 *rsa.PublicKey",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("relay built from the dev configuration lacks %q:\n%s", line, got)
		}
	}

	// Serve the copy and send a message through its smart host.
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go runner.Run(ctx)
	c, err := smtp.Dial(srv.Addrs()[2].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("demo@example.test", []string{"someone@example.net"},
		strings.NewReader("From: demo@example.test\r\nTo: someone@example.net\r\nSubject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	var eml []byte
	for deadline := time.Now().Add(10 * time.Second); eml == nil; {
		files, _ := filepath.Glob(filepath.Join(copied, "outbox", "*.eml"))
		if len(files) > 0 {
			eml, _ = os.ReadFile(files[0])
		} else if time.Now().After(deadline) {
			t.Fatal("no message in the outbox of the copy")
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if strings.Count(string(eml), "DKIM-Signature:") != 2 || !strings.Contains(string(eml), "ARC-Seal: i=1;") {
		t.Errorf("delivered message not signed and sealed:\n%s", eml)
	}
}

// With --config, a dev-only flag is an error naming it, not silently ignored.
func TestServeConfigRefusesDevFlags(t *testing.T) {
	for _, flag := range []string{"--dir=x", "--next-hop=127.0.0.1:25", "--submission-addr=127.0.0.1:0", "--submissions-addr=127.0.0.1:0", "--smarthost-addr=127.0.0.1:0"} {
		_, errOut, code := runCLI(t, "serve", "--config", "/nonexistent/sealgate.yaml", flag)
		name, _, _ := strings.Cut(flag, "=")
		if code != 2 || !strings.Contains(errOut, name+" is a dev-mode flag") {
			t.Errorf("serve --config %s: exit %d, %q", flag, code, errOut)
		}
	}
	_, errOut, code := runCLI(t, "serve", "--dev", "--config", "x.yaml")
	if code != 2 || !strings.Contains(errOut, "--config is not used with --dev") {
		t.Errorf("serve --dev --config: exit %d, %q", code, errOut)
	}
}

// The configuration's defaults are the submission side's.
func TestLimitsDefaultsAgree(t *testing.T) {
	for key, want := range map[string]any{
		"limits.max_connections_per_ip": submit.DefaultMaxConnectionsPerIP,
		"limits.pre_auth_timeout":       submit.DefaultPreAuthTimeout.String(),
		"limits.max_header_fields":      submit.DefaultMaxHeaderFields,
	} {
		got := config.Defaults[key]
		if d, ok := got.(string); ok {
			pd, _ := time.ParseDuration(d)
			got = pd.String()
		}
		if got != want {
			t.Errorf("config default %s = %v, submit's default %v", key, got, want)
		}
	}
}

// A 1024-bit key let in by min_rsa_bits is warned about at every start, and by config check.
func TestWeakKeyWarning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	st, err := prepareDev(dir, devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(weak)
	os.WriteFile(filepath.Join(dir, "keys", "rsa2026.example.test.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	yaml, _ := os.ReadFile(st.configFile)
	os.WriteFile(st.configFile, []byte(strings.Replace(string(yaml), "  - domain: example.test\n", "  - domain: example.test\n    min_rsa_bits: 1024\n", 1)), 0o600)

	cfg, res, err := loadAndOpen(st.configFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	_, _, _, cleanup, err := buildMetered(cfg, res, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	cleanup()
	if !strings.Contains(logs.String(), `level=WARN msg="signing with an RSA key under 2048 bits`) ||
		!strings.Contains(logs.String(), `key="domains[0].keys[0] (example.test s=rsa2026): RSA 1024 bits"`) {
		t.Errorf("no start-up warning about the 1024-bit key:\n%s", logs.String())
	}
	out, errOut, code := runCLI(t, "config", "check", "--config", st.configFile)
	if code != 0 || out != "OK\n" || !strings.Contains(errOut, "warning: domains[0].keys[0] (example.test s=rsa2026): RSA 1024 bits") {
		t.Errorf("config check: exit %d, %q, %q", code, out, errOut)
	}
}
