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
// SMTP sink that this program runs in-process (accepts everything, counts messages, discards
// bodies). It then drives -c concurrent clients for -duration (or -n messages) in each mode
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
// For each mode and size it prints: messages accepted (250) per second; accept latency p50 and
// p99, from the end of DATA (the final dot) to the 250; the relay process's CPU seconds per
// 1000 accepted messages (utime+stime from /proc/PID/stat, from the start of the window until
// the sink has received every accepted message, so delivery to the next hop is included);
// how many messages the sink received; and the ceiling set by the signatures alone.
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
// core to itself. A second table shows how the cores were shared during each window (relay,
// load generator with sink, everything else, idle), from /proc/stat and /proc/PID/stat.
//
// Linux only (/proc). Example:
//
//	go build -o bin/sealgate ./cmd/sealgate && go run ./internal/loadbench -sealgate bin/sealgate -duration 20s
package main

import (
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
	latencies     []time.Duration
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
	rl, err := startRelay(o.sealgate, base, sink.addr, o.conns)
	if err != nil {
		return err
	}
	defer rl.stop() // on error paths; a no-op once the relay has exited
	if !o.jsonOut {
		fmt.Printf("relay pid %d: submission %s, smarthost %s, next hop (sink) %s, state %s (%s)\n",
			rl.PID(), rl.Submission, rl.SmartHost, sink.addr, base, rep.SpoolFS)
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
			r, err := loadRun(ctx, o, rl, sink, mode, size)
			if err != nil {
				return fmt.Errorf("%s %d bytes: %w (relay log: %s)", mode, size, err, rl.logPath)
			}
			rep.Runs = append(rep.Runs, r)
			if !o.jsonOut {
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
		if r.Aborted != "" || r.Accepted == 0 {
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
// messages it receives and discards them.
type sink struct {
	srv      *smtp.Server
	addr     string
	received atomic.Int64
}

func startSink() (*sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s := &sink{addr: l.Addr().String()}
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
func (s *sink) close()                                      { s.srv.Close() }

type sinkSession struct{ s *sink }

func (sinkSession) Reset()                               {}
func (sinkSession) Logout() error                        { return nil }
func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (ss sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
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

// startRelay runs `SEALGATE serve --dev` in base/dev with every listener on a free port and
// the sink as next hop, and waits until it logs its listening addresses. Its log (stdout and
// stderr) goes to base/relay.log.
func startRelay(bin, base, nextHop string, conns int) (*relayProc, error) {
	logPath := filepath.Join(base, "relay.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"--next-hop", nextHop}
	if relayProfile != "" {
		args = append(args, "--cpuprofile", relayProfile)
	}
	// Every load client connects from 127.0.0.1: raise the per-address connection limit
	// (20 by default, a defence against one client taking every slot) above the load.
	env := []string{fmt.Sprintf("SEALGATE_LIMITS_MAX_CONNECTIONS_PER_IP=%d", conns+8)}
	r, err := sealgatetest.Start(sealgatetest.Options{Binary: bin, Dir: filepath.Join(base, "dev"), Args: args, Log: logFile, Env: env})
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
// own Message-ID.
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

func (m *messageMaker) header(n int64) string {
	return fmt.Sprintf("From: Demo <%s>\r\nTo: <%s>\r\nSubject: sealgate load test %d\r\n"+
		"Date: %s\r\nMessage-ID: <%s.%d@loadbench.example.test>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n",
		demoLogin, rcptTo, n, time.Now().Format(time.RFC1123Z), m.tag, n)
}

func (m *messageMaker) next() []byte {
	h := m.header(m.seq.Add(1))
	msg := make([]byte, 0, len(h)+len(m.body))
	return append(append(msg, h...), m.body...)
}

// runState is what the workers of one mode/size run share.
type runState struct {
	o        *options
	mode     string
	addr     string
	password string
	msgs     *messageMaker
	tickets  atomic.Int64 // with -n: messages left to send
	deadline time.Time    // without -n
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
	if rs.o.total > 0 {
		return rs.tickets.Add(-1) >= 0
	}
	return time.Now().Before(rs.deadline)
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

// send runs one MAIL/RCPT/DATA transaction; lat is the time from the end of DATA to the
// 250 (zero if there was none). No RSET after it: the transaction ended with the reply to
// DATA (RFC 5321 §4.1.1.4), and go-smtp's Client.Reset also makes the next MAIL send
// EHLO again, two round trips per message that real clients do not make.
func send(c *smtp.Client, msg []byte) (lat time.Duration, stage string, err error) {
	if err = c.Mail(demoLogin, nil); err != nil {
		return 0, "MAIL", err
	}
	if err = c.Rcpt(rcptTo, nil); err != nil {
		return 0, "RCPT", err
	}
	w, err := c.Data()
	if err != nil {
		return 0, "DATA", err
	}
	if _, err = w.Write(msg); err != nil {
		return 0, "message body", err
	}
	t := time.Now()
	if err = w.Close(); err != nil { // writes the final dot, reads the reply
		return 0, "end of DATA", err
	}
	return time.Since(t), "", nil
}

// worker sends on its connection until the run ends; it reconnects after a 421 or a
// broken connection. It returns the connection it ends with (nil if none) and the latencies.
func (rs *runState) worker(id int, c *smtp.Client, start <-chan struct{}) (*smtp.Client, []time.Duration) {
	lats := make([]time.Duration, 0, 1024)
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
		lat, stage, err := send(c, rs.msgs.next())
		if lat > 0 {
			rs.accepted.Add(1)
			lats = append(lats, lat)
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
	return c, lats
}

func loadRun(ctx context.Context, o *options, rl *relayProc, sk *sink, mode string, size int) (*runResult, error) {
	rs := &runState{o: o, mode: mode, password: rl.Password, msgs: newMessageMaker(mode, size)}
	rs.addr = rl.Submission
	if mode == modeSmartHost {
		rs.addr = rl.SmartHost
	}
	rs.ctx, rs.abort = context.WithCancelCause(ctx)
	defer rs.abort(nil)
	rs.tickets.Store(int64(o.total))
	r := &runResult{Mode: mode, Size: size, Conns: o.conns}

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

	start := make(chan struct{})
	lats := make([][]time.Duration, o.conns)
	for i := range clients {
		wg.Go(func() { clients[i], lats[i] = rs.worker(i, clients[i], start) })
	}
	sink0 := sk.count()
	s0, err := snapshot(rl.PID())
	if err != nil {
		close(start)
		rs.abort(err)
		wg.Wait()
		return nil, err
	}
	t0 := time.Now()
	rs.deadline = t0.Add(o.duration)
	close(start)
	wg.Wait()
	t1 := time.Now()
	s1, err := snapshot(rl.PID())
	if err != nil {
		return nil, err
	}
	r.SinkInWindow = sk.count() - sink0
	for _, c := range clients {
		if c != nil {
			wg.Go(func() { c.Quit(); c.Close() })
		}
	}
	wg.Wait()
	if cause := context.Cause(rs.ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		r.Aborted = cause.Error()
	} else if ctx.Err() != nil {
		r.Aborted = "interrupted"
	}

	r.Accepted, r.Errors = rs.accepted.Load(), rs.failed.Load()
	r.FirstErrors = rs.firstErr
	window := t1.Sub(t0).Seconds()
	r.WindowS = window
	r.MsgPerS = float64(r.Accepted) / window
	for _, l := range lats {
		r.latencies = append(r.latencies, l...)
	}
	slices.Sort(r.latencies)
	if n := len(r.latencies); n > 0 {
		r.P50MS = ms(r.latencies[(n-1)*50/100])
		r.P99MS = ms(r.latencies[(n-1)*99/100])
	}

	// Let the relay deliver everything it accepted, so its CPU per message includes the
	// delivery and the next run starts with an empty queue.
	drainEnd := time.Now().Add(o.drainLimit)
	for sk.count()-sink0 < r.Accepted && time.Now().Before(drainEnd) && ctx.Err() == nil {
		select {
		case <-rl.Done():
			return nil, fmt.Errorf("relay exited (%v); its log ends:\n%s", rl.WaitErr(), tail(rl.logPath, 20))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t2 := time.Now()
	s2, err := snapshot(rl.PID())
	if err != nil {
		return nil, err
	}
	r.DrainS = t2.Sub(t1).Seconds()
	r.SinkTotal = sk.count() - sink0

	clk := float64(clockTicks())
	if r.Accepted > 0 {
		relaySec := float64(s2.relay-s0.relay) / clk
		r.RelayCPUPer1k = relaySec / float64(r.Accepted) * 1000
	}
	r.RelayCores = float64(s1.relay-s0.relay) / clk / window
	r.LoadgenCores = float64(s1.self-s0.self) / clk / window
	busy := float64(s1.busy-s0.busy) / clk / window
	r.OtherCores = max(0, busy-r.RelayCores-r.LoadgenCores)
	r.IdleCores = float64(s1.idle-s0.idle) / clk / window
	return r, nil
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
	fmt.Printf("ceiling set by the signatures alone: %d cores / %.3f ms = %.0f msg/s\n\n", rep.Cores, sc.MedianMS, rep.CeilingMsgPS)

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tSIZE\tCONNS\tACCEPTED\tERRORS\tMSG/S\tP50 ms\tP99 ms\tRELAY CPU s/1000\tSINK RCVD\t% CEILING\tRELAY/SIGN\tSIGN SHARE\t")
	for _, r := range rep.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.3f\t%d (%d)\t%.1f%%\t%.2f×\t%.1f%%\t\n",
			r.Mode, sizeLabel(r.Size), r.Conns, r.Accepted, r.Errors, r.MsgPerS, r.P50MS, r.P99MS,
			r.RelayCPUPer1k, r.SinkTotal, r.SinkInWindow, r.PctCeiling, r.RelayOverSign, r.SignSharePct)
	}
	tw.Flush()

	fmt.Printf("\nCPU during each window, in cores busy (of %d):\n", rep.Cores)
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
relay stopped with SIGTERM: %s
`, rep.RelayExit)
}
