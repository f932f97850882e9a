package relay

// Receiving a message into the spool: Create, the body streamed in by Write,
// and Commit, the point after which the client may be told 250 (RFC 5321
// §4.1.1.4, §6.1). Small bodies go to the journal (queue_journal.go), larger ones to
// their own msg/<id>.part, renamed to .msg at Commit.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// Incoming is a message being received. Write the body to it, then call Commit
// or Abort. It is not safe for concurrent use.
type Incoming struct {
	s        *Spool
	id       string
	f        *os.File // the .part file; nil while the body is buffered for the journal
	buf      []byte   // journal record being built: header space, then the body so far
	file     bool     // the .part file was created
	size     int64
	writeErr error // first Write error; such a message cannot be committed
	done     bool  // committed, aborted or commit attempted

	committed bool
	aborted   bool
}

// Create starts a new message. With the journal on, the body is buffered in
// memory until it outgrows SpoolOptions.JournalMaxBody; otherwise (and from then
// on) it goes to msg/<id>.part, the file that becomes the message at Commit.
func (s *Spool) Create() (*Incoming, error) {
	id, err := s.newID()
	if err != nil {
		return nil, err
	}
	in := &Incoming{s: s, id: id}
	if s.journalMax > 0 {
		in.buf = getRecordBuf()
		return in, nil
	}
	if err := in.createFile(); err != nil {
		return nil, err
	}
	return in, nil
}

// createFile creates msg/<id>.part and moves any buffered body into it.
func (in *Incoming) createFile() error {
	p := in.s.path(dirMsg, in.id, extPart)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spool: create %s: %w", p, err)
	}
	in.f, in.file = f, true
	if in.buf != nil {
		buf := in.buf
		in.buf = nil
		_, err := f.Write(buf[recHeaderLen:])
		putRecordBuf(buf)
		if err != nil {
			return fmt.Errorf("spool: write body of %s: %w", in.id, err)
		}
	}
	return nil
}

// ID returns the queue id the message will have once committed.
func (in *Incoming) ID() string { return in.id }

// Write appends body bytes (streamed during DATA). The bytes are stored as given.
func (in *Incoming) Write(p []byte) (int, error) {
	if in.done {
		return 0, fmt.Errorf("spool: write to finished message %s", in.id)
	}
	if in.writeErr != nil {
		return 0, in.writeErr
	}
	if in.buf != nil {
		if in.size+int64(len(p)) <= in.s.journalMax {
			in.buf = append(in.buf, p...)
			in.size += int64(len(p))
			return len(p), nil
		}
		if err := in.createFile(); err != nil {
			in.writeErr = err
			return 0, err
		}
	}
	n, err := in.f.Write(p)
	in.size += int64(n)
	if err != nil {
		in.writeErr = fmt.Errorf("spool: write body of %s: %w", in.id, err)
		return n, in.writeErr
	}
	return n, nil
}

