//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"sealgate/internal/sealgatetest"
)

// The scale-out pass (-scaleout): the smart-host mode, end to end, in three
// topologies one after the other on the same sink and the same dev configuration:
//
//  1. direct: one node, clients straight to its smart-host port, no Redis (the baseline);
//  2. haproxy-1: one node behind HAProxy (send-proxy-v2), limits.shared on Redis;
//  3. haproxy-2: two nodes behind HAProxy, both on the same Redis.
//
// The clients connect from 127.0.0.2 (a client network; 127.0.0.1 is the proxy the nodes
// trust). For each it prints msg/s and CPU seconds per 1000 messages of the nodes, of
// HAProxy and Redis, and of all of them, from the start of the window until the sink has
// every accepted message; and each topology's total over the direct one's. With 2 cores
// no speed-up is expected from a second node: the point is the cost of the balancer and
// of Redis per message.

type scaleOutResult struct {
	Topology      string  `json:"topology"`
	Size          int     `json:"size"`
	Accepted      int64   `json:"accepted"`
	Errors        int64   `json:"errors"`
	MsgPerS       float64 `json:"msg_per_s"`
	NodesCPUPer1k float64 `json:"nodes_cpu_s_per_1000"`
	ProxyCPUPer1k float64 `json:"haproxy_redis_cpu_s_per_1000"`
	TotalCPUPer1k float64 `json:"total_cpu_s_per_1000"`
	OverDirectPct float64 `json:"total_over_direct_pct"`
	Aborted       string  `json:"aborted,omitempty"`
}

type scaleNodeProc struct {
	*relayProc
	name         string
	smart, admin int
}

