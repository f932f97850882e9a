package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/sealgatetest"
	"sealgate/relay"
)

// requireService fails (CI=true) or skips when a Debian server the test runs is missing.
func requireService(t *testing.T, name string) {
	t.Helper()
	if sealgatetest.HaveTool(name) {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (install the Debian package %s; make deps does)", name, name)
	}
	t.Skipf("%s not found (install the Debian package %s)", name, name)
}

// TestHAProxyExample: the example configuration is one HAProxy accepts.
func TestHAProxyExample(t *testing.T) {
	requireService(t, "haproxy")
	path, _ := exec.LookPath("haproxy")
	if path == "" {
		path = "/usr/sbin/haproxy"
	}
	if out, err := exec.Command(path, "-c", "-f", "../../examples/haproxy.cfg").CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f examples/haproxy.cfg: %v\n%s", err, out)
	}
}

// TestScaleOut runs a real redis-server and a real HAProxy (PROXY protocol v2, health
// checks on /readyz) in front of two sealgate nodes that differ only in hostname and
// directory, all on loopback. HAProxy connects from 127.0.0.1, which is inside
// client_networks and the nodes' trusted_proxies; clients come from other loopback
// addresses: 127.0.0.2 (a client network), 127.0.0.3 (not one), 127.0.0.5 (a password
// guesser).
func TestScaleOut(t *testing.T) {
	requireService(t, "haproxy")
	requireService(t, "redis-server")
	if _, err := dialFromAddr("127.0.0.2", "127.0.0.1:1"); err != nil && strings.Contains(err.Error(), "assign requested address") {
		t.Skip("this machine cannot use 127.0.0.2 as a source address")
	}
	sink := startScaleSink(t)
	redis, err := sealgatetest.StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(redis.Stop)

	// Node A's directory is a dev directory (keys, users, certificate); node B's is a
	// copy of it, as two nodes mount the same secrets.
	base := t.TempDir()
	dev := filepath.Join(base, "dev")
	gen := startRelay(t, dev, "--next-hop", sink.addr)
	gen.stop()
	devYAML := string(gen.readFile(t, "sealgate.yaml"))
	nodes := map[string]*scaleNode{}
	for _, name := range []string{"node-a", "node-b"} {
		dir := filepath.Join(base, name)
		if err := sealgatetest.CopyDevDir(dev, dir); err != nil {
			t.Fatal(err)
		}
		n := &scaleNode{name: name, dir: dir}
		n.smart, n.sub, n.admin = freePort(t), freePort(t), freePort(t)
		cfg, err := sealgatetest.NodeConfig(devYAML, sealgatetest.Node{Hostname: name + ".example.test",
			Submission: n.sub, SmartHost: n.smart, Admin: n.admin,
			TrustedProxies: []string{"127.0.0.1/32"}, ClientNetworks: []string{"127.0.0.2/32"},
			Redis: redis.URL(), Limits: "  auth_failures: 5\n  drain_timeout: 20s\n"})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sealgate.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		rl, err := sealgatetest.Start(sealgatetest.Options{Binary: binary, Dir: dir, Config: filepath.Join(dir, "sealgate.yaml"), StartTimeout: startupWait})
		if err != nil {
			t.Fatal(err)
		}
		n.proc = &relayProc{Relay: rl, t: t, dir: dir, password: rl.Password, logs: relayLog{rl}}
		t.Cleanup(n.proc.stop)
		nodes[name] = n
	}
	a, b := nodes["node-a"], nodes["node-b"]
	ha := startScaleHAProxy(t, a, b)

	t.Run("a: client networks by the real address", func(t *testing.T) {
		for i := range 4 { // round robin: both nodes
			id := fmt.Sprintf("trusted-%d", i)
			if err := sendOne(ha.smart, "127.0.0.2", id); err != nil {
				t.Fatalf("client 127.0.0.2 through haproxy: %v", err)
			}
			sink.wait(t, id, 60*time.Second)
		}
		err := sendOne(ha.smart, "127.0.0.3", "outsider")
		if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
			t.Fatalf("client 127.0.0.3 (not a client network) through haproxy (127.0.0.1, which is one): %v, want 550 5.7.1", err)
		}
		for _, n := range []*scaleNode{a, b} {
			logs := n.proc.Logs()
			if !strings.Contains(logs, "client_ip=127.0.0.2") {
				t.Errorf("%s never saw the real client 127.0.0.2:\n%s", n.name, logs)
			}
		}
		waitFor(t, 10*time.Second, "the refusal of 127.0.0.3 logged with its real address", func() bool {
			return strings.Contains(a.proc.Logs()+b.proc.Logs(), "client_ip=127.0.0.3")
		})
		if sink.count("outsider") != 0 {
			t.Error("the outsider's message was relayed")
		}
	})

	t.Run("c: PROXY header from an untrusted address", func(t *testing.T) {
		for _, n := range []*scaleNode{a, b} {
			c, err := dialFromAddr("127.0.0.4", fmt.Sprintf("127.0.0.1:%d", n.smart))
			if err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(c)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			greeting, _ := r.ReadString('\n')
			fmt.Fprintf(c, "PROXY TCP4 127.0.0.2 127.0.0.1 40000 %d\r\n", n.smart)
			got, _ := r.ReadString('\n')
			c.Close()
			if !strings.HasPrefix(greeting, "220 ") || !strings.HasPrefix(got, "554 5.7.1") {
				t.Errorf("%s: greeting %q, reply to a PROXY header %q; want 220 then 554 5.7.1", n.name, greeting, got)
			}
		}
		waitFor(t, 10*time.Second, "proxy_untrusted logged by both nodes", func() bool {
			return strings.Contains(a.proc.Logs(), "reason=proxy_untrusted") && strings.Contains(b.proc.Logs(), "reason=proxy_untrusted")
		})
	})

	t.Run("b: AUTH throttle counted once across nodes", func(t *testing.T) {
		codes := map[string]int{}
		for i := range 40 {
			c, err := dialErr(t, ha.sub, dialOpts{localAddr: "127.0.0.5"})
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			c.ehlo()
			c.startTLS()
			c.ehlo()
			r := c.authPlain(devLogin, "not-the-password")
			codes[fmt.Sprintf("%d %s", r.Code, r.Enh)]++
			c.conn.Close()
		}
		checks := metric(t, a, "sealgate_auth_failures_total") + metric(t, b, "sealgate_auth_failures_total")
		if checks != 5 {
			t.Errorf("%v password checks on the two nodes for 40 wrong passwords, want the limit, 5 (replies %v)", checks, codes)
		}
		if codes["421 4.7.0"] < 35 {
			t.Errorf("replies %v: want at least 35 of 40 refused with 421 4.7.0 without a check", codes)
		}
		for _, n := range []*scaleNode{a, b} {
			if !strings.Contains(n.proc.Logs(), "client_ip=127.0.0.5") {
				t.Errorf("%s got none of the attempts: they were not spread", n.name)
			}
			// The right password, straight to the node: the address is locked there.
			c := dial(t, fmt.Sprintf("127.0.0.1:%d", n.sub), dialOpts{localAddr: "127.0.0.5"})
			c.ehlo()
			c.startTLS()
			c.ehlo()
			if r := c.authPlain(devLogin, n.proc.password); !r.is(421, "4.7.0") {
				t.Errorf("%s: the right password from the locked address: %s, want 421 4.7.0", n.name, r)
			}
			c.conn.Close()
		}
	})

	t.Run("connections per address counted across nodes", func(t *testing.T) {
		// 24 connections from one address, spread over both nodes: 20 (the
		// max_connections_per_ip of each node) in all, not 20 per node.
		greeted, refused := 0, 0
		for i := range 24 {
			c, err := dialErr(t, ha.smart, dialOpts{localAddr: "127.0.0.6"})
			switch {
			case err == nil:
				greeted++
				defer c.conn.Close()
			case strings.Contains(err.Error(), "421 4.7.0"):
				refused++
			default:
				t.Fatalf("connection %d: %v", i, err)
			}
		}
		if greeted != 20 || refused != 4 {
			t.Errorf("of 24 connections from 127.0.0.6 through haproxy, %d greeted and %d refused with 421 4.7.0; want 20 and 4", greeted, refused)
		}
	})

	t.Run("d: a node SIGKILLed under load", func(t *testing.T) {
		var mu sync.Mutex
		acked := map[string]bool{}
		ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
		const workers, each = 4, 40
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seq, mine := 0, 0
				for tries := 0; mine < each && tries < 200; tries++ {
					var ids []string
					for range 5 {
						ids = append(ids, fmt.Sprintf("load-%d-%d", w, seq))
						seq++
					}
					ok, _ := sendMany(ha.smart, "127.0.0.2", ids)
					mu.Lock()
					for _, id := range ok {
						acked[id] = true
					}
					mu.Unlock()
					mine += len(ok)
				}
			}()
		}
		waitFor(t, 60*time.Second, "40 messages acknowledged", func() bool { return ackedCount() >= 40 })
		// No delivery may be between the sink's 250 and the node's record of it when
		// the node dies (it would be sent again after the restart, as SMTP allows):
		// the sink holds every delivery at its end of data while the node is killed,
		// and drops those whose sender is gone.
		sink.pause()
		waitFor(t, 30*time.Second, "deliveries settled", func() bool {
			return sink.settled() && !answeredStillQueued(sink, a, b)
		})
		a.proc.kill()
		sink.resume()
		wg.Wait()
		total := ackedCount()
		if total < workers*each {
			t.Fatalf("only %d of %d messages acknowledged with node-a down: the balancer did not move to node-b", total, workers*each)
		}
		sink.setPhase(2) // node-a is down: what it delivers from now on came from its spool
		a.proc.restart()
		mu.Lock()
		defer mu.Unlock()
		for id := range acked {
			sink.wait(t, id, 90*time.Second)
		}
		for id, n := range sink.snapshot() {
			if n > 1 {
				t.Errorf("%s delivered %d times", id, n)
			}
		}
		if sink.deliveredBy("node-a.example.test", 2) == 0 {
			t.Error("node-a delivered nothing after its restart: its spool was not delivered")
		}
		t.Logf("%d messages acknowledged; node-a delivered %d from its spool after the restart", total, sink.deliveredBy("node-a.example.test", 2))
	})

	t.Run("e: redis stopped", func(t *testing.T) {
		redis.Stop()
		for _, n := range []*scaleNode{a, b} {
			waitFor(t, 15*time.Second, n.name+" /readyz degraded", func() bool {
				code, body := get(t, n, "/readyz")
				return code == 200 && strings.Contains(body, "degraded shared-counters: redis 127.0.0.1:")
			})
			if v := metric(t, n, "sealgate_shared_counters_up"); v != 0 {
				t.Errorf("%s: sealgate_shared_counters_up %v with redis stopped", n.name, v)
			}
			id := "no-redis-" + n.name
			if err := sendOne(fmt.Sprintf("127.0.0.1:%d", n.smart), "127.0.0.2", id); err != nil {
				t.Errorf("%s with redis stopped: %v", n.name, err)
				continue
			}
			sink.wait(t, id, 60*time.Second)
			// The locked address stays locked on both nodes, node-a's restart and
			// redis's absence notwithstanding.
			c := dial(t, fmt.Sprintf("127.0.0.1:%d", n.sub), dialOpts{localAddr: "127.0.0.5"})
			c.ehlo()
			c.startTLS()
			c.ehlo()
			if r := c.authPlain(devLogin, n.proc.password); !r.is(421, "4.7.0") {
				t.Errorf("%s, redis stopped: the locked address got %s, want 421 4.7.0", n.name, r)
			}
			c.conn.Close()
		}
		// Through the balancer too: /readyz stayed 200, so both nodes stay in.
		for i := range 2 {
			id := fmt.Sprintf("no-redis-via-haproxy-%d", i)
			if err := sendOne(ha.smart, "127.0.0.2", id); err != nil {
				t.Fatalf("through haproxy with redis stopped: %v", err)
			}
			sink.wait(t, id, 60*time.Second)
		}
	})
	if t.Failed() {
		t.Logf("haproxy output:\n%s", ha.proc.Output())
	}
}

