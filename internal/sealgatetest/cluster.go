package sealgatetest

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Several nodes behind HAProxy, for TestScaleOut and the load benchmark's scale-out
// pass: each node's directory is a copy of one dev directory (the same keys, users and
// certificate, as nodes mount the same secrets) with a configuration that differs only in
// hostname and ports (README "Running several nodes").

// CopyDevDir copies a dev directory's files, modes kept (keys stay 0600), without its
// spool, outbox and sockets.
func CopyDevDir(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if rel == "spool" || rel == "outbox" {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, info.Mode().Perm())
		case !info.Mode().IsRegular():
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, info.Mode().Perm())
	})
}

// Node is what NodeConfig changes in a dev configuration.
type Node struct {
	Hostname                     string
	Submission, SmartHost, Admin int      // 127.0.0.1 ports (submissions takes a free one)
	TrustedProxies               []string // on the submission and smarthost listeners
	ClientNetworks               []string // CIDRs added to the dev client network
	Redis                        string   // limits.shared.redis ("": none)
	Limits                       string   // more keys of limits, as YAML lines "  key: value\n"
}

// NodeConfig turns the sealgate.yaml that `serve --dev` wrote (every listener on
// 127.0.0.1:0) into node n's.
func NodeConfig(dev string, n Node) (string, error) {
	var bad []string
	replace := func(s, old, new string, count int) string {
		if got := strings.Count(s, old); got != count {
			bad = append(bad, fmt.Sprintf("%q found %d times, want %d", old, got, count))
		}
		return strings.ReplaceAll(s, old, new)
	}
	s := replace(dev, "hostname: relay.example.test\n", "hostname: "+n.Hostname+"\n", 1)
	s = replace(s, `address: "127.0.0.1:0"`, "address: PORT", 3)
	for _, p := range []int{n.Submission, 0, n.SmartHost} { // submission, submissions, smarthost
		s = strings.Replace(s, "address: PORT", fmt.Sprintf("address: \"127.0.0.1:%d\"", p), 1)
	}
	if len(n.TrustedProxies) > 0 {
		tp := "    trusted_proxies: [" + strings.Join(n.TrustedProxies, ", ") + "]\n"
		s = replace(s, "    mode: submission\n", "    mode: submission\n"+tp, 1)
		s = replace(s, "    mode: smarthost\n", "    mode: smarthost\n"+tp, 1)
	}
	if len(n.ClientNetworks) > 0 {
		s = replace(s, "cidrs: [127.0.0.1/32]", "cidrs: [127.0.0.1/32, "+strings.Join(n.ClientNetworks, ", ")+"]", 1)
	}
	s = replace(s, `listen: "127.0.0.1:0"`, fmt.Sprintf(`listen: "127.0.0.1:%d"`, n.Admin), 1)
	if len(bad) > 0 {
		return "", fmt.Errorf("sealgatetest: the dev configuration's layout changed: %s", strings.Join(bad, "; "))
	}
	s += "\nlimits:\n" + n.Limits
	if n.Redis != "" {
		s += "  shared:\n    redis: " + n.Redis + "\n"
	}
	return s, nil
}

// Frontend is one HAProxy frontend and the servers of its backend.
type Frontend struct {
	Name, Bind string
	Servers    []Server
}

// Server is a sealgate listener behind HAProxy, checked on its node's /readyz.
type Server struct {
	Name, Addr string
	CheckPort  int // the node's admin port
}

// HAProxyConfig is the shape of examples/haproxy.cfg on loopback: TCP mode, PROXY
// protocol v2 to every server, round robin, a /readyz check every 200ms (one failure
// takes a server out, one success brings it back), and a monitor listener on monitor
// with /ping and CSV statistics at /stats;csv.
func HAProxyConfig(monitor string, fes ...Frontend) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 4000
defaults
    mode tcp
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 2m
    timeout server 2m
    timeout check 1s
listen monitor
    mode http
    bind %s
    monitor-uri /ping
    stats enable
    stats uri /stats
`, monitor)
	for _, fe := range fes {
		fmt.Fprintf(&b, "frontend %s\n    bind %s\n    default_backend be_%s\n", fe.Name, fe.Bind, fe.Name)
		fmt.Fprintf(&b, "backend be_%s\n    balance roundrobin\n    option httpchk GET /readyz\n    http-check expect status 200\n", fe.Name)
		for _, s := range fe.Servers {
			fmt.Fprintf(&b, "    server %s %s send-proxy-v2 check port %d inter 200ms fall 1 rise 1\n", s.Name, s.Addr, s.CheckPort)
		}
	}
	return b.String()
}

// ServersUp reads HAProxy's statistics from the monitor listener and returns how many
// backend servers are UP.
func ServersUp(monitor string) (int, error) {
	resp, err := http.Get("http://" + monitor + "/stats;csv")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(body), "\n")
	cols := strings.Split(strings.TrimPrefix(lines[0], "# "), ",")
	status := -1
	for i, c := range cols {
		if c == "status" {
			status = i
		}
	}
	if status < 0 {
		return 0, fmt.Errorf("sealgatetest: no status column in haproxy's statistics: %.200s", body)
	}
	up := 0
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) > status && strings.HasPrefix(f[0], "be_") && f[1] != "BACKEND" && f[status] == "UP" {
			up++
		}
	}
	return up, nil
}
