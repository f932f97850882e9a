package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sealgate/submit"
)

// TestBuildFromConfig loads a configuration naming real key, certificate and users files
// and checks the relay built from it answers on its listeners with what they are for.
func TestBuildFromConfig(t *testing.T) {
	dir := t.TempDir()
	st, err := prepareDev(filepath.Join(dir, "dev"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devUsers(st); err != nil {
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
arc:
  domain: example.test
  selector: arc2026
  key_file: %[5]s/arc2026.example.test.key
relay:
  outbox: %[1]s/outbox
`, dir, st.certFile, st.keyFile, st.usersFile, keyDir)
	file := filepath.Join(dir, "sealgate.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := submit.LoadConfig(file)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	srv, runner, cleanup, err := buildFromConfig(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("buildFromConfig: %v", err)
	}
	defer cleanup()
	if runner == nil || len(srv.Listeners) != 2 || len(srv.Networks) != 1 || srv.Users == nil {
		t.Fatalf("server: %d listeners, %d networks, users %v", len(srv.Listeners), len(srv.Networks), srv.Users != nil)
	}
	if ds := srv.Pipeline.Domains["example.test"]; ds == nil || len(ds.Keys) != 2 || srv.Pipeline.ARC == nil {
		t.Fatalf("signing configuration not built: %+v", srv.Pipeline)
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
	_, err = submit.LoadConfig(file)
	if err == nil || !strings.Contains(err.Error(), "listeners[1].mode") || !strings.Contains(err.Error(), "arc.selector") {
		t.Errorf("bad configuration: %v", err)
	}
}
