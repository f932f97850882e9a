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
// end-to-end relay.
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
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/sys/unix"

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
	if err := run(ctx, &o); err != nil {
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

// ---- signing cost ----

// measureSigning measures the CPU time (CLOCK_THREAD_CPUTIME_ID, on a locked thread, so
// time the machine gives to others does not count, as it does not in the relay's
// utime+stime) of the four signatures of one message.
func measureSigning(iters int) (signingCost, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return signingCost{}, err
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return signingCost{}, err
	}
	// Distinct digests per signature, as for distinct header sets.
	var digests [4][32]byte
	one := func(i int) error {
		for k := range digests {
			digests[k] = sha256.Sum256([]byte(fmt.Sprintf("message %d signature %d", i, k)))
		}
		for k := range 3 {
			if _, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, digests[k][:]); err != nil {
				return err
			}
		}
		// DKIM ed25519-sha256 (RFC 8463) signs the SHA-256 hash of the header data.
		_ = ed25519.Sign(edKey, digests[3][:])
		return nil
	}
	for i := range 10 { // warm up
		if err := one(i); err != nil {
			return signingCost{}, err
		}
	}
	per := make([]time.Duration, iters)
	var total time.Duration
	for i := range iters {
		t := threadCPU()
		if err := one(i); err != nil {
			return signingCost{}, err
		}
		per[i] = threadCPU() - t
		total += per[i]
	}
	slices.Sort(per)
	// Component split, for the report only.
	t := threadCPU()
	for range 50 {
		rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, digests[0][:])
	}
	rsaEach := (threadCPU() - t) / 50
	t = threadCPU()
	for range 500 {
		ed25519.Sign(edKey, digests[3][:])
	}
	edEach := (threadCPU() - t) / 500
	return signingCost{
		Iterations: iters,
		MedianMS:   ms(per[len(per)/2]),
		MeanMS:     ms(total / time.Duration(iters)),
		RSAMS:      ms(rsaEach),
		Ed25519MS:  ms(edEach),
	}, nil
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err) // Linux has had this clock since 2.6.12
	}
	return time.Duration(ts.Nano())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ---- sink ----

// sink is the relay's next hop: an SMTP server that accepts everything, counts the
// messages it receives, notes when each loadbench message (by its idHeader) arrived, and
// discards them. While held (hold, until release) it answers no MAIL command: the relay's
// delivery sessions, new (after the greeting and EHLO) and kept ones alike, wait on that
// reply, which costs the relay a blocked read and nothing else.
type sink struct {
	srv      *smtp.Server
	addr     string
	received atomic.Int64

	mu       sync.Mutex
	stalled  chan struct{} // non-nil while held; closed by release
	arrivals map[string]time.Time
}

// idHeader carries each message's id from the load client to the sink, through the relay
// (which adds its own header fields above it and changes none of ours).
const idHeader = "X-Loadbench-Id:"

func startSink() (*sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s := &sink{addr: l.Addr().String(), arrivals: map[string]time.Time{}}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "sink.loadbench.test"
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxMessageBytes = 64 << 20
	s.srv.MaxRecipients = 1000
	s.srv.ErrorLog = discardLog{}
	go s.srv.Serve(l)
	return s, nil
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession{s}, nil }
func (s *sink) count() int64                                { return s.received.Load() }
func (s *sink) close()                                      { s.release(); s.srv.Close() }

// hold makes every MAIL command wait until release.
func (s *sink) hold() {
	s.mu.Lock()
	if s.stalled == nil {
		s.stalled = make(chan struct{})
	}
	s.mu.Unlock()
}

func (s *sink) release() {
	s.mu.Lock()
	if s.stalled != nil {
		close(s.stalled)
		s.stalled = nil
	}
	s.mu.Unlock()
}

func (s *sink) waitReleased() {
	s.mu.Lock()
	ch := s.stalled
	s.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// takeArrivals returns the arrival time of each message id received since the last call.
func (s *sink) takeArrivals() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.arrivals
	s.arrivals = map[string]time.Time{}
	return a
}

type sinkSession struct{ s *sink }

func (sinkSession) Reset()        {}
func (sinkSession) Logout() error { return nil }

func (ss sinkSession) Mail(string, *smtp.MailOptions) error {
	ss.s.waitReleased()
	return nil
}

