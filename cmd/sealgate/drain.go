package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"sealgate/relay"
)

// drainStatus is the answer to the control commands drain, resume and drain.status.
type drainStatus struct {
	Draining bool          `json:"draining"`
	Sessions int           `json:"sessions"`
	Pending  relay.Pending `json:"pending"`
}

// done reports whether a draining node has nothing left for now: no session, nothing
// due, nothing in flight (deferred mail stays in the node's own spool).
func (s drainStatus) done() bool {
	return s.Draining && s.Sessions == 0 && s.Pending.Due == 0 && s.Pending.InFlight == 0
}

func (p *process) drainStatus(ctx context.Context) (drainStatus, error) {
	pend, err := p.runner.Pending(ctx)
	return drainStatus{Draining: p.srv.Draining(), Sessions: p.srv.Sessions(), Pending: pend}, err
}

// handleDrain serves "sealgate drain" on the control socket.
func (p *process) handleDrain(c *relay.ControlServer) {
	c.Handle("drain", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if !p.srv.Draining() {
			p.log.Info("draining: no new sessions (421 4.3.2, /readyz 503); sessions end after their message; delivery goes on", "trigger", "sealgate drain")
		}
		p.srv.Drain()
		return p.drainStatus(ctx)
	})
	c.Handle("resume", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if p.srv.Draining() {
			p.log.Info("resumed: taking new sessions again", "trigger", "sealgate drain --resume")
		}
		p.srv.Resume()
		return p.drainStatus(ctx)
	})
	c.Handle("drain.status", func(ctx context.Context, _ json.RawMessage) (any, error) {
		return p.drainStatus(ctx)
	})
}

// How long SIGTERM waits for sessions to end after draining, and how often it looks.
const (
	sessionDrainTimeout = 30 * time.Second
	drainPoll           = 100 * time.Millisecond
)

// drainAndStop is SIGTERM: the node drains (new clients get 421 4.3.2 and /readyz
// turns 503, so the balancer stops routing here), sessions in progress end after the
// message they are sending, then delivery goes on until nothing is due or in flight,
// for at most limits.drain_timeout; then the runner stops (deliveries in flight get
// relay.DefaultDrainTimeout more). What is left, deferred mail included, stays in the
// spool and goes out when the node starts again.
func (p *process) drainAndStop(cancelRun context.CancelFunc) {
	log, srv := p.log, p.srv
	p.stopping.Store(true)
	log.Info("draining before shutdown", "signal", "SIGINT or SIGTERM", "sessions", srv.Sessions())
	srv.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), sessionDrainTimeout)
	defer cancel()
	for srv.Sessions() > 0 && sctx.Err() == nil {
		select {
		case <-sctx.Done():
		case <-time.After(drainPoll):
		}
	}
	srv.Shutdown(sctx) // closes the listeners; sessions still open after the wait are closed
	deadline := time.Now().Add(p.started.Limits.DrainTimeout)
	for {
		ctx, c := context.WithTimeout(context.Background(), time.Second)
		pend, err := p.runner.Pending(ctx)
		c()
		if err != nil || pend.Due+pend.InFlight == 0 {
			log.Info("shutting down: nothing due for delivery", "deferred", pend.Deferred)
			break
		}
		if !time.Now().Before(deadline) {
			log.Warn("shutting down with mail still due: it stays in the spool for the next start",
				"due", pend.Due, "in_flight", pend.InFlight, "deferred", pend.Deferred, "drain_timeout", p.started.Limits.DrainTimeout)
			break
		}
		time.Sleep(drainPoll)
	}
	cancelRun()
}

func newDrainCmd() *cobra.Command {
	var configFile, dir string
	var resume, wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "drain [--wait [--timeout D]] [--resume] [--config FILE | --dir DIR]",
		Short: "Take the running relay out of service without stopping delivery",
		Long: `Ask the running "sealgate serve" (through DIR/control.sock, mode 0600) to drain: new
connections get 421 4.3.2 and /readyz answers 503, so a load balancer stops routing to this
node; sessions in progress end after the message they are sending; delivery of the queue
goes on. The process keeps running: stop it afterwards (SIGTERM, which drains too), or
--resume to take sessions again.

--wait waits until no session is left and nothing is due or being delivered (deferred mail
stays in the node's spool), at most --timeout; exit 1 if that time ran out.

Prints: draining, sessions, messages due, in flight and deferred.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			d, err := stateDir(dir, configFile)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context(), timeout+10*time.Second)
			defer cancel()
			name := "drain"
			if resume {
				name = "resume"
			}
			var st drainStatus
			if err := relay.ControlCall(ctx, controlSocket(d), name, nil, &st); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			until := time.Now().Add(timeout)
			for wait && !resume && !st.done() {
				if !time.Now().Before(until) {
					printDrain(c, st)
					return exitStatus(1, errors.New("drain: still busy after --timeout"))
				}
				time.Sleep(200 * time.Millisecond)
				if err := relay.ControlCall(ctx, controlSocket(d), "drain.status", nil, &st); err != nil {
					return fmt.Errorf("drain: %w", err)
				}
			}
			printDrain(c, st)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "/etc/sealgate/sealgate.yaml", "configuration file of the running relay (for its dir)")
	f.StringVar(&dir, "dir", "", "the relay's state directory (instead of reading --config)")
	f.BoolVar(&resume, "resume", false, "take new sessions again")
	f.BoolVar(&wait, "wait", false, "wait until no session is left and nothing is due or in flight")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait: the longest wait")
	return cmd
}

func printDrain(c *cobra.Command, st drainStatus) {
	state := "serving"
	if st.Draining {
		state = "draining"
	}
	fmt.Fprintf(c.OutOrStdout(), "%s: sessions=%d due=%d in_flight=%d deferred=%d\n",
		state, st.Sessions, st.Pending.Due, st.Pending.InFlight, st.Pending.Deferred)
}

func init() {
	rootCmd.AddCommand(newDrainCmd())
}
