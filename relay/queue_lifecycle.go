package relay

// The queue's life after Commit: reading a queued message (List, Envelope,
// Open), recording a deferral (Update), and taking it out of the queue when
// delivered (Remove) or given up on (Fail). Each change is ordered so that a
// crash at any point leaves what OpenSpool's recovery (queue_recover.go)
// completes or undoes.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sealgate/internal/atomicfile"
)

// storedMessage is a checked message file, opened.
type storedMessage struct {
	f      *os.File
	t      trailer
	env    *Envelope // from the .env override if there is one
	header []byte
}

// readMessage opens and checks sub/<id>.msg and reads its envelope, or that of
// sub/<id>.env if present. A missing .msg gives an error matching fs.ErrNotExist.
// With keepOpen the caller closes m.f; otherwise it is closed.
func (s *Spool) readMessage(sub, id string, keepOpen bool) (m *storedMessage, err error) {
	p := s.path(sub, id, extMsg)
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", p, err)
	}
	defer func() {
		if err != nil || !keepOpen {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool: stat %s: %w", p, err)
	}
	t, header, js, err := readTail(f, fi.Size(), kindMsg)
	if err != nil {
		return nil, fmt.Errorf("spool: %s: %w", p, err)
	}
	if err := checkHeader(header); err != nil {
		return nil, fmt.Errorf("spool: %s: %w", p, badFile("%v", err))
	}
	env, err := decodeEnvelope(js, id)
	if err != nil {
		return nil, fmt.Errorf("spool: %s: %w", p, err)
	}
	if override, err := s.readEnv(sub, id); err == nil {
		env = override
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return &storedMessage{f: f, t: t, env: env, header: header}, nil
}

// readEnv reads the envelope override sub/<id>.env.
func (s *Spool) readEnv(sub, id string) (*Envelope, error) {
	p := s.path(sub, id, extEnv)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", p, err)
	}
	_, _, js, err := readTail(bytes.NewReader(data), int64(len(data)), kindEnv)
	if err == nil {
		var env *Envelope
		if env, err = decodeEnvelope(js, id); err == nil {
			return env, nil
		}
	}
	return nil, fmt.Errorf("spool: %s: %w", p, err)
}

// writeEnv writes env atomically to sub/<id>.env, replacing any earlier one. The
// caller syncs the directory.
func (s *Spool) writeEnv(sub string, env *Envelope) error {
	buf, err := appendTail(nil, kindEnv, 0, nil, env)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	err = atomicfile.WriteFunc(s.path(sub, env.ID, extEnv), s.tmpOptions(), func(w io.Writer) error {
		_, err := w.Write(buf)
		return err
	})
	if err != nil {
		return fmt.Errorf("spool: envelope of %s: %w", env.ID, err)
	}
	return nil
}

// List returns the ids of queued (committed, not failed) messages, oldest first.
func (s *Spool) List() ([]string, error) {
	d := filepath.Join(s.dir, dirMsg)
	entries, err := os.ReadDir(d)
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", d, err)
	}
	ids := s.journal.ids()
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), extMsg); ok && validID(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)                // ids sort by creation time
	return slices.Compact(ids), nil // one written out of the journal may be listed twice
}

// Envelope returns the envelope of a queued message without reading its body:
// that of msg/<id>.env if present, else the one stored in msg/<id>.msg.
func (s *Spool) Envelope(id string) (*Envelope, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if env, found := s.journal.envelope(id); found {
		return env, nil
	}
	m, err := s.readMessage(dirMsg, id, false)
	if err != nil {
		return nil, err
	}
	return m.env, nil
}

// Open returns a queued message's envelope (as Envelope does) and its content:
// the header block, CRLF, then the body, byte for byte as committed, read from
// the message file. The caller closes the reader.
func (s *Spool) Open(id string) (*Envelope, io.ReadCloser, error) {
	if err := checkID(id); err != nil {
		return nil, nil, err
	}
	if e, m, found, err := s.journal.get(id); found {
		if err != nil {
			return nil, nil, err
		}
		r := io.MultiReader(bytes.NewReader(m.header), strings.NewReader("\r\n"), e.body(m.t.bodyLen))
		return m.env, io.NopCloser(r), nil
	}
	m, err := s.readMessage(dirMsg, id, true)
	if err != nil {
		return nil, nil, err
	}
	r := io.MultiReader(bytes.NewReader(m.header), strings.NewReader("\r\n"), io.NewSectionReader(m.f, 0, m.t.bodyLen))
	return m.env, &messageReader{Reader: r, f: m.f}, nil
}