func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

// Data reads the header for idHeader, discards the rest, and notes the arrival time: the
// end of DATA (the reader ends at the final dot), just before the sink's 250.
func (ss sinkSession) Data(r io.Reader) error {
	br := bufio.NewReader(r)
	var id string
	cont := false // the previous read ended inside an over-long line
	for {
		line, err := br.ReadSlice('\n')
		if !cont {
			if err == nil && len(bytes.TrimRight(line, "\r\n")) == 0 {
				break // the blank line ending the header
			}
			if len(line) >= len(idHeader) && bytes.EqualFold(line[:len(idHeader)], []byte(idHeader)) {
				id = string(bytes.TrimSpace(line[len(idHeader):]))
			}
		}
		cont = err == bufio.ErrBufferFull
		if err == io.EOF {
			break
		}
		if err != nil && !cont {
			return err
		}
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	now := time.Now()
	if id != "" {
		ss.s.mu.Lock()
		ss.s.arrivals[id] = now
		ss.s.mu.Unlock()
	}
	ss.s.received.Add(1)
	return nil
}

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}

// ---- relay subprocess ----

// relayProc is the relay subprocess (internal/sealgatetest) and the file its log goes to.
type relayProc struct {
	*sealgatetest.Relay
	logPath string
	logFile *os.File
}

// relayProfile is the -relay-cpuprofile flag.
var relayProfile string

// startRelay runs `SEALGATE serve --dev` in base/dev (base/dev-NAME) with every listener on
// a free port and the sink as next hop, and waits until it logs its listening addresses.
// Its log (stdout and stderr) goes to base/relay.log (relay-NAME.log). extraEnv is added
// to its environment; profile, when set, is where it writes a CPU profile.
func startRelay(bin, base, name, nextHop string, conns int, profile string, extraEnv ...string) (*relayProc, error) {
	dir, logName := "dev", "relay.log"
	if name != "" {
		dir, logName = "dev-"+name, "relay-"+name+".log"
	}
	logPath := filepath.Join(base, logName)
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"--next-hop", nextHop}
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	// Every load client connects from 127.0.0.1: raise the per-address connection limit
	// (20 by default, a defence against one client taking every slot) above the load.
	env := append([]string{fmt.Sprintf("SEALGATE_LIMITS_MAX_CONNECTIONS_PER_IP=%d", conns+8)}, extraEnv...)
	r, err := sealgatetest.Start(sealgatetest.Options{Binary: bin, Dir: filepath.Join(base, dir), Args: args, Log: logFile, Env: env})
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%w\nits log ends:\n%s", err, tail(logPath, 20))
	}
	return &relayProc{Relay: r, logPath: logPath, logFile: logFile}, nil
}

// stop sends SIGTERM, waits for the relay to exit (it lets sessions and deliveries in
// flight end, up to 30 s) and describes how it ended; after 45 s it is killed.
func (rl *relayProc) stop() string {
	defer rl.logFile.Close() // every line is written once the relay has exited
	if rl.Exited() {
		return fmt.Sprintf("had already exited: %v", rl.WaitErr())
	}
	t := time.Now()
	status := "exit status 0"
	if err := rl.Stop(45 * time.Second); err != nil {
		status = err.Error()
	}
	return fmt.Sprintf("%s, %.0f ms after SIGTERM", status, ms(time.Since(t)))
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// ---- /proc ----

// clockTicks is the unit of the CPU times in /proc (USER_HZ), from `getconf CLK_TCK`. It
// is 100 on every Linux architecture Go supports, which is the fallback.
func clockTicks() int {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

// procCPU returns utime+stime of a process in clock ticks ("self" for this one).
func procCPU(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ... : comm may hold spaces and parentheses, so cut at the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%s/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%s/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%s/stat: unexpected format", pid)
	}
	return utime + stime, nil
}

// systemCPU returns the whole machine's busy and idle (idle+iowait) time in clock ticks,
// summed over all CPUs, from /proc/stat.
func systemCPU() (busy, idle int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: unexpected format")
	}
	// user nice system idle iowait irq softirq steal (guest time is already in user).
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, errors.New("/proc/stat: unexpected format")
		}
		if i == 3 || i == 4 {
			idle += n
		} else {
			busy += n
		}
	}
	return busy, idle, nil
}

