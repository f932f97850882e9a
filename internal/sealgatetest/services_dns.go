package sealgatetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// WriteZone writes the zone origin to dir/<origin>zone: an SOA, an NS ns.<origin> at 127.0.0.1,
// then records (master format; names relative to origin or absolute). It returns the path.
func WriteZone(dir, origin, records string) (string, error) {
	origin = strings.TrimSuffix(origin, ".") + "."
	zone := fmt.Sprintf("$ORIGIN %s\n$TTL 300\n@ IN SOA ns.%s hostmaster.%s 1 3600 600 86400 300\n@ IN NS ns.%s\nns IN A 127.0.0.1\n%s\n",
		origin, origin, origin, origin, records)
	path := filepath.Join(dir, origin+"zone")
	if err := os.WriteFile(path, []byte(zone), 0o600); err != nil {
		return "", fmt.Errorf("sealgatetest: write zone %s: %w", origin, err)
	}
	return path, nil
}

// SignZone signs the zone file path for origin with a new ECDSA P-256 KSK and ZSK (ldns-keygen,
// ldns-signzone with NSEC3; Debian package ldnsutils), written beside it. It returns the signed
// file and the KSK's DNSKEY record, the trust anchor a validating resolver needs for the zone.
// The keys are made at test time (a few milliseconds) and never kept.
func SignZone(path, origin string) (signed, trustAnchor string, err error) {
	keygen, err := lookTool("ldns-keygen", "ldnsutils")
	if err != nil {
		return "", "", err
	}
	signzone, err := lookTool("ldns-signzone", "ldnsutils")
	if err != nil {
		return "", "", err
	}
	dir := filepath.Dir(path)
	origin = strings.TrimSuffix(origin, ".")
	var keys []string
	for _, ksk := range []bool{true, false} {
		args := []string{"-a", "ECDSAP256SHA256", "-r", "/dev/urandom"}
		if ksk {
			args = append(args, "-k")
		}
		cmd := exec.Command(keygen, append(args, origin)...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			return "", "", fmt.Errorf("sealgatetest: ldns-keygen for %s: %w", origin, commandError(err))
		}
		keys = append(keys, filepath.Join(dir, strings.TrimSpace(string(out))))
	}
	cmd := exec.Command(signzone, append([]string{"-n", path}, keys...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("sealgatetest: ldns-signzone %s: %v\n%s", path, err, out)
	}
	dnskey, err := os.ReadFile(keys[0] + ".key")
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(dnskey), "\n") {
		if line, _, _ = strings.Cut(line, ";"); strings.Contains(line, "DNSKEY") {
			trustAnchor = strings.Join(strings.Fields(line), " ")
		}
	}
	if trustAnchor == "" {
		return "", "", fmt.Errorf("sealgatetest: no DNSKEY in %s.key", keys[0])
	}
	return path + ".signed", trustAnchor, nil
}

func commandError(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// NSD is an authoritative server (Debian package nsd) on a loopback port.
type NSD struct {
	*Service
	Addr string // 127.0.0.1:port, UDP and TCP
}

// StartNSD runs nsd in the foreground on a free loopback port, serving zones (origin: zone
// file), with its state in dir, and waits until it answers over TCP.
func StartNSD(dir string, zones map[string]string) (*NSD, error) {
	path, err := lookTool("nsd", "nsd")
	if err != nil {
		return nil, err
	}
	var zoneConf strings.Builder
	origins := make([]string, 0, len(zones))
	for o := range zones {
		origins = append(origins, o)
	}
	sort.Strings(origins)
	for _, o := range origins {
		fmt.Fprintf(&zoneConf, "zone:\n  name: %q\n  zonefile: %q\n", strings.TrimSuffix(o, "."), zones[o])
	}
	var last error
	for range 3 { // the free port may be taken in between: try another
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "nsd.conf")
		text := fmt.Sprintf(`server:
  ip-address: 127.0.0.1
  port: %d
  username: ""
  chroot: ""
  database: ""
  zonelistfile: %q
  xfrdfile: %q
  pidfile: ""
  logfile: %q
  zonesdir: %q
  server-count: 1
  do-ip6: no
  verbosity: 1
remote-control:
  control-enable: no
%s`, port, filepath.Join(dir, "nsd-zone.list"), filepath.Join(dir, "nsd-xfrd.state"),
			filepath.Join(dir, "nsd.log"), dir, zoneConf.String())
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		s, err := startService("nsd", path, "-d", "-c", conf)
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if last = s.WaitListening(addr, 10*time.Second); last == nil {
			return &NSD{Service: s, Addr: addr}, nil
		}
		log, _ := os.ReadFile(filepath.Join(dir, "nsd.log"))
		last = fmt.Errorf("%w\nnsd.log:\n%s", last, log)
		s.Stop()
	}
	return nil, last
}

// UnboundConfig is what StartUnbound's validating resolver knows.
type UnboundConfig struct {
	// Stubs sends the queries for each zone to an authoritative server (host:port).
	Stubs map[string]string
	// TrustAnchors are DNSKEY (or DS) records of the signed zones (SignZone). Zones under none
	// are insecure; there is no root trust anchor and no root hints (no internet).
	TrustAnchors []string
}

// Unbound is a validating recursive resolver (Debian package unbound) on a loopback port.
type Unbound struct {
	*Service
	Addr string // 127.0.0.1:port, UDP and TCP
}

// StartUnbound runs unbound in the foreground on a free loopback port, validating (module
// "validator iterator") with cfg's trust anchors and stub zones, its files in dir, and waits
// until it answers over TCP. RFC 6761's test. and invalid. are not answered locally.
func StartUnbound(dir string, cfg UnboundConfig) (*Unbound, error) {
	path, err := lookTool("unbound", "unbound")
	if err != nil {
		return nil, err
	}
	var extra strings.Builder
	for _, ta := range cfg.TrustAnchors {
		fmt.Fprintf(&extra, "  trust-anchor: %q\n", ta)
	}
	zones := make([]string, 0, len(cfg.Stubs))
	for z := range cfg.Stubs {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	var stubs strings.Builder
	for _, z := range zones {
		host, port, _ := strings.Cut(cfg.Stubs[z], ":")
		fmt.Fprintf(&stubs, "stub-zone:\n  name: %q\n  stub-addr: %s@%s\n", strings.TrimSuffix(z, "."), host, port)
	}
	var last error
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "unbound.conf")
		text := fmt.Sprintf(`server:
  interface: 127.0.0.1
  port: %d
  do-daemonize: no
  username: ""
  chroot: ""
  directory: %q
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  val-log-level: 2
  do-ip6: no
  num-threads: 1
  so-reuseport: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "validator iterator"
  root-hints: ""
  qname-minimisation: no
  local-zone: "test." nodefault
  local-zone: "invalid." nodefault
%sremote-control:
  control-enable: no
%s`, port, dir, extra.String(), stubs.String())
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		if check, err := lookTool("unbound-checkconf", "unbound"); err == nil {
			if out, err := exec.Command(check, conf).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("sealgatetest: unbound-checkconf %s: %v\n%s", conf, err, out)
			}
		}
		s, err := startService("unbound", path, "-d", "-c", conf)
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if last = s.WaitListening(addr, 10*time.Second); last == nil {
			return &Unbound{Service: s, Addr: addr}, nil
		}
		s.Stop()
	}
	return nil, last
}