type messageReader struct {
	io.Reader
	f *os.File
}

func (m *messageReader) Close() error { return m.f.Close() }

// Update atomically replaces the stored envelope of queued message env.ID (for
// attempts, next attempt, remaining recipients) by writing msg/<id>.env (temp
// file, fsync, rename, directory fsync). The message file is not touched.
func (s *Spool) Update(env *Envelope) error {
	if err := checkID(env.ID); err != nil {
		return err
	}
	if _, ok := s.journal.lookup(env.ID); ok {
		return s.writeOut(dirMsg, env)
	}
	// Refuse to write an override for a message that is gone or unusable.
	if _, err := s.readMessage(dirMsg, env.ID, false); err != nil {
		return err
	}
	if err := s.writeEnv(dirMsg, env); err != nil {
		return err
	}
	return s.msgDir.sync()
}

// Remove takes a delivered message out of the queue, durably: when it returns
// nil, not even a power failure brings the message back to be delivered again.
// A journal message gets a done record covered by an fdatasync of its segment; a
// message file is unlinked (the .msg first, so a crash in between leaves only an
// .env that OpenSpool removes) and msg/ fsynced. Either sync is shared with
// concurrent commits and removals, as Commit's are. A crash before it returns
// may deliver the message twice, which SMTP tolerates (RFC 5321 §6.1).
func (s *Spool) Remove(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if _, ok := s.journal.lookup(id); ok {
		return s.journal.remove(id)
	}
	for _, ext := range []string{extMsg, extEnv} {
		p := s.path(dirMsg, id, ext)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: remove %s: %w", p, err)
		}
	}
	return s.msgDir.sync()
}

// writeOut moves journal message env.ID to its own file, sub/<id>.msg, holding
// env as its envelope (Update: sub is msg/, the message stays queued; Fail: sub
// is failed/). Order: the file written in tmp/ and fsynced, renamed to
// sub/<id>.msg, the directory fsynced; only then the done record in the journal. A crash in
// between leaves both, and OpenSpool keeps the file.
func (s *Spool) writeOut(sub string, env *Envelope) error {
	e, m, found, err := s.journal.get(env.ID)
	if !found {
		err = fmt.Errorf("spool: %s: %w", env.ID, fs.ErrNotExist)
	}
	if err != nil {
		return err
	}
	tail, err := appendTail(nil, kindMsg, m.t.bodyLen, m.header, env)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	err = atomicfile.WriteFunc(s.path(sub, env.ID, extMsg), s.tmpOptions(), func(w io.Writer) error {
		_, err := io.Copy(w, io.MultiReader(e.body(m.t.bodyLen), bytes.NewReader(tail)))
		return err
	})
	if err != nil {
		return fmt.Errorf("spool: %s out of the journal: %w", env.ID, err)
	}
	syncer := s.msgDir
	if sub == dirFailed {
		syncer = s.fail
	}
	if err := syncer.sync(); err != nil {
		return err
	}
	return s.journal.done(env.ID)
}

// Fail stores env (with its LastError and Failed recipients) and moves the message
// from the queue to failed/, where it waits for an admin (and the data a DSN
// needs stays with it). Order: env written to failed/<id>.env and failed/ fsynced; the
// .msg renamed to failed/ (the message leaves the queue); the old msg/<id>.env
// removed; failed/ and msg/ fsynced. OpenSpool finishes an interrupted move.
func (s *Spool) Fail(env *Envelope) error {
	if err := checkID(env.ID); err != nil {
		return err
	}
	if _, ok := s.journal.lookup(env.ID); ok {
		return s.writeOut(dirFailed, env)
	}
	if _, err := s.readMessage(dirMsg, env.ID, false); err != nil {
		return err
	}
	if err := s.writeEnv(dirFailed, env); err != nil {
		return err
	}
	if err := s.fail.sync(); err != nil {
		return err
	}
	from, to := s.path(dirMsg, env.ID, extMsg), s.path(dirFailed, env.ID, extMsg)
	if err := os.Rename(from, to); err != nil {
		os.Remove(s.path(dirFailed, env.ID, extEnv)) // still queued: undo, best effort
		return fmt.Errorf("spool: move %s to failed: %w", from, err)
	}
	old := s.path(dirMsg, env.ID, extEnv) // superseded by failed/<id>.env
	if err := os.Remove(old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: remove %s: %w", old, err)
	}
	if err := s.fail.sync(); err != nil {
		return err
	}
	return s.msgDir.sync()
}