type cpuSnap struct {
	relay, self, busy, idle int64
}

func snapshot(relayPID int) (cpuSnap, error) {
	var s cpuSnap
	var err error
	if s.relay, err = procCPU(strconv.Itoa(relayPID)); err != nil {
		return s, fmt.Errorf("relay CPU: %w", err)
	}
	if s.self, err = procCPU("self"); err != nil {
		return s, err
	}
	s.busy, s.idle, err = systemCPU()
	return s, err
}

// fsType names the file system holding dir, for the report (fsync cost depends on it).
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown file system"
	}
	switch uint32(st.Type) {
	case 0x01021994:
		return "tmpfs"
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794C7630:
		return "overlayfs"
	case 0x2FC12FC1:
		return "zfs"
	}
	return fmt.Sprintf("file system type %#x", uint32(st.Type))
}

// ---- load ----

// plainAuth is a SASL PLAIN client (RFC 4616) for smtp.Client.Auth.
type plainAuth struct{ user, pass string }

func (a plainAuth) Start() (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

func (plainAuth) Next([]byte) ([]byte, error) {
	return nil, errors.New("unexpected SASL PLAIN challenge")
}

// messageMaker builds messages of about size bytes (within one body line), each with its
// own Message-ID and idHeader.
type messageMaker struct {
	body []byte
	seq  atomic.Int64
	tag  string
}

func newMessageMaker(mode string, size int) *messageMaker {
	m := &messageMaker{tag: fmt.Sprintf("%s-%d-%d", mode, size, time.Now().UnixNano())}
	hdrLen := len(m.header(0))
	const line = "The quick brown fox jumps over the lazy dog, 0123456789 times, for the load test.\r\n"
	var b strings.Builder
	for i := 0; hdrLen+b.Len()+len(line) <= size; i++ {
		b.WriteString(line)
	}
	m.body = []byte(b.String())
	return m
}

func (m *messageMaker) id(n int64) string { return m.tag + "." + strconv.FormatInt(n, 10) }

func (m *messageMaker) header(n int64) string {
	return fmt.Sprintf("From: Demo <%s>\r\nTo: <%s>\r\nSubject: sealgate load test %d\r\n"+
		"Date: %s\r\nMessage-ID: <%s@loadbench.example.test>\r\n%s %s\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n",
		demoLogin, rcptTo, n, time.Now().Format(time.RFC1123Z), m.id(n), idHeader, m.id(n))
}

// next returns the next message and its id (the idHeader value).
func (m *messageMaker) next() (string, []byte) {
	n := m.seq.Add(1)
	h := m.header(n)
	msg := make([]byte, 0, len(h)+len(m.body))
	return m.id(n), append(append(msg, h...), m.body...)
}

// runState is what the workers of one pass share.
type runState struct {
	o        *options
	mode     string
	addr     string
	password string
	msgs     *messageMaker
	tickets  atomic.Int64 // with -n: messages left to send
	deadline time.Time    // zero: none (-n without a cap)
	ctx      context.Context
	abort    context.CancelCauseFunc
	accepted atomic.Int64
	failed   atomic.Int64
	mu       sync.Mutex
	firstErr []string
}

func (rs *runState) dial() (*smtp.Client, error) {
	var c *smtp.Client
	var err error
	if rs.mode == modeStartTLSAuth {
		// The dev certificate is self-signed.
		c, err = smtp.DialStartTLS(rs.addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return nil, fmt.Errorf("connect+STARTTLS: %w", err)
		}
		// STARTTLS reset the session: authenticate now, once for the connection.
		if err = c.Auth(plainAuth{demoLogin, rs.password}); err != nil {
			c.Close()
			return nil, fmt.Errorf("AUTH PLAIN: %w", err)
		}
	} else {
		c, err = smtp.Dial(rs.addr)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		if err = c.Hello("localhost"); err != nil {
			c.Close()
			return nil, fmt.Errorf("EHLO: %w", err)
		}
	}
	c.CommandTimeout = 30 * time.Second
	c.SubmissionTimeout = 60 * time.Second
	return c, nil
}

func (rs *runState) more() bool {
	if rs.ctx.Err() != nil {
		return false
	}
	if !rs.deadline.IsZero() && !time.Now().Before(rs.deadline) {
		return false
	}
	if rs.o.total > 0 {
		return rs.tickets.Add(-1) >= 0
	}
	return true
}

// fail counts a non-250 reply or a connection error and keeps the first few.
func (rs *runState) fail(conn int, stage string, err error) {
	n := rs.failed.Add(1)
	rs.mu.Lock()
	if len(rs.firstErr) < 5 {
		rs.firstErr = append(rs.firstErr, fmt.Sprintf("connection %d, %s: %v", conn, stage, err))
	}
	rs.mu.Unlock()
	if n >= int64(rs.o.maxErrors) {
		rs.abort(fmt.Errorf("%d errors (-max-errors)", n))
	}
}

// send runs one MAIL/RCPT/DATA transaction. dot is when the client wrote the end of DATA
// (the final dot); lat is the time from then to the 250 (zero if there was none). No RSET
// after it: the transaction ended with the reply to DATA (RFC 5321 §4.1.1.4), and go-smtp's
// Client.Reset also makes the next MAIL send EHLO again, two round trips per message that
// real clients do not make.
func send(c *smtp.Client, msg []byte) (dot time.Time, lat time.Duration, stage string, err error) {
	if err = c.Mail(demoLogin, nil); err != nil {
		return dot, 0, "MAIL", err
	}
	if err = c.Rcpt(rcptTo, nil); err != nil {
		return dot, 0, "RCPT", err
	}
	w, err := c.Data()
	if err != nil {
		return dot, 0, "DATA", err
	}
	if _, err = w.Write(msg); err != nil {
		return dot, 0, "message body", err
	}
	dot = time.Now()
	if err = w.Close(); err != nil { // writes the final dot, reads the reply
		return dot, 0, "end of DATA", err
	}
	return dot, time.Since(dot), "", nil
}

// sentMsg is an accepted message: its id and when the client wrote its final dot.
type sentMsg struct {
	id  string
	dot time.Time
}

// workerResult is what one client connection did in a pass.
type workerResult struct {
	c    *smtp.Client // the connection it ended with, nil if none
	lats []time.Duration
	sent []sentMsg
}

// worker sends on its connection until the pass ends; it reconnects after a 421 or a
// broken connection.
func (rs *runState) worker(id int, c *smtp.Client, start <-chan struct{}) workerResult {
	res := workerResult{lats: make([]time.Duration, 0, 1024), sent: make([]sentMsg, 0, 1024)}
	<-start
	for rs.more() {
		if c == nil {
			var err error
			if c, err = rs.dial(); err != nil {
				rs.fail(id, "reconnect", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		msgID, msg := rs.msgs.next()
		dot, lat, stage, err := send(c, msg)
		if lat > 0 {
			rs.accepted.Add(1)
			res.lats = append(res.lats, lat)
			res.sent = append(res.sent, sentMsg{msgID, dot})
		}
		if err == nil {
			continue
		}
		rs.fail(id, stage, err)
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code != 421 {
			if c.Reset() == nil { // a refused transaction: the connection is still good
				continue
			}
		}
		c.Close()
		c = nil
	}
	res.c = c
	return res
}

// stallLimit caps the accept-only window. The relay waits for the stalled sink's reply for
// at most its per-command timeout (smtpclient.DefaultTimeout, 2 minutes) and then defers the
// message for a minute, which would turn the drain into a wait for the retry.
const stallLimit = 90 * time.Second

// pass is one measured window of load: the clients' counts, latencies and accepted
// messages, the relay's CPU around it and the backlog as it went.
type pass struct {
	accepted, errors int64
	firstErr         []string
	aborted          string
	lats             []time.Duration // sorted
	sent             []sentMsg
	sink0            int64 // the sink's count before the window
	sinkInWindow     int64 // messages the sink received during the window
	t0, t1           time.Time
	s0, s1           cpuSnap         // at the start and the end of the window
	sQuit            cpuSnap         // once the clients have quit
	backlog          []backlogSample // accepted minus received, each second and at the end
}

type backlogSample struct {
	T float64 `json:"t_s"`      // seconds into the window
	N int64   `json:"messages"` // accepted (250) minus received by the sink
}

// drive opens -c connections (before the clock starts), sends until -duration (capped at
// limit when limit > 0) or -n messages, then quits them.
func drive(ctx context.Context, o *options, rl *relayProc, sk *sink, mode string, size int, limit time.Duration) (*pass, error) {
	rs := &runState{o: o, mode: mode, password: rl.Password, msgs: newMessageMaker(mode, size)}
	rs.addr = rl.Submission
	if mode == modeSmartHost {
		rs.addr = rl.SmartHost
	}
	rs.ctx, rs.abort = context.WithCancelCause(ctx)
	defer rs.abort(nil)
	rs.tickets.Store(int64(o.total))

	// Connect (and authenticate) every client before the clock starts.
	clients := make([]*smtp.Client, o.conns)
	dialErrs := make([]error, o.conns)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { clients[i], dialErrs[i] = rs.dial() })
	}
	wg.Wait()
	if err := errors.Join(dialErrs...); err != nil {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("opening %d connections to %s: %w", o.conns, rs.addr, err)
	}

	window := o.duration
	if o.total > 0 {
		window = 0
	}
	if limit > 0 && (window == 0 || window > limit) {
		window = limit
	}
	start := make(chan struct{})
	results := make([]workerResult, o.conns)
	for i := range clients {
		wg.Go(func() { results[i] = rs.worker(i, clients[i], start) })
	}
	p := &pass{sink0: sk.count()}
	var err error
	if p.s0, err = snapshot(rl.PID()); err != nil {
		close(start)
		rs.abort(err)
		wg.Wait()
		return nil, err
	}
	p.t0 = time.Now()
	if window > 0 {
		rs.deadline = p.t0.Add(window)
	}
	backlog := func() backlogSample {
		return backlogSample{T: time.Since(p.t0).Seconds(), N: rs.accepted.Load() - (sk.count() - p.sink0)}
	}
	stopSampling := make(chan struct{})
	sampled := make(chan []backlogSample)
	go func() {
		var samples []backlogSample
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				samples = append(samples, backlog())
			case <-stopSampling:
				sampled <- samples
				return
			}
		}
	}()
	close(start)
	wg.Wait()
	p.t1 = time.Now()
	if p.s1, err = snapshot(rl.PID()); err != nil {
		close(stopSampling)
		<-sampled
		return nil, err
	}
	end := backlog()
	close(stopSampling)
	p.backlog = append(<-sampled, end)
	p.sinkInWindow = sk.count() - p.sink0
	for _, r := range results {
		if r.c != nil {
			wg.Go(func() { r.c.Quit(); r.c.Close() })
		}
	}
	wg.Wait()
	if p.sQuit, err = snapshot(rl.PID()); err != nil {
		return nil, err
	}
	if cause := context.Cause(rs.ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		p.aborted = cause.Error()
	} else if ctx.Err() != nil {
		p.aborted = "interrupted"
	}
	p.accepted, p.errors = rs.accepted.Load(), rs.failed.Load()
	p.firstErr = rs.firstErr
	for _, r := range results {
		p.lats = append(p.lats, r.lats...)
		p.sent = append(p.sent, r.sent...)
	}
	slices.Sort(p.lats)
	return p, nil
}

