//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

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
	local    string // the clients' source address ("": any)
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
		d := net.Dialer{Timeout: 10 * time.Second}
		if rs.local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(rs.local)}
		}
		conn, err := d.Dial("tcp", rs.addr)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		c = smtp.NewClient(conn)
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

// target is where a pass sends (a relay's listeners, or a balancer in front of relays),
// from which source address, and whose CPU it measures.
type target struct {
	submission, smartHost, password string
	local                           string // source address of the clients ("": any)
	pids                            []int
}

func relayTarget(rl *relayProc) target {
	return target{submission: rl.Submission, smartHost: rl.SmartHost, password: rl.Password, pids: []int{rl.PID()}}
}

// drive opens -c connections (before the clock starts), sends until -duration (capped at
// limit when limit > 0) or -n messages, then quits them.
func drive(ctx context.Context, o *options, tg target, sk *sink, mode string, size int, limit time.Duration) (*pass, error) {
	rs := &runState{o: o, mode: mode, password: tg.password, local: tg.local, msgs: newMessageMaker(mode, size)}
	rs.addr = tg.submission
	if mode == modeSmartHost {
		rs.addr = tg.smartHost
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
	if p.s0, err = snapshot(tg.pids...); err != nil {
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
	if p.s1, err = snapshot(tg.pids...); err != nil {
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
	if p.sQuit, err = snapshot(tg.pids...); err != nil {
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
	pa, err := drive(ctx, o, relayTarget(ra), sk, mode, size, stallLimit)
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
	p, err := drive(ctx, o, relayTarget(rl), sk, mode, size, 0)
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
