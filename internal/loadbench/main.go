//go:build linux

// Command loadbench is sealgate's load benchmark (`make bench-load`).
//
// It starts the real relay as a subprocess,
//
//	SEALGATE serve --dev --dir DIR --submission-addr 127.0.0.1:0 --submissions-addr 127.0.0.1:0 \
//	    --smarthost-addr 127.0.0.1:0 --next-hop 127.0.0.1:PORT
//
// (through internal/sealgatetest, as the end-to-end tests do) in a fresh temporary directory
// (the durable spool is always on: each 250 only once the message is on disk), with PORT an
// SMTP sink that this program runs in-process (accepts everything, counts messages, notes
// when each arrived, discards bodies). It then drives -c concurrent clients for -duration (or -n messages) in each mode
// and message size:
//
//   - starttls-auth: the submission port, STARTTLS then AUTH PLAIN once per connection (the
//     relay forgets the session on STARTTLS, so AUTH comes after it), then a
//     MAIL/RCPT/DATA loop over the same connection (RSET only after a refused transaction:
//     after the final reply to DATA the server has already reset the transaction,
//     RFC 5321 §4.1.1.4, and go-smtp's client would follow each RSET with a new EHLO);
//   - smarthost: the smart-host port, no TLS and no AUTH (127.0.0.1 is a trusted network),
//     the same loop.
//
// Connections are opened (and authenticated) before the clock starts; reconnects after a 421
// or a broken connection happen inside the measured window.
//
// Each mode and size runs in two passes over the same relay, one after the other:
//
//  1. accept-only: the sink answers no MAIL command until released, so the relay's delivery
//     sessions (new ones after the greeting and EHLO, kept ones after their RSET) wait on
//     that reply, a blocked read that costs nothing; the relay accepts and spools, and
//     delivers nothing. Its CPU over the window (until the clients have quit) is acceptance
//     alone. The window is -duration, capped at 90 s (also with -n): the relay waits for a
//     reply for 2 minutes (its per-command timeout) and then defers the message a minute,
//     which would spoil the drain. Then the sink is released and the relay delivers the
//     backlog: the drain's messages per second and relay CPU per message (from the release
//     until the sink has every accepted message) are delivery alone, from a full queue.
//     The spool holds the whole window's messages meanwhile (-duration × msg/s × size on
//     disk).
//  2. end to end: the sink open, as a real next hop, as the benchmark always ran.
//
// A separate pass, rather than holding the sink for part of one, keeps each figure to one
// steady state: acceptance with delivery idle, and acceptance and delivery together.
//
// The two passes run on two relays, started side by side from the same dev configuration:
// the end-to-end relay as configured (flow control on: limits.in_flow_delay slows intake
// to what delivery achieves), and the accept-only relay with limits.in_flow_delay 0, since
// with the sink held its backlog only grows and flow control would slow acceptance to a
// trickle, which is not what that pass measures. -relay-cpuprofile profiles the
// end-to-end relay (with -scaleout, each node: FILE.direct, FILE.node-a, FILE.node-b).
//
// For each mode and size it prints, from the end-to-end pass: messages accepted (250) per
// second; accept latency p50 and p99, from the end of DATA (the final dot) to the 250; the
// relay process's CPU seconds per 1000 accepted messages (utime+stime from /proc/PID/stat,
// from the start of the window until the sink has received every accepted message, so
// delivery to the next hop is included); how many messages the sink received; and the
// ceiling set by the signatures alone. Beside it, from the accept-only pass: msg/s, accept
// latency and CPU per 1000 messages; what delivery adds per message,
// (end-to-end CPU - accept-only CPU) / accept-only CPU (the target is at most 25%); and the
// drain's rate and CPU.
//
// End-to-end latency is from the moment the client writes the final dot to the moment the
// sink has read it (the end of its DATA, before its 250), both on this process's monotonic
// clock: each message carries a unique X-Loadbench-Id header field, which the relay passes
// on, and the sink notes when each id arrived. p50 and p99 are over the end-to-end pass's
// accepted messages, those delivered after the window included.
//
// Backlog: during the end-to-end window, every second and at its end, accepted messages
// minus those the sink has received. Delivery "keeps up" when the least-squares slope of
// those samples (from the first second on: the first moments only fill the pipeline) is at
// most 2% of the intake rate, and "falls behind" when the backlog grows faster.
//
// -json prints all of it, with the backlog samples, as one document.
//
// The ceiling is measured in the same run, before the relay starts and again after it has
// stopped: the per-message signing cost is the CPU time (of the measuring thread, so time
// the machine gives to other guests or processes does not count) of 3 RSA-2048 PKCS#1 v1.5
// signatures (DKIM, ARC-Message-Signature, ARC-Seal) plus 1 Ed25519 signature, each over a
// 32-byte SHA-256 digest, with keys generated in-process, over -sign-iters iterations
// (median per iteration). The lower of the two medians is used: on a shared machine one of
// them may catch a busy moment, and the cheaper signing gives the higher, stricter ceiling.
// The ceiling is runtime.NumCPU() / that cost, and the report gives achieved msg/s as a
// percentage of it.
//
// That percentage understates the relay on a small machine: the load generator (TLS, message
// generation) and the sink run on the same cores as the relay, and other processes may too.
// So the report also gives the relay's CPU per message divided by the signing cost per
// message (RELAY/SIGN, 1.0 would mean the relay does nothing but sign) and its inverse as a
// percentage (SIGN SHARE): the fraction of the ceiling the relay would reach if it had every
// core to itself. Another table shows how the cores were shared during each end-to-end window (relay,
// load generator with sink, everything else, idle), from /proc/stat and /proc/PID/stat.
//
// Linux only (/proc). Example:
//
//	go build -o bin/sealgate ./cmd/sealgate && go run ./internal/loadbench -sealgate bin/sealgate -duration 20s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sealgate/internal/sealgatetest"
)

