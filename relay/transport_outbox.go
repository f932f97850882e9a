package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"sealgate/internal/atomicfile"
)

// OutboxSink is a Deliverer for dev mode: it writes each message to
// Dir/<queue id>.eml (mode 0600) instead of sending it. The name is the queue id
// alone, so a message delivered again (after a crash between the write and its
// removal from the spool) replaces its earlier copy instead of adding a second.
type OutboxSink struct {
	Dir string
	// Verify, when set, is given each message once it is written, to show what a
	// receiver would make of it (dev mode logs the Authentication-Results it would
	// get). It cannot fail the delivery.
	Verify func(ctx context.Context, env *Envelope, msg []byte)
}

// Deliver writes msg atomically (temporary file, fsync, rename, directory fsync),
// then removes temporary files that an earlier, interrupted delivery of the same
// message left behind: they hold a copy of it too.
func (o OutboxSink) Deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	if err := checkID(env.ID); err != nil {
		return &PermanentError{Err: err}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("outbox: create %s: %w", o.Dir, err)
	}
	p := filepath.Join(o.Dir, env.ID+".eml")
	var copied bytes.Buffer
	if o.Verify != nil {
		msg = io.TeeReader(msg, &copied)
	}
	err := atomicfile.WriteFunc(p, atomicfile.Options{Perm: 0o600}, func(w io.Writer) error {
		_, err := io.Copy(w, msg)
		return err
	})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	// The Runner delivers one message at most once at a time, so no write of p runs now.
	if err := atomicfile.RemoveTemps(p, ""); err != nil {
		slog.Warn("outbox: leftover of an interrupted delivery not removed", "queue_id", env.ID, "error", err)
	}
	slog.Info("delivered to outbox", "queue_id", env.ID, "path", p)
	if o.Verify != nil {
		o.Verify(ctx, env, copied.Bytes())
	}
	return nil
}
