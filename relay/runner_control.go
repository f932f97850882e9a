package relay

// The control socket: how admin commands ("sealgate queue ...", and others
// registered by the process that serves) reach a running relay, so that the
// spool keeps one writer. A unix socket (mode 0600) under the data directory;
// each request is one JSON line, each answer one JSON line:
//
//	-> {"cmd":"queue.show","args":{"id":"33ma..."}}
//	<- {"ok":true,"result":{...}}
//	<- {"ok":false,"error":"no message 33ma... in the queue or failed/"}
//
// A connection may carry several requests, one after the other.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// ControlHandler answers one control command: args is the request's "args"
// (null when absent); the result is sent as JSON.
type ControlHandler func(ctx context.Context, args json.RawMessage) (any, error)

// ControlRequest is one request line.
type ControlRequest struct {
	Cmd  string          `json:"cmd"`
	Args json.RawMessage `json:"args,omitempty"`
}

// ControlResponse is one answer line.
type ControlResponse struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Limits of the control protocol.
const (
	maxControlLine    = 1 << 20 // one request
	controlIdle       = time.Minute
	controlCallWindow = 30 * time.Second // a handler's time
)

// ControlServer serves the control socket at Path. Register handlers with
// Handle before or while it serves; commands are named like "queue.list",
// "reload".
type ControlServer struct {
	Path   string
	Logger *slog.Logger // default slog.Default()

	mu       sync.Mutex
	handlers map[string]ControlHandler
}

// Handle registers h for cmd, replacing any earlier handler.
func (c *ControlServer) Handle(cmd string, h ControlHandler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handlers == nil {
		c.handlers = map[string]ControlHandler{}
	}
	c.handlers[cmd] = h
}

// Commands returns the registered command names, sorted.
func (c *ControlServer) Commands() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k := range c.handlers {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *ControlServer) handler(cmd string) ControlHandler {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.handlers[cmd]
}

func (c *ControlServer) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// Listen creates the socket, mode 0600: made in a private temporary directory
// and renamed into place, so it is never reachable with wider permissions. A
// socket left at Path by a process that is gone is replaced; one that answers
// is not (another relay serves this directory).
func (c *ControlServer) Listen() (net.Listener, error) {
	if len(c.Path) > 100 {
		return nil, fmt.Errorf("control socket %s: path longer than a unix socket address allows (about 100 bytes)", c.Path)
	}
	if conn, err := net.DialTimeout("unix", c.Path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("control socket %s: another process is serving it", c.Path)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(c.Path), ".control-")
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	p := filepath.Join(tmp, "s")
	ln, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(p, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Rename(p, c.Path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// Serve listens (see Listen) and answers requests until ctx is done, then
// closes the socket and removes it.
func (c *ControlServer) Serve(ctx context.Context) error {
	ln, err := c.Listen()
	if err != nil {
		return err
	}
	return c.ServeListener(ctx, ln)
}

// ServeListener answers requests on ln until ctx is done, then closes ln and
// removes Path.
func (c *ControlServer) ServeListener(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer func() {
		ln.Close()
		os.Remove(c.Path)
		wg.Wait()
	}()
	c.log().Info("control socket listening", "path", c.Path)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serveConn(ctx, conn)
		}()
	}
}

func (c *ControlServer) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReaderSize(conn, 64<<10)
	for {
		conn.SetReadDeadline(time.Now().Add(controlIdle))
		line, err := readLine(r, maxControlLine)
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				writeResponse(conn, ControlResponse{Error: err.Error()})
			}
			return
		}
		resp := c.dispatch(ctx, line)
		if err := writeResponse(conn, resp); err != nil {
			return
		}
	}
}

func (c *ControlServer) dispatch(ctx context.Context, line []byte) ControlResponse {
	var req ControlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return ControlResponse{Error: fmt.Sprintf("bad request: %v", err)}
	}
	h := c.handler(req.Cmd)
	if h == nil {
		return ControlResponse{Error: fmt.Sprintf("unknown command %q; known: %v", req.Cmd, c.Commands())}
	}
	hctx, cancel := context.WithTimeout(ctx, controlCallWindow)
	defer cancel()
	res, err := h(hctx, req.Args)
	if err != nil {
		return ControlResponse{Error: err.Error()}
	}
	js, err := json.Marshal(res)
	if err != nil {
		return ControlResponse{Error: fmt.Sprintf("encode result: %v", err)}
	}
	c.log().Info("control command", "cmd", req.Cmd)
	return ControlResponse{OK: true, Result: js}
}

// readLine reads one line of at most max bytes, without its line end.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("request longer than %d bytes", max)
		}
		if !isPrefix {
			return line, nil
		}
	}
}

func writeResponse(w io.Writer, resp ControlResponse) error {
	js, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = w.Write(append(js, '\n'))
	return err
}

// ErrNotRunning is returned by ControlCall when nothing serves the socket.
var ErrNotRunning = errors.New("sealgate serve is not running")

// ControlError is a command's refusal, as the server said it.
type ControlError struct{ Msg string }

func (e *ControlError) Error() string { return e.Msg }

// ControlCall sends one request to the control socket at path and decodes the
// result into result (unless nil). Without a server it returns an error
// matching ErrNotRunning; a refused command is a *ControlError.
func ControlCall(ctx context.Context, path, cmd string, args, result any) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("%w (no control socket answers at %s)", ErrNotRunning, path)
		}
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req := ControlRequest{Cmd: cmd}
	if args != nil {
		js, err := json.Marshal(args)
		if err != nil {
			return err
		}
		req.Args = js
	}
	js, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := conn.Write(append(js, '\n')); err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	line, err := readLine(bufio.NewReader(conn), 256<<20)
	if err != nil {
		return fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	var resp ControlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("control socket %s: bad answer: %w", path, err)
	}
	if !resp.OK {
		return &ControlError{Msg: resp.Error}
	}
	if result != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("control socket %s: bad result: %w", path, err)
		}
	}
	return nil
}