const (
	modeStartTLSAuth = "starttls-auth"
	modeSmartHost    = "smarthost"

	demoLogin = sealgatetest.DevLogin
	rcptTo    = "sink@example.net"
)

type options struct {
	sealgate   string
	conns      int
	duration   time.Duration
	total      int
	modes      []string
	sizes      []int
	signIters  int
	maxErrors  int
	baseDir    string
	keep       bool
	jsonOut    bool
	drainLimit time.Duration
	scaleOut   bool
}

func main() {
	var o options
	var modes, sizes string
	flag.StringVar(&o.sealgate, "sealgate", "bin/sealgate", "path to the sealgate binary (build it first: go build -o bin/sealgate ./cmd/sealgate)")
	// 32 by default: the relay is measured loaded. Each commit waits for an fdatasync
	// shared with the commits around it; with 16 sessions they are often all waiting at
	// once and the cores idle (about 5%), with 32 they rarely are.
	flag.IntVar(&o.conns, "c", 32, "concurrent client connections")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "measured window per mode and size (ignored with -n)")
	flag.IntVar(&o.total, "n", 0, "if > 0, send this many messages per mode and size instead of running for -duration")
	flag.StringVar(&modes, "modes", modeStartTLSAuth+","+modeSmartHost, "comma-separated modes: "+modeStartTLSAuth+", "+modeSmartHost)
	flag.StringVar(&sizes, "sizes", "2048,51200", "comma-separated message sizes in bytes")
	flag.IntVar(&o.signIters, "sign-iters", 200, "iterations of the in-process signing measurement")
	flag.IntVar(&o.maxErrors, "max-errors", 200, "abort a mode/size run after this many errors (non-250 replies, connection failures)")
	flag.StringVar(&o.baseDir, "dir", "", "parent of the relay's temporary state directory (default: the system temp dir); the spool's file system matters")
	flag.BoolVar(&o.keep, "keep", false, "keep the relay's state directory (spool, keys, relay.log) afterwards")
	flag.StringVar(&relayProfile, "relay-cpuprofile", "", "have the relay write a CPU profile of the run to this file (go tool pprof bin/sealgate FILE)")
	flag.BoolVar(&o.jsonOut, "json", false, "print the results as JSON instead of tables")
	flag.DurationVar(&o.drainLimit, "drain-timeout", 60*time.Second, "after each run, how long to wait for the sink to receive every accepted message")
	flag.BoolVar(&o.scaleOut, "scaleout", false, "instead: the smart-host mode end to end on one node direct, one node behind haproxy and two nodes behind haproxy, with Redis (needs haproxy and redis-server; see scaleout.go)")
	flag.Parse()
	if flag.NArg() != 0 {
		fatalf("unexpected arguments: %q", flag.Args())
	}
	for _, m := range splitList(modes) {
		if m != modeStartTLSAuth && m != modeSmartHost {
			fatalf("-modes: unknown mode %q (want %s or %s)", m, modeStartTLSAuth, modeSmartHost)
		}
		o.modes = append(o.modes, m)
	}
	for _, s := range splitList(sizes) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 512 || n > 20<<20 {
			fatalf("-sizes: %q is not a size between 512 and %d bytes", s, 20<<20)
		}
		o.sizes = append(o.sizes, n)
	}
	switch {
	case len(o.modes) == 0 || len(o.sizes) == 0:
		fatalf("-modes and -sizes must not be empty")
	case o.conns < 1:
		fatalf("-c must be at least 1")
	case o.total <= 0 && o.duration <= 0:
		fatalf("-duration must be positive (or use -n)")
	case o.signIters < 10:
		fatalf("-sign-iters must be at least 10")
	}
	if _, err := os.Stat(o.sealgate); err != nil {
		fatalf("-sealgate %s: %v (build it first: go build -o bin/sealgate ./cmd/sealgate)", o.sealgate, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runner := run
	if o.scaleOut {
		runner = runScaleOut
	}
	if err := runner(ctx, &o); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadbench: "+format+"\n", args...)
	os.Exit(2)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// report is everything printed, also the -json document.
type report struct {
	Cores        int          `json:"cores"`
	ClockTicks   int          `json:"clock_ticks_per_second"`
	SpoolFS      string       `json:"spool_filesystem"`
	Signing      signingCost  `json:"signing"`
	CeilingMsgPS float64      `json:"ceiling_msg_per_s"`
	Runs         []*runResult `json:"runs"`
	RelayExit    string       `json:"relay_exit"`
}

type signingCost struct {
	Iterations int `json:"iterations"`
	// MedianMS is the lower of the two medians: the cheaper signing, the higher ceiling.
	MedianMS  float64 `json:"median_ms_per_msg"`
	BeforeMS  float64 `json:"median_before_ms"` // measured before the relay started
	AfterMS   float64 `json:"median_after_ms"`  // measured after it stopped
	MeanMS    float64 `json:"mean_ms_per_msg"`
	RSAMS     float64 `json:"rsa2048_ms_each"`
	Ed25519MS float64 `json:"ed25519_ms_each"`
}

type runResult struct {
	Mode          string   `json:"mode"`
	Size          int      `json:"size_bytes"`
	Conns         int      `json:"connections"`
	WindowS       float64  `json:"window_s"`
	Accepted      int64    `json:"accepted"`
	Errors        int64    `json:"errors"`
	FirstErrors   []string `json:"first_errors,omitempty"`
	Aborted       string   `json:"aborted,omitempty"`
	MsgPerS       float64  `json:"msg_per_s"`
	P50MS         float64  `json:"accept_latency_p50_ms"`
	P99MS         float64  `json:"accept_latency_p99_ms"`
	RelayCPUPer1k float64  `json:"relay_cpu_s_per_1000"`
	SinkInWindow  int64    `json:"sink_received_in_window"`
	SinkTotal     int64    `json:"sink_received_after_drain"`
	DrainS        float64  `json:"drain_s"`
	PctCeiling    float64  `json:"pct_of_ceiling"`
	RelayOverSign float64  `json:"relay_cpu_over_signing"`
	SignSharePct  float64  `json:"signing_share_of_relay_cpu_pct"`
	RelayCores    float64  `json:"relay_cores_busy"`
	LoadgenCores  float64  `json:"loadgen_cores_busy"`
	OtherCores    float64  `json:"other_cores_busy"`
	IdleCores     float64  `json:"idle_cores"`

	// The end-to-end pass's delivery: latency from the client's final dot to the sink's
	// end of DATA, over the accepted messages the sink received (E2EMessages of them).
	E2EMessages int64   `json:"e2e_latency_messages"`
	E2EP50MS    float64 `json:"e2e_latency_p50_ms"`
	E2EP99MS    float64 `json:"e2e_latency_p99_ms"`
	// Backlog: accepted minus received by the sink, each second of the window and at its
	// end; its trend (least squares, messages per second) and whether delivery kept up.
	Backlog        []backlogSample `json:"backlog_samples"`
	BacklogEnd     int64           `json:"backlog_at_window_end"`
	BacklogMax     int64           `json:"backlog_max"`
	BacklogTrend   float64         `json:"backlog_trend_msg_per_s"`
	BacklogVerdict string          `json:"backlog_verdict"`

	// AcceptOnly is the pass with the sink held: acceptance alone, then the drain.
	AcceptOnly *acceptOnlyResult `json:"accept_only"`
	// DeliveryCPUPct is what delivery adds to the relay's CPU per message:
	// (RelayCPUPer1k - AcceptOnly.RelayCPUPer1k) / AcceptOnly.RelayCPUPer1k, in %.
	DeliveryCPUPct       float64 `json:"delivery_cpu_over_accept_pct"`
	DeliveryWithinTarget bool    `json:"delivery_cpu_within_25pct"`
}

// acceptOnlyResult is the accept-only pass of a mode and size: the window with the sink
// held (the relay accepts and spools, delivers nothing), then the drain once released.
type acceptOnlyResult struct {
	WindowS     float64  `json:"window_s"`
	Accepted    int64    `json:"accepted"`
	Errors      int64    `json:"errors"`
	FirstErrors []string `json:"first_errors,omitempty"`
	MsgPerS     float64  `json:"msg_per_s"`
	P50MS       float64  `json:"accept_latency_p50_ms"`
	P99MS       float64  `json:"accept_latency_p99_ms"`
	// RelayCPUPer1k: from the start of the window until the clients have quit.
	RelayCPUPer1k float64 `json:"relay_cpu_s_per_1000"`
	RelayCores    float64 `json:"relay_cores_busy"`
	// SinkInWindow should be 0: the sink was held.
	SinkInWindow int64 `json:"sink_received_in_window"`
	// The drain: from the release until the sink had every accepted message.
	SinkTotal     int64   `json:"sink_received_after_drain"`
	DrainS        float64 `json:"drain_s"`
	DrainMsgPerS  float64 `json:"drain_msg_per_s"`
	DrainCPUPer1k float64 `json:"drain_relay_cpu_s_per_1000"`
}

func run(ctx context.Context, o *options) error {
	rep := &report{Cores: runtime.NumCPU(), ClockTicks: clockTicks()}

	// 1. The ceiling, measured before the relay exists so it competes with nothing of ours.
	if !o.jsonOut {
		fmt.Printf("measuring signing cost (%d iterations of 3×RSA-2048 + 1×Ed25519)...\n", o.signIters)
	}
	sc, err := measureSigning(o.signIters)
	if err != nil {
		return err
	}
	sc.BeforeMS = sc.MedianMS

	// 2. The sink.
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.close()

	// 3. The relay.
	base, err := os.MkdirTemp(o.baseDir, "sealgate-loadbench-")
	if err != nil {
		return err
	}
	if o.keep {
		defer fmt.Fprintf(os.Stderr, "loadbench: relay state kept in %s\n", base)
	} else {
		defer os.RemoveAll(base)
	}
	rep.SpoolFS = fsType(base)
	rl, err := startRelay(o.sealgate, base, "", sink.addr, o.conns, relayProfile)
	if err != nil {
		return err
	}
	defer rl.stop() // on error paths; a no-op once the relay has exited
	ra, err := startRelay(o.sealgate, base, "accept", sink.addr, o.conns, "", "SEALGATE_LIMITS_IN_FLOW_DELAY=0")
	if err != nil {
		return err
	}
	defer ra.stop()
	if !o.jsonOut {
		fmt.Printf("relay pid %d: submission %s, smarthost %s, next hop (sink) %s, state %s (%s)\n",
			rl.PID(), rl.Submission, rl.SmartHost, sink.addr, base, rep.SpoolFS)
		fmt.Printf("accept-only relay pid %d (limits.in_flow_delay 0): submission %s, smarthost %s\n",
			ra.PID(), ra.Submission, ra.SmartHost)
		if rep.SpoolFS == "tmpfs" {
			fmt.Println("WARNING: the spool is on tmpfs, where fsync costs nothing; use -dir on a real disk")
		}
	}

	// 4. The runs.
	for _, mode := range o.modes {
		for _, size := range o.sizes {
			if ctx.Err() != nil {
				break
			}
			if !o.jsonOut {
				fmt.Printf("running %s, %d bytes, %d connections...\n", mode, size, o.conns)
			}
			r, err := loadRun(ctx, o, ra, rl, sink, mode, size)
			if err != nil {
				return fmt.Errorf("%s %d bytes: %w (relay logs: %s, %s)", mode, size, err, rl.logPath, ra.logPath)
			}
			rep.Runs = append(rep.Runs, r)
			if !o.jsonOut {
				if r.AcceptOnly != nil {
					for _, e := range r.AcceptOnly.FirstErrors {
						fmt.Println("  error (accept-only pass):", e)
					}
				}
				for _, e := range r.FirstErrors {
					fmt.Println("  error:", e)
				}
				if r.Aborted != "" {
					fmt.Println("  ABORTED:", r.Aborted)
				}
			}
		}
	}

	// 5. Stop the relay: SIGTERM, then wait.
	rep.RelayExit = rl.stop()
	ra.stop()

	// 6. The signing cost again, now that nothing of ours runs. On a shared machine one
	// measurement may catch a busy moment; the cheaper of the two gives the higher, so
	// stricter, ceiling.
	after, err := measureSigning(o.signIters)
	if err != nil {
		return err
	}
	sc.AfterMS = after.MedianMS
	if after.MedianMS < sc.MedianMS {
		sc.MedianMS, sc.MeanMS, sc.RSAMS, sc.Ed25519MS = after.MedianMS, after.MeanMS, after.RSAMS, after.Ed25519MS
	}
	rep.Signing = sc
	rep.CeilingMsgPS = float64(rep.Cores) / (sc.MedianMS / 1000)
	for i := range rep.Runs {
		if r := rep.Runs[i]; r.Accepted > 0 {
			r.PctCeiling = 100 * r.MsgPerS / rep.CeilingMsgPS
			// CPU seconds per 1000 messages = CPU ms per message.
			r.RelayOverSign = r.RelayCPUPer1k / sc.MedianMS
			r.SignSharePct = 100 * sc.MedianMS / r.RelayCPUPer1k
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(rep)
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	for _, r := range rep.Runs {
		if r.Aborted != "" || r.Accepted == 0 || r.AcceptOnly == nil || r.AcceptOnly.Accepted == 0 {
			return fmt.Errorf("%s %d bytes: run failed", r.Mode, r.Size)
		}
	}
	return nil
}