func runScaleOut(ctx context.Context, o *options) error {
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.close()
	base, err := os.MkdirTemp(o.baseDir, "sealgate-loadbench-scaleout-")
	if err != nil {
		return err
	}
	if o.keep {
		defer fmt.Fprintf(os.Stderr, "loadbench: state kept in %s\n", base)
	} else {
		defer os.RemoveAll(base)
	}
	redis, err := sealgatetest.StartRedis(base)
	if err != nil {
		return err
	}
	defer redis.Stop()

	// One dev directory, written by a dev relay that is stopped at once; the nodes run on
	// copies of it.
	gen, err := startRelay(o.sealgate, base, "gen", sink.addr, o.conns, "")
	if err != nil {
		return err
	}
	gen.stop()
	devDir := filepath.Join(base, "dev-gen")
	devYAML, err := os.ReadFile(filepath.Join(devDir, "sealgate.yaml"))
	if err != nil {
		return err
	}
	limits := fmt.Sprintf("  max_connections_per_ip: %d\n", o.conns+8)
	start := func(name, redisURL string, trusted []string) (*scaleNodeProc, error) {
		dir := filepath.Join(base, name)
		if err := sealgatetest.CopyDevDir(devDir, dir); err != nil {
			return nil, err
		}
		var ports [3]int
		for i := range ports {
			if ports[i], err = sealgatetest.FreePort(); err != nil {
				return nil, err
			}
		}
		cfg, err := sealgatetest.NodeConfig(string(devYAML), sealgatetest.Node{Hostname: name + ".example.test",
			Submission: ports[0], SmartHost: ports[1], Admin: ports[2], TrustedProxies: trusted,
			ClientNetworks: []string{"127.0.0.2/32"}, Redis: redisURL, Limits: limits})
		if err != nil {
			return nil, err
		}
		file := filepath.Join(dir, "sealgate.yaml")
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		logPath := filepath.Join(base, name+".log")
		logFile, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		var args []string
		if relayProfile != "" { // -relay-cpuprofile: one profile per node, FILE.NODE
			args = []string{"--cpuprofile", relayProfile + "." + name}
		}
		r, err := sealgatetest.Start(sealgatetest.Options{Binary: o.sealgate, Dir: dir, Config: file, Log: logFile, Args: args})
		if err != nil {
			logFile.Close()
			return nil, fmt.Errorf("%w\nits log ends:\n%s", err, tail(logPath, 20))
		}
		return &scaleNodeProc{relayProc: &relayProc{Relay: r, logPath: logPath, logFile: logFile}, name: name, smart: ports[1], admin: ports[2]}, nil
	}
	solo, err := start("direct", "", nil)
	if err != nil {
		return err
	}
	defer solo.stop()
	proxied := []string{"127.0.0.1/32"}
	a, err := start("node-a", redis.URL(), proxied)
	if err != nil {
		return err
	}
	defer a.stop()
	b, err := start("node-b", redis.URL(), proxied)
	if err != nil {
		return err
	}
	defer b.stop()
	balancer := func(name string, nodes ...*scaleNodeProc) (*sealgatetest.HAProxy, string, error) {
		ports := [2]int{}
		for i := range ports {
			if ports[i], err = sealgatetest.FreePort(); err != nil {
				return nil, "", err
			}
		}
		fe := sealgatetest.Frontend{Name: "smarthost", Bind: "127.0.0.1:" + strconv.Itoa(ports[0])}
		for _, n := range nodes {
			fe.Servers = append(fe.Servers, sealgatetest.Server{Name: n.name, Addr: "127.0.0.1:" + strconv.Itoa(n.smart), CheckPort: n.admin})
		}
		mon := "127.0.0.1:" + strconv.Itoa(ports[1])
		dir := filepath.Join(base, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, "", err
		}
		h, err := sealgatetest.StartHAProxy(dir, sealgatetest.HAProxyConfig(mon, fe), mon)
		if err != nil {
			return nil, "", err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if up, _ := sealgatetest.ServersUp(mon); up == len(nodes) {
				break
			}
			if time.Now().After(deadline) {
				h.Stop()
				return nil, "", fmt.Errorf("haproxy %s: its servers never came up:\n%s", name, h.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return h, fe.Bind, nil
	}
	ha1, ha1Addr, err := balancer("haproxy-1", a)
	if err != nil {
		return err
	}
	defer ha1.Stop()
	ha2, ha2Addr, err := balancer("haproxy-2", a, b)
	if err != nil {
		return err
	}
	defer ha2.Stop()

	pid := func(s *sealgatetest.Service) int { return s.PID() }
	topologies := []struct {
		name  string
		addr  string
		nodes []int
		extra []int // haproxy and redis
		check []*scaleNodeProc
	}{
		{"direct", solo.SmartHost, []int{solo.PID()}, nil, []*scaleNodeProc{solo}},
		{"haproxy-1", ha1Addr, []int{a.PID()}, []int{pid(ha1.Service), pid(redis.Service)}, []*scaleNodeProc{a}},
		{"haproxy-2", ha2Addr, []int{a.PID(), b.PID()}, []int{pid(ha2.Service), pid(redis.Service)}, []*scaleNodeProc{a, b}},
	}
	clk := float64(clockTicks())
	var results []scaleOutResult
	for _, size := range o.sizes {
		var direct float64
		for _, tp := range topologies {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !o.jsonOut {
				fmt.Printf("running scale-out %s, %d bytes, %d connections...\n", tp.name, size, o.conns)
			}
			all := append(append([]int{}, tp.nodes...), tp.extra...)
			tg := target{smartHost: tp.addr, local: "127.0.0.2", pids: all}
			nodes0, err := snapshot(tp.nodes...)
			if err != nil {
				return err
			}
			p, err := drive(ctx, o, tg, sink, modeSmartHost, size, 0)
			if err != nil {
				return fmt.Errorf("scale-out %s: %w", tp.name, err)
			}
			r := scaleOutResult{Topology: tp.name, Size: size, Accepted: p.accepted, Errors: p.errors, Aborted: p.aborted}
			if err := awaitSink(ctx, tp.check[0].relayProc, sink, p.sink0, p.accepted, o.drainLimit); err != nil {
				return err
			}
			end, err := snapshot(all...)
			if err != nil {
				return err
			}
			nodes1, err := snapshot(tp.nodes...)
			if err != nil {
				return err
			}
			sink.takeArrivals()
			if got := sink.count() - p.sink0; got < p.accepted && r.Aborted == "" {
				r.Aborted = fmt.Sprintf("the sink received %d of %d messages within -drain-timeout %v", got, p.accepted, o.drainLimit)
			}
			r.MsgPerS = float64(p.accepted) / p.t1.Sub(p.t0).Seconds()
			if p.accepted > 0 {
				per1k := func(ticks int64) float64 { return float64(ticks) / clk / float64(p.accepted) * 1000 }
				r.TotalCPUPer1k = per1k(end.relay - p.s0.relay)
				r.NodesCPUPer1k = per1k(nodes1.relay - nodes0.relay)
				r.ProxyCPUPer1k = r.TotalCPUPer1k - r.NodesCPUPer1k
			}
			if tp.name == "direct" {
				direct = r.TotalCPUPer1k
			} else if direct > 0 {
				r.OverDirectPct = 100 * (r.TotalCPUPer1k - direct) / direct
			}
			results = append(results, r)
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"scale_out": results, "conns": o.conns})
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "topology\tsize\taccepted\terrors\tmsg/s\tnodes CPU s/1000\thaproxy+redis CPU s/1000\ttotal CPU s/1000\ttotal vs direct\t")
	for _, r := range results {
		over := "-"
		if r.Topology != "direct" {
			over = fmt.Sprintf("%+.1f%%", r.OverDirectPct)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%s\t\n", r.Topology, sizeLabel(r.Size), r.Accepted, r.Errors,
			r.MsgPerS, r.NodesCPUPer1k, r.ProxyCPUPer1k, r.TotalCPUPer1k, over)
	}
	w.Flush()
	for _, r := range results {
		if r.Aborted != "" || r.Accepted == 0 {
			return fmt.Errorf("scale-out %s %d bytes: run failed: %s", r.Topology, r.Size, r.Aborted)
		}
	}
	return nil
}
