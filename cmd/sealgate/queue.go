package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"sealgate/relay"
)

// controlSocket is where serve listens for admin commands: <dir>/control.sock.
func controlSocket(dir string) string { return filepath.Join(dir, "control.sock") }

// queueCallTimeout bounds one queue command.
const queueCallTimeout = 30 * time.Second

func newQueueCmd() *cobra.Command {
	var configFile, dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Inspect and manage the delivery queue of the running relay",
		Long: `The queue commands talk to the running "sealgate serve" through its control socket,
DIR/control.sock (mode 0600: run them as the user sealgate runs as), so the spool is only
ever changed by the relay itself and a command never races a delivery. When serve is not
running they say so and change nothing.

  list             every message: queued, deferred, being delivered (active) or failed
  show ID          envelope, per-recipient state, last reply, next attempt, header
  retry ID|--all   deliver now instead of at the next scheduled attempt
  delete ID        remove a message (queued or failed), printing what was removed
  requeue ID       bring a failed message back for delivery to its failed recipients
  stats            counts by state and destination domain, age of the oldest message

DIR is the configuration's "dir" (--config), or --dir.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&configFile, "config", "/etc/sealgate/sealgate.yaml", "configuration file of the running relay (for its dir)")
	pf.StringVar(&dir, "dir", "", "the relay's state directory (instead of reading --config)")

	call := func(c *cobra.Command, name string, args, result any) error {
		d, err := stateDir(dir, configFile)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Context(), queueCallTimeout)
		defer cancel()
		err = relay.ControlCall(ctx, controlSocket(d), name, args, result)
		if errors.Is(err, relay.ErrNotRunning) {
			return fmt.Errorf("%w: the queue commands need it (nothing was changed)", err)
		}
		return err
	}
	printJSON := func(w io.Writer, v any) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}

	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List queued and failed messages",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var entries []relay.QueueEntry
			if err := call(c, "queue.list", nil, &entries); err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), entries)
			}
			printEntries(c.OutOrStdout(), entries, time.Now())
			return nil
		},
	}
	show := &cobra.Command{
		Use:   "show ID [--json]",
		Short: "Show one message: envelope, recipients, last reply, next attempt, header",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var m relay.QueueMessage
			if err := call(c, "queue.show", relay.QueueIDArgs{ID: args[0]}, &m); err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), m)
			}
			printMessage(c.OutOrStdout(), &m, time.Now())
			return nil
		},
	}
	var all bool
	retry := &cobra.Command{
		Use:   "retry ID | --all",
		Short: "Deliver a deferred message (or every queued message) now",
		RunE: func(c *cobra.Command, args []string) error {
			switch {
			case all && len(args) > 0:
				return errors.New("retry: give a queue id or --all, not both")
			case !all && len(args) != 1:
				return errors.New("retry: give one queue id, or --all")
			}
			a := relay.QueueIDArgs{All: all}
			if !all {
				a.ID = args[0]
			}
			var ch relay.QueueChange
			if err := call(c, "queue.retry", a, &ch); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%d message(s) scheduled for delivery now\n", len(ch.IDs))
			for _, id := range ch.IDs {
				fmt.Fprintln(c.OutOrStdout(), id)
			}
			return nil
		},
	}
	retry.Flags().BoolVar(&all, "all", false, "retry every queued message")
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Remove a message from the queue or from failed/ (no DSN is sent)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var ch relay.QueueChange
			if err := call(c, "queue.delete", relay.QueueIDArgs{ID: args[0]}, &ch); err != nil {
				return err
			}
			for _, e := range ch.Removed {
				rcpts := append(append([]string{}, e.To...), e.Failed...)
				fmt.Fprintf(c.OutOrStdout(), "deleted %s (%s, %d bytes, received %s) from <%s> to %s\n",
					e.ID, e.State, e.Size, e.ReceivedAt.UTC().Format(time.RFC3339), e.From, angle(rcpts))
			}
			return nil
		},
	}
	requeue := &cobra.Command{
		Use:   "requeue ID",
		Short: "Bring a failed message back for delivery to its failed recipients",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var ch relay.QueueChange
			if err := call(c, "queue.requeue", relay.QueueIDArgs{ID: args[0]}, &ch); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "requeued %s for delivery now\n", args[0])
			return nil
		},
	}
	stats := &cobra.Command{
		Use:   "stats [--json]",
		Short: "Counts by state and destination domain, and the oldest message's age",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var st relay.QueueStats
			if err := call(c, "queue.stats", nil, &st); err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), st)
			}
			printStats(c.OutOrStdout(), &st)
			return nil
		},
	}
	for _, c := range []*cobra.Command{list, show, stats} {
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	}
	cmd.AddCommand(list, show, retry, del, requeue, stats)
	return cmd
}

func init() {
	rootCmd.AddCommand(newQueueCmd())
}

func angle(addrs []string) string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = "<" + a + ">"
	}
	return strings.Join(out, ", ")
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd%s", int(d.Hours())/24, (d % (24 * time.Hour)).Round(time.Hour))
}

func printEntries(w io.Writer, entries []relay.QueueEntry, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE ID\tSTATE\tSIZE\tAGE\tATTEMPTS\tNEXT\tFROM\tRECIPIENTS")
	for _, e := range entries {
		next := "-"
		if !e.NextAttempt.IsZero() {
			next = age(now, e.NextAttempt)
			if !e.NextAttempt.After(now) {
				next = "now"
			}
		}
		rcpts := e.To
		if e.State == relay.StateFailed {
			rcpts = e.Failed
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t<%s>\t%s\n", e.ID, e.State, e.Size, age(now, e.ReceivedAt),
			e.Attempts, next, e.From, angle(rcpts))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d message(s)\n", len(entries))
}

func printMessage(w io.Writer, m *relay.QueueMessage, now time.Time) {
	env := m.Envelope
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Queue ID", m.ID)
	row("State", m.State)
	row("From", "<"+m.From+">")
	row("Identity", m.Identity)
	row("Received", fmt.Sprintf("%s (%s ago)", m.ReceivedAt.UTC().Format(time.RFC3339), age(now, m.ReceivedAt)))
	if env != nil && !env.RequeuedAt.IsZero() {
		row("Requeued", env.RequeuedAt.UTC().Format(time.RFC3339))
	}
	row("Size", fmt.Sprintf("%d bytes", m.Size))
	row("Attempts", fmt.Sprint(m.Attempts))
	switch {
	case m.State == relay.StateFailed:
		row("Next attempt", "none (failed; requeue to deliver it again)")
	case m.State == relay.StateActive:
		row("Next attempt", "being delivered now")
	case m.NextAttempt.IsZero() || !m.NextAttempt.After(now):
		row("Next attempt", "now")
	default:
		row("Next attempt", fmt.Sprintf("%s (%s)", m.NextAttempt.UTC().Format(time.RFC3339), age(now, m.NextAttempt)))
	}
	if m.LastError != "" {
		row("Last reply", m.LastError)
	}
	if env != nil && (env.EnvID != "" || env.Ret != "") {
		row("DSN", fmt.Sprintf("ENVID=%q RET=%s", env.EnvID, env.Ret))
	}
	tw.Flush()
	fmt.Fprintln(w, "Recipients:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if env != nil {
		for i, rcpt := range env.To {
			extra := ""
			if i < len(env.Notify) && env.Notify[i] != "" {
				extra += " NOTIFY=" + env.Notify[i]
			}
			if i < len(env.ORcpt) && env.ORcpt[i] != "" {
				extra += " ORCPT=" + env.ORcpt[i]
			}
			state := "pending"
			if m.State == relay.StateActive {
				state = "active"
			}
			fmt.Fprintf(tw, "  <%s>\t%s\t%s\n", rcpt, state, strings.TrimSpace(extra))
		}
		for _, f := range env.Failed {
			why := f.Reply
			if why == "" {
				why = f.Error
			}
			extra := []string{"status " + f.Status, why}
			if f.RemoteMTA != "" {
				extra = append(extra, "from "+f.RemoteMTA)
			}
			if f.DSN != "" {
				extra = append(extra, "DSN: "+f.DSN)
			}
			fmt.Fprintf(tw, "  <%s>\tfailed %s\t%s\n", f.Rcpt, f.At.UTC().Format(time.RFC3339), strings.Join(extra, "; "))
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "Header:")
	for _, line := range strings.SplitAfter(strings.ReplaceAll(m.Header, "\r\n", "\n"), "\n") {
		if line != "" {
			fmt.Fprint(w, "  ", line)
		}
	}
}

func printStats(w io.Writer, st *relay.QueueStats) {
	fmt.Fprintf(w, "messages: %d\n", st.Total)
	for _, s := range []string{relay.StateQueued, relay.StateDeferred, relay.StateActive, relay.StateFailed} {
		fmt.Fprintf(w, "  %-9s %d\n", s, st.ByState[s])
	}
	if st.Oldest.IsZero() {
		fmt.Fprintln(w, "oldest: -")
	} else {
		fmt.Fprintf(w, "oldest: %s (%s ago)\n", st.Oldest.UTC().Format(time.RFC3339),
			time.Duration(st.OldestAgeSeconds*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintln(w, "recipients to deliver by domain:")
	domains := make([]string, 0, len(st.ByDomain))
	for d := range st.ByDomain {
		domains = append(domains, d)
	}
	sort.Slice(domains, func(i, j int) bool {
		if st.ByDomain[domains[i]] != st.ByDomain[domains[j]] {
			return st.ByDomain[domains[i]] > st.ByDomain[domains[j]]
		}
		return domains[i] < domains[j]
	})
	for _, d := range domains {
		fmt.Fprintf(w, "  %-30s %d\n", d, st.ByDomain[d])
	}
}