type scaleNode struct {
	name, dir         string
	smart, sub, admin int
	proc              *relayProc
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := sealgatetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type scaleHAProxy struct {
	proc            *sealgatetest.HAProxy
	smart, sub, mon string
}

// startScaleHAProxy runs HAProxy (sealgatetest.HAProxyConfig, the shape of
// examples/haproxy.cfg) on loopback ports and waits until it sees every node up.
func startScaleHAProxy(t *testing.T, nodes ...*scaleNode) *scaleHAProxy {
	t.Helper()
	h := &scaleHAProxy{}
	h.smart, h.sub, h.mon = fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	smart := sealgatetest.Frontend{Name: "smarthost", Bind: h.smart}
	sub := sealgatetest.Frontend{Name: "submission", Bind: h.sub}
	for _, n := range nodes {
		smart.Servers = append(smart.Servers, sealgatetest.Server{Name: n.name, Addr: fmt.Sprintf("127.0.0.1:%d", n.smart), CheckPort: n.admin})
		sub.Servers = append(sub.Servers, sealgatetest.Server{Name: n.name, Addr: fmt.Sprintf("127.0.0.1:%d", n.sub), CheckPort: n.admin})
	}
	p, err := sealgatetest.StartHAProxy(t.TempDir(), sealgatetest.HAProxyConfig(h.mon, smart, sub), h.mon)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	h.proc = p
	waitFor(t, 30*time.Second, "haproxy sees every node up", func() bool {
		up, _ := sealgatetest.ServersUp(h.mon)
		return up == 2*len(nodes)
	})
	return h
}

func dialFromAddr(local, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return d.Dial("tcp", addr)
}

func scaleMessage(id string) string {
	return strings.ReplaceAll(fmt.Sprintf(`From: demo@example.test
To: someone@example.net
Subject: scale-out %[1]s
Date: Mon, 07 Dec 2026 10:00:00 +0000
Message-ID: <%[1]s@e2e.test>
X-Test-Id: %[1]s

Sent through the balancer.
`, id), "\n", "\r\n")
}

func sendOne(addr, local, id string) error {
	ok, err := sendMany(addr, local, []string{id})
	if err == nil && len(ok) != 1 {
		err = fmt.Errorf("not acknowledged")
	}
	return err
}

// sendMany sends one message per id over one connection (go-smtp's client, a client
// we did not write), returning the ids acknowledged with 250 before any error.
func sendMany(addr, local string, ids []string) (acked []string, err error) {
	conn, err := dialFromAddr(local, addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("mta.example.test"); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := c.Mail("demo@example.test", nil); err != nil {
			return acked, err
		}
		if err := c.Rcpt("someone@example.net", nil); err != nil {
			return acked, err
		}
		w, err := c.Data()
		if err != nil {
			return acked, err
		}
		if _, err := io.WriteString(w, scaleMessage(id)); err != nil {
			return acked, err
		}
		if err := w.Close(); err != nil {
			return acked, err
		}
		acked = append(acked, id)
	}
	c.Quit()
	return acked, nil
}

func get(t *testing.T, n *scaleNode, path string) (int, string) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", n.admin, path))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric reads one unlabelled sample from a node's /metrics.
func metric(t *testing.T, n *scaleNode, name string) float64 {
	t.Helper()
	code, body := get(t, n, "/metrics")
	if code != 200 {
		t.Fatalf("%s /metrics: %d %s", n.name, code, body)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("%s: no %s in /metrics", n.name, name)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scaleSink is the next hop of both nodes: it counts each X-Test-Id it receives and
// which node (by EHLO name) delivered it in which phase. pause holds every delivery
// at its end of data; after resume a delivery whose sender has gone is dropped
// unanswered, as SMTP says (the message is not accepted before the 250).
type scaleSink struct {
	addr string

	mu       sync.Mutex
	cond     *sync.Cond
	got      map[string]int
	by       map[string]map[int]int // EHLO name -> phase -> messages
	phase    int
	paused   bool
	held     int
	lastDone time.Time
}

func startScaleSink(t *testing.T) *scaleSink {
	t.Helper()
	s := &scaleSink{got: map[string]int{}, by: map[string]map[int]int{}, phase: 1}
	s.cond = sync.NewCond(&s.mu)
	srv := smtp.NewServer(sinkBackend{s})
	srv.Domain = "sink.example.net"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { s.resume(); srv.Close() })
	return s
}

type sinkBackend struct{ s *scaleSink }

func (b sinkBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &sinkSession{s: b.s, c: c}, nil
}

type sinkSession struct {
	s *scaleSink
	c *smtp.Conn
}

func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }

var testIDField = regexp.MustCompile(`(?m)^X-Test-Id: (\S+)\r?$`)

func (ss *sinkSession) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.s
	s.mu.Lock()
	for s.paused {
		s.held++
		s.cond.Wait()
		s.held--
	}
	s.mu.Unlock()
	if !senderStillThere(ss.c.Conn()) {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sender gone"}
	}
	m := testIDField.FindSubmatch(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if m != nil {
		s.got[string(m[1])]++
	}
	helo := ss.c.Hostname()
	if s.by[helo] == nil {
		s.by[helo] = map[int]int{}
	}
	s.by[helo][s.phase]++
	s.lastDone = time.Now()
	return nil
}

// senderStillThere: a client waiting for the reply sends nothing, so a short read
// times out; a closed connection reads EOF or a reset at once.
func senderStillThere(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	c.SetReadDeadline(time.Time{})
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// answeredStillQueued reports whether a node still holds, as a delivery in progress, a
// message the sink has answered: its record of the delivery (the journal's done record,
// after an fdatasync) is not made yet, so a kill now would send it again after the
// restart. The fdatasync can take longer than settled's half second on a loaded machine.
func answeredStillQueued(s *scaleSink, nodes ...*scaleNode) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range nodes {
		sock := filepath.Join(n.dir, "control.sock")
		var entries []relay.QueueEntry
		if err := relay.ControlCall(ctx, sock, "queue.list", nil, &entries); err != nil {
			return true // ask again
		}
		for _, e := range entries {
			if e.State != relay.StateActive {
				continue
			}
			var m relay.QueueMessage
			if err := relay.ControlCall(ctx, sock, "queue.show", relay.QueueIDArgs{ID: e.ID}, &m); err != nil {
				continue // removed meanwhile
			}
			if id := testIDField.FindStringSubmatch(m.Header); id != nil && s.count(id[1]) > 0 {
				return true
			}
		}
	}
	return false
}

func (s *scaleSink) pause() { s.mu.Lock(); s.paused = true; s.mu.Unlock() }
func (s *scaleSink) resume() {
	s.mu.Lock()
	s.paused = false
	s.cond.Broadcast()
	s.mu.Unlock()
}

// settled: paused, and no delivery has been answered for half a second, so every
// node has recorded the deliveries it was told 250 for.
func (s *scaleSink) settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused && time.Since(s.lastDone) > 500*time.Millisecond
}

func (s *scaleSink) setPhase(p int) { s.mu.Lock(); s.phase = p; s.mu.Unlock() }

func (s *scaleSink) count(id string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.got[id] }

func (s *scaleSink) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.got))
	for k, v := range s.got {
		out[k] = v
	}
	return out
}

func (s *scaleSink) deliveredBy(helo string, phase int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.by[helo][phase]
}

func (s *scaleSink) wait(t *testing.T, id string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "message "+id+" at the sink", func() bool { return s.count(id) > 0 })
}
