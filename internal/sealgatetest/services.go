package sealgatetest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Service is a real server from Debian (redis-server, haproxy) run for a test or the
// load benchmark on loopback ports, with its output kept for messages.
type Service struct {
	Name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// PID is the process id.
func (s *Service) PID() int { return s.cmd.Process.Pid }

// Output is what the service wrote so far.
func (s *Service) Output() string { return s.out.String() }

// Stop sends SIGTERM and waits up to 10 s, then kills.
func (s *Service) Stop() {
	if s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Exited reports whether the process has ended.
func (s *Service) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// lookTool finds a Debian tool on PATH or in /usr/sbin and /usr/bin (a PATH without
// the sbin directories is common for non-login shells).
func lookTool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(d, name); fileExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("sealgatetest: %s not found (install the Debian package %s; make deps does)", name, pkg)
}

func fileExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func startService(name string, path string, args ...string) (*Service, error) {
	s := &Service{Name: name, out: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(path, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("sealgatetest: start %s: %w", name, err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	return s, nil
}

// HaveTool reports whether a Debian tool the services need (haproxy, redis-server) is
// installed.
func HaveTool(name string) bool {
	_, err := lookTool(name, name)
	return err == nil
}

// FreePort returns a port of 127.0.0.1 that was free a moment ago, for a server that
// cannot be told to take port 0 and report it (redis-server, haproxy's binds).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitListening waits until addr accepts TCP connections, the service exits, or
// timeout passes. Each probe is a bare connect, closed at once.
func (s *Service) WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if s.Exited() {
			return fmt.Errorf("sealgatetest: %s exited before listening on %s:\n%s", s.Name, addr, s.Output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sealgatetest: %s not listening on %s after %v: %v\n%s", s.Name, addr, timeout, err, s.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis is a redis-server on 127.0.0.1 with no persistence.
type Redis struct {
	*Service
	Addr string // host:port
}

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// StartRedis runs redis-server (Debian package redis-server) on a free loopback port,
// its files in dir, and waits until it accepts connections.
func StartRedis(dir string) (*Redis, error) {
	path, err := lookTool("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	var last error
	for range 3 { // the free port may be taken in between: try another
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		s, err := startService("redis-server", path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "yes")
		if err != nil {
			return nil, err
		}
		if last = s.WaitListening(addr, 10*time.Second); last == nil {
			return &Redis{Service: s, Addr: addr}, nil
		}
		s.Stop()
	}
	return nil, last
}

// HAProxy is an haproxy process on a configuration file.
type HAProxy struct {
	*Service
	Config string
}

// StartHAProxy checks (haproxy -c) and runs haproxy (Debian package haproxy) in the
// foreground on config, written to dir/haproxy.cfg, and waits until wait (a bind
// address of the configuration, ideally a monitor-uri frontend) accepts connections.
func StartHAProxy(dir, config, wait string) (*HAProxy, error) {
	path, err := lookTool("haproxy", "haproxy")
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.Command(path, "-c", "-f", file).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sealgatetest: haproxy -c -f %s: %v\n%s", file, err, out)
	}
	s, err := startService("haproxy", path, "-db", "-f", file)
	if err != nil {
		return nil, err
	}
	if err := s.WaitListening(wait, 10*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return &HAProxy{Service: s, Config: file}, nil
}