// Commit makes the message durable and queues it. header is the final header
// block: header fields each ending in CRLF, without the blank line that separates
// it from the body. env.ID, env.Size and (if zero) env.ReceivedAt are filled in.
//
// Order: header block, envelope and trailer appended to msg/<id>.part after the
// body; one fsync of that file; rename to msg/<id>.msg — the commit point; then a
// directory fsync of msg/, shared with concurrent committers. Only after Commit
// returns nil may the client be told 250. If Commit fails, nothing is queued.
func (in *Incoming) Commit(env *Envelope, header []byte) (id string, err error) {
	s := in.s
	if in.done {
		return "", fmt.Errorf("spool: commit of finished message %s", in.id)
	}
	if in.writeErr != nil {
		return "", fmt.Errorf("spool: commit %s after a failed write: %w", in.id, in.writeErr)
	}
	if err := checkHeader(header); err != nil {
		return "", fmt.Errorf("spool: commit %s: %w", in.id, err)
	}
	if len(env.To) == 0 {
		return "", fmt.Errorf("spool: commit %s: no recipients", in.id)
	}
	if n := len(env.Notify); n != 0 && n != len(env.To) {
		return "", fmt.Errorf("spool: commit %s: %d NOTIFY entries for %d recipients", in.id, n, len(env.To))
	}
	if n := len(env.ORcpt); n != 0 && n != len(env.To) {
		return "", fmt.Errorf("spool: commit %s: %d ORCPT entries for %d recipients", in.id, n, len(env.To))
	}
	defer func() {
		if err != nil {
			in.Abort()
		}
	}()
	in.done = true

	env.ID = in.id
	env.Size = int64(len(header)) + 2 + in.size
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = time.Now()
	}
	if in.buf != nil {
		rec, err := appendTail(in.buf, kindMsg, in.size, header, env)
		if err != nil {
			return "", fmt.Errorf("spool: commit %s: %w", in.id, err)
		}
		in.buf = nil
		// The envelope as stored: a copy, since the caller's may change, without the
		// monotonic clock reading JSON does not keep.
		stored := env.clone()
		stored.ReceivedAt = stored.ReceivedAt.Round(0)
		m := &storedMessage{t: trailer{kind: kindMsg, bodyLen: in.size, headerLen: int64(len(header))}, env: stored}
		err = s.journal.commit(in.id, rec, m)
		putRecordBuf(rec)
		if err != nil {
			return "", fmt.Errorf("spool: commit %s: %w", in.id, err)
		}
		return in.committedNow(), nil
	}
	tail, err := appendTail(nil, kindMsg, in.size, header, env)
	if err != nil {
		return "", fmt.Errorf("spool: commit %s: %w", in.id, err)
	}
	if _, err := in.f.Write(tail); err != nil {
		return "", fmt.Errorf("spool: write %s: %w", in.id, err)
	}
	if err := in.f.Sync(); err != nil {
		return "", fmt.Errorf("spool: fsync %s: %w", in.id, err)
	}
	err = in.f.Close()
	in.f = nil
	if err != nil {
		return "", fmt.Errorf("spool: close %s: %w", in.id, err)
	}
	p := s.path(dirMsg, in.id, extMsg)
	if err := os.Rename(s.path(dirMsg, in.id, extPart), p); err != nil {
		return "", fmt.Errorf("spool: commit %s: %w", in.id, err)
	}
	if err := s.msgDir.sync(); err != nil {
		// Durability unknown: undo, so the client's retry does not make a duplicate.
		os.Remove(p)
		return "", fmt.Errorf("spool: commit %s: %w", in.id, err)
	}
	return in.committedNow(), nil
}

// committedNow marks in committed and hands its id to the Runner.
func (in *Incoming) committedNow() string {
	s := in.s
	in.committed = true
	s.mu.Lock()
	s.committed = append(s.committed, in.id)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return in.id
}

// checkHeader insists on a non-empty CRLF-terminated header block without the blank line.
func checkHeader(h []byte) error {
	switch {
	case len(h) == 0:
		return errors.New("empty header block")
	case !bytes.HasSuffix(h, []byte("\r\n")):
		return errors.New("header block does not end in CRLF")
	case bytes.HasPrefix(h, []byte("\r\n")) || bytes.Contains(h, []byte("\r\n\r\n")):
		return errors.New("header block contains a blank line")
	}
	return nil
}

// Abort discards the message and its .part file. It is a no-op after a
// successful Commit, so `defer in.Abort()` is safe.
func (in *Incoming) Abort() error {
	if in.buf != nil {
		putRecordBuf(in.buf)
		in.buf = nil
	}
	if in.f != nil {
		in.f.Close()
		in.f = nil
	}
	if in.committed || in.aborted {
		return nil
	}
	in.done, in.aborted = true, true
	if !in.file {
		return nil
	}
	p := in.s.path(dirMsg, in.id, extPart)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: abort %s: %w", p, err)
	}
	return nil
}