// awaitSink waits until the sink has received want messages since the count sink0, the
// drain limit passes, ctx ends or the relay exits (an error).
func awaitSink(ctx context.Context, rl *relayProc, sk *sink, sink0, want int64, limit time.Duration) error {
	end := time.Now().Add(limit)
	for sk.count()-sink0 < want && time.Now().Before(end) && ctx.Err() == nil {
		select {
		case <-rl.Done():
			return fmt.Errorf("relay exited (%v); its log ends:\n%s", rl.WaitErr(), tail(rl.logPath, 20))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// percentile returns the p-th percentile of sorted (zero if empty).
func percentile(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return ms(sorted[(len(sorted)-1)*p/100])
}

// loadRun measures one mode and size in two passes over the same relay: accept-only (sink
// held), then end to end (sink open). See the package comment.
func loadRun(ctx context.Context, o *options, ra, rl *relayProc, sk *sink, mode string, size int) (*runResult, error) {
	r := &runResult{Mode: mode, Size: size, Conns: o.conns}
	clk := float64(clockTicks())

	// 1. Accept-only, on ra (flow control off): the sink answers no MAIL, so the relay
	// spools and delivers nothing.
	sk.hold()
	pa, err := drive(ctx, o, ra, sk, mode, size, stallLimit)
	if err != nil {
		sk.release()
		return nil, fmt.Errorf("accept-only pass: %w", err)
	}
	sk.release()
	a := &acceptOnlyResult{
		WindowS: pa.t1.Sub(pa.t0).Seconds(), Accepted: pa.accepted, Errors: pa.errors, FirstErrors: pa.firstErr,
		P50MS: percentile(pa.lats, 50), P99MS: percentile(pa.lats, 99), SinkInWindow: pa.sinkInWindow,
	}
	r.AcceptOnly = a
	a.MsgPerS = float64(a.Accepted) / a.WindowS
	a.RelayCores = float64(pa.s1.relay-pa.s0.relay) / clk / a.WindowS
	if a.Accepted > 0 {
		a.RelayCPUPer1k = float64(pa.sQuit.relay-pa.s0.relay) / clk / float64(a.Accepted) * 1000
	}
	if pa.aborted != "" {
		r.Aborted = "accept-only pass: " + pa.aborted
		return r, nil
	}
	// The drain: from the release until the sink has every accepted message.
	if err := awaitSink(ctx, ra, sk, pa.sink0, a.Accepted, o.drainLimit); err != nil {
		return nil, err
	}
	tDrained := time.Now()
	sDrained, err := snapshot(ra.PID())
	if err != nil {
		return nil, err
	}
	a.SinkTotal = sk.count() - pa.sink0
	a.DrainS = tDrained.Sub(pa.t1).Seconds()
	if a.SinkTotal > 0 {
		a.DrainMsgPerS = float64(a.SinkTotal) / a.DrainS
		a.DrainCPUPer1k = float64(sDrained.relay-pa.sQuit.relay) / clk / float64(a.SinkTotal) * 1000
	}
	if ctx.Err() != nil {
		r.Aborted = "interrupted"
		return r, nil
	}
	if a.SinkTotal < a.Accepted {
		r.Aborted = fmt.Sprintf("accept-only pass: the sink received %d of %d messages within -drain-timeout %v", a.SinkTotal, a.Accepted, o.drainLimit)
		return r, nil
	}
	sk.takeArrivals() // forget the accept-only messages

	// 2. End to end: the sink open, as a real next hop.
	p, err := drive(ctx, o, rl, sk, mode, size, 0)
	if err != nil {
		return nil, fmt.Errorf("end-to-end pass: %w", err)
	}
	r.Aborted = p.aborted
	r.Accepted, r.Errors, r.FirstErrors = p.accepted, p.errors, p.firstErr
	window := p.t1.Sub(p.t0).Seconds()
	r.WindowS = window
	r.MsgPerS = float64(r.Accepted) / window
	r.P50MS, r.P99MS = percentile(p.lats, 50), percentile(p.lats, 99)
	r.SinkInWindow = p.sinkInWindow
	r.Backlog = p.backlog
	end := p.backlog[len(p.backlog)-1].N
	r.BacklogEnd = end
	for _, b := range p.backlog {
		r.BacklogMax = max(r.BacklogMax, b.N)
	}
	r.BacklogTrend, r.BacklogVerdict = backlogTrend(p.backlog, r.MsgPerS)

	// Let the relay deliver everything it accepted, so its CPU per message includes the
	// delivery and the next run starts with an empty queue.
	if err := awaitSink(ctx, rl, sk, p.sink0, r.Accepted, o.drainLimit); err != nil {
		return nil, err
	}
	t2 := time.Now()
	s2, err := snapshot(rl.PID())
	if err != nil {
		return nil, err
	}
	r.DrainS = t2.Sub(p.t1).Seconds()
	r.SinkTotal = sk.count() - p.sink0

	// End-to-end latency: the client's final dot to the sink's end of DATA.
	arrivals := sk.takeArrivals()
	var e2e []time.Duration
	for _, m := range p.sent {
		if t, ok := arrivals[m.id]; ok {
			e2e = append(e2e, t.Sub(m.dot))
		}
	}
	slices.Sort(e2e)
	r.E2EMessages = int64(len(e2e))
	r.E2EP50MS, r.E2EP99MS = percentile(e2e, 50), percentile(e2e, 99)

	if r.Accepted > 0 {
		relaySec := float64(s2.relay-p.s0.relay) / clk
		r.RelayCPUPer1k = relaySec / float64(r.Accepted) * 1000
	}
	if a.RelayCPUPer1k > 0 && r.RelayCPUPer1k > 0 {
		r.DeliveryCPUPct = 100 * (r.RelayCPUPer1k - a.RelayCPUPer1k) / a.RelayCPUPer1k
		r.DeliveryWithinTarget = r.DeliveryCPUPct <= deliveryTargetPct
	}
	r.RelayCores = float64(p.s1.relay-p.s0.relay) / clk / window
	r.LoadgenCores = float64(p.s1.self-p.s0.self) / clk / window
	busy := float64(p.s1.busy-p.s0.busy) / clk / window
	r.OtherCores = max(0, busy-r.RelayCores-r.LoadgenCores)
	r.IdleCores = float64(p.s1.idle-p.s0.idle) / clk / window
	return r, nil
}

// deliveryTargetPct is the most CPU per message that delivery may add over acceptance.
const deliveryTargetPct = 25

// backlogTrendPct is how fast the backlog may grow, as a share of the intake, and still
// count as delivery keeping up: the level wobbles with the commits and deliveries in flight.
const backlogTrendPct = 2

// backlogTrend fits a line (least squares) through the backlog samples from the first
// second on (the first moments only fill the pipeline) and says whether it grows: by more
// than backlogTrendPct of the intake rate msgPerS is "falls behind".
func backlogTrend(samples []backlogSample, msgPerS float64) (slope float64, verdict string) {
	var pts []backlogSample
	for _, s := range samples {
		if s.T >= 0.9 {
			pts = append(pts, s)
		}
	}
	if len(pts) < 3 {
		return 0, "too short to tell"
	}
	var st, sn float64
	for _, s := range pts {
		st += s.T
		sn += float64(s.N)
	}
	n := float64(len(pts))
	mt, mn := st/n, sn/n
	var cov, vt float64
	for _, s := range pts {
		cov += (s.T - mt) * (float64(s.N) - mn)
		vt += (s.T - mt) * (s.T - mt)
	}
	if vt == 0 {
		return 0, "too short to tell"
	}
	slope = cov / vt
	if slope > msgPerS*backlogTrendPct/100 {
		return slope, "falls behind"
	}
	return slope, "keeps up"
}

// ---- output ----

func sizeLabel(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func printReport(rep *report) {
	sc := rep.Signing
	fmt.Printf("\nsealgate load benchmark: %d cores, durable spool on %s, CLK_TCK %d\n", rep.Cores, rep.SpoolFS, rep.ClockTicks)
	fmt.Printf("signing CPU per message, in-process (3×RSA-2048 + 1×Ed25519, %d iterations, before and after the runs): median %.3f ms before, %.3f ms after; using %.3f (mean %.3f; RSA-2048 %.3f ms, Ed25519 %.3f ms each)\n",
		sc.Iterations, sc.BeforeMS, sc.AfterMS, sc.MedianMS, sc.MeanMS, sc.RSAMS, sc.Ed25519MS)
	fmt.Printf("ceiling set by the signatures alone: %d cores / %.3f ms = %.0f msg/s\n", rep.Cores, sc.MedianMS, rep.CeilingMsgPS)

	fmt.Println("\nend to end (sink open):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tSIZE\tCONNS\tACCEPTED\tERRORS\tMSG/S\tP50 ms\tP99 ms\tRELAY CPU s/1000\tSINK RCVD\t% CEILING\tRELAY/SIGN\tSIGN SHARE\t")
	for _, r := range rep.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.3f\t%d (%d)\t%.1f%%\t%.2f×\t%.1f%%\t\n",
			r.Mode, sizeLabel(r.Size), r.Conns, r.Accepted, r.Errors, r.MsgPerS, r.P50MS, r.P99MS,
			r.RelayCPUPer1k, r.SinkTotal, r.SinkInWindow, r.PctCeiling, r.RelayOverSign, r.SignSharePct)
	}
	tw.Flush()

	fmt.Printf("\nacceptance alone (sink held) beside end to end; target: delivery adds at most %d%% CPU per message:\n", deliveryTargetPct)
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tSIZE\tACCEPTED\tERRORS\tMSG/S\tP50 ms\tP99 ms\tACCEPT CPU s/1000\tE2E MSG/S\tE2E CPU s/1000\tDELIVERY +CPU\tTARGET\tDRAIN MSG/S\tDRAIN CPU s/1000\t")
	for _, r := range rep.Runs {
		a := r.AcceptOnly
		if a == nil {
			continue
		}
		target := "-"
		if r.Accepted > 0 && a.RelayCPUPer1k > 0 {
			target = "MISSED"
			if r.DeliveryWithinTarget {
				target = "met"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.3f\t%.1f\t%.3f\t%+.1f%%\t%s\t%.1f\t%.3f\t\n",
			r.Mode, sizeLabel(r.Size), a.Accepted, a.Errors, a.MsgPerS, a.P50MS, a.P99MS, a.RelayCPUPer1k,
			r.MsgPerS, r.RelayCPUPer1k, r.DeliveryCPUPct, target, a.DrainMsgPerS, a.DrainCPUPer1k)
	}
	tw.Flush()

	fmt.Println("\nend-to-end latency and backlog (sink open):")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tSIZE\tE2E P50 ms\tE2E P99 ms\tOF MSGS\tBACKLOG END\tBACKLOG MAX\tTREND msg/s\tDELIVERY\t")
	for _, r := range rep.Runs {
		if r.AcceptOnly == nil || r.WindowS == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%d\t%d\t%d\t%+.1f\t%s\t\n",
			r.Mode, sizeLabel(r.Size), r.E2EP50MS, r.E2EP99MS, r.E2EMessages, r.BacklogEnd, r.BacklogMax, r.BacklogTrend, r.BacklogVerdict)
	}
	tw.Flush()

	fmt.Printf("\nCPU during each end-to-end window, in cores busy (of %d):\n", rep.Cores)
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tSIZE\tWINDOW s\tRELAY\tLOADGEN+SINK\tOTHER\tIDLE\tDRAIN s\t")
	for _, r := range rep.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n",
			r.Mode, sizeLabel(r.Size), r.WindowS, r.RelayCores, r.LoadgenCores, r.OtherCores, r.IdleCores, r.DrainS)
	}
	tw.Flush()

	fmt.Printf(`
MSG/S       messages answered 250, per second of the window (connections are opened and
            authenticated before it starts).
P50/P99     accept latency: end of DATA (the final dot) to the 250 (the spool fsyncs first).
RELAY CPU   the relay process's utime+stime per 1000 accepted messages, from the start of the
            window until the sink had every accepted message (so delivery is included).
SINK RCVD   messages the next-hop sink received after the drain (in the window alone).
%% CEILING   MSG/S ÷ the signing ceiling. The load generator and sink (this process) and any
            other work on the machine share the cores with the relay (see the CPU table), so
            on a small machine this understates what the relay alone can do.
RELAY/SIGN  relay CPU ms per message ÷ signing ms per message: 1.00× would mean the relay
            spends nothing but the four signatures. Largely independent of who else uses
            the cores, so the fairer figure on a shared machine.
SIGN SHARE  its inverse: the share of the relay's CPU the signatures need, i.e. about the %%
            of the ceiling the relay would reach with every core to itself.
ACCEPT CPU  the accept-only pass (sink held: the relay accepts and spools, delivers nothing):
            relay CPU per 1000 accepted, from the start of the window until the clients quit.
E2E CPU     RELAY CPU above, of the end-to-end pass.
DELIVERY    +CPU: (E2E CPU - ACCEPT CPU) / ACCEPT CPU, what delivery adds per message.
DRAIN       the accept-only pass's backlog delivered once the sink was released: messages per
            second and relay CPU per 1000 from the release until the sink had them all.
E2E P50/P99 end-to-end latency: the client writing the final dot to the sink reading it
            (its end of DATA), over OF MSGS accepted messages, drain included.
BACKLOG     accepted minus received by the sink, sampled each second; END at the end of the
            window, TREND its least-squares slope from the first second on. "keeps up" when
            it grows by at most %d%% of MSG/S.
relay stopped with SIGTERM: %s
`, backlogTrendPct, rep.RelayExit)
}
