package relay

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Spool layout under the directory given to OpenSpool:
//
//	tmp/            bodies being received and meta files being written; emptied by OpenSpool
//	msg/<id>.body   body of a queued message (renamed here from tmp/ at Commit)
//	msg/<id>.meta   envelope + signed header block; its presence IS the commit
//	failed/         messages given up on (permanent failure or too old), kept for the
//	                DSN generator of a later issue and for the admin; same file names
//	corrupt/        meta files OpenSpool could not use, kept for inspection
//	lock            flock(2)ed while a Spool is open, so two processes never share a spool
const (
	dirTmp     = "tmp"
	dirMsg     = "msg"
	dirFailed  = "failed"
	dirCorrupt = "corrupt"

	extMeta = ".meta"
	extBody = ".body"

	// metaMagic starts every meta file, so a format change can be recognised.
	metaMagic = "sealgate-spool 1\n"
)

// Envelope is the SMTP envelope of a queued message plus its delivery state.
// It is stored as JSON in the message's meta file.
type Envelope struct {
	// ID is the queue id, set by Commit.
	ID string `json:"id"`
	// From is the reverse-path (RFC 5321 §4.1.1.2); empty for the null sender <>.
	From string `json:"from"`
	// To holds the recipients still to be delivered. Accepted recipients are removed
	// after a partial delivery.
	To []string `json:"to"`
	// Identity is who submitted the message (the authenticated login).
	Identity   string    `json:"identity"`
	ReceivedAt time.Time `json:"received_at"`

	// DSN parameters passed through from submission (RFC 3461 §4); may be empty.
	// EnvID is the decoded ENVID, Ret is "FULL" or "HDRS". Notify and ORcpt are either
	// empty or parallel to To: one entry per recipient, "" where the client gave none.
	// Notify entries are the NOTIFY value ("SUCCESS,DELAY", "NEVER", ...); ORcpt entries
	// are "addr-type;decoded-address" (RFC 3461 §4.2).
	EnvID  string   `json:"envid,omitempty"`
	Ret    string   `json:"ret,omitempty"`
	Notify []string `json:"notify,omitempty"`
	ORcpt  []string `json:"orcpt,omitempty"`

	// Size is the length in bytes of the stored message (header + blank line + body),
	// set by Commit; used for the SIZE parameter (RFC 1870).
	Size int64 `json:"size"`

	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`

	// Failed lists recipients that will not be delivered, for the DSN (bounce)
	// generator of a later issue.
	Failed []FailedRecipient `json:"failed,omitempty"`
}

// FailedRecipient records why a recipient was given up on.
type FailedRecipient struct {
	Rcpt   string    `json:"rcpt"`
	ORcpt  string    `json:"orcpt,omitempty"`
	Notify string    `json:"notify,omitempty"`
	Error  string    `json:"error"`
	At     time.Time `json:"at"`
}

// removeRecipient drops To[i] and the parallel Notify/ORcpt entries.
func (e *Envelope) removeRecipient(i int) {
	e.To = slices.Delete(e.To, i, i+1)
	if len(e.Notify) > i {
		e.Notify = slices.Delete(e.Notify, i, i+1)
	}
	if len(e.ORcpt) > i {
		e.ORcpt = slices.Delete(e.ORcpt, i, i+1)
	}
}

// Spool is a durable message queue on plain files: the single hand-off between
// submission and delivery. It is safe for concurrent use. Only one Spool (one
// process) may have a directory open at a time.
type Spool struct {
	dir    string
	log    *slog.Logger
	lock   *os.File
	msgDir *dirSyncer
	fail   *dirSyncer

	notify chan struct{}

	mu        sync.Mutex
	lastNanos int64    // last time used in an id, for strictly increasing ids
	committed []string // ids committed since the runner last drained them
}

// OpenSpool opens (creating if needed, mode 0700) the spool in dir and recovers
// from a crash: it removes temporary files, removes bodies whose meta file was
// never committed, finishes interrupted moves to failed/, and moves meta files it
// cannot use to corrupt/. Every repair is logged with slog.
func OpenSpool(dir string) (*Spool, error) {
	return openSpool(dir, slog.Default())
}

func openSpool(dir string, log *slog.Logger) (*Spool, error) {
	for _, d := range []string{"", dirTmp, dirMsg, dirFailed, dirCorrupt} {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, fmt.Errorf("spool: create %s: %w", p, err)
		}
	}
	lock, err := lockDir(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, err
	}
	s := &Spool{
		dir:    dir,
		log:    log,
		lock:   lock,
		msgDir: &dirSyncer{path: filepath.Join(dir, dirMsg)},
		fail:   &dirSyncer{path: filepath.Join(dir, dirFailed)},
		notify: make(chan struct{}, 1),
	}
	if err := s.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the spool's lock. Messages stay on disk.
func (s *Spool) Close() error {
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("spool: close %s: %w", s.lock.Name(), err)
	}
	return nil
}

func (s *Spool) path(sub, id, ext string) string {
	return filepath.Join(s.dir, sub, id+ext)
}

// recover repairs what a crash can leave behind. See the ordering in Commit and Fail.
func (s *Spool) recover() error {
	tmp := filepath.Join(s.dir, dirTmp)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("spool: read %s: %w", tmp, err)
	}
	for _, e := range entries {
		p := filepath.Join(tmp, e.Name())
		// Nothing in tmp/ was ever acknowledged: the commit point is the rename into msg/.
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("spool: remove orphaned temp file %s: %w", p, err)
		}
		s.log.Warn("spool: removed orphaned temp file", "path", p)
	}

	metas, bodies, err := s.scanDir(dirMsg)
	if err != nil {
		return err
	}
	fmetas, fbodies, err := s.scanDir(dirFailed)
	if err != nil {
		return err
	}
	changed := false
	for id := range bodies {
		if metas[id] {
			continue
		}
		p := s.path(dirMsg, id, extBody)
		if fmetas[id] && !fbodies[id] {
			// Crash inside Fail after the meta moved: finish the move.
			if err := os.Rename(p, s.path(dirFailed, id, extBody)); err != nil {
				return fmt.Errorf("spool: finish moving %s to failed: %w", id, err)
			}
			fbodies[id] = true
			s.log.Warn("spool: finished interrupted move to failed", "queue_id", id)
		} else {
			// Crash inside Commit before the meta rename: never acknowledged.
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("spool: remove uncommitted body %s: %w", p, err)
			}
			s.log.Warn("spool: removed body of uncommitted message", "queue_id", id, "path", p)
		}
		changed = true
	}
	for id := range metas {
		var why string
		if !bodies[id] {
			why = "body file missing"
		} else if _, _, err := s.readMeta(dirMsg, id); err != nil {
			why = err.Error()
		}
		if why == "" {
			continue
		}
		// Keep the evidence; never deliver half a message.
		if err := s.quarantine(dirMsg, id); err != nil {
			return err
		}
		s.log.Error("spool: unusable message moved to corrupt/", "queue_id", id, "reason", why)
		changed = true
	}
	for id := range fmetas {
		if !fbodies[id] {
			s.log.Error("spool: failed message has no body", "queue_id", id,
				"path", s.path(dirFailed, id, extMeta))
		}
	}
	if changed {
		for _, d := range []string{dirMsg, dirFailed, dirCorrupt} {
			if err := syncDir(filepath.Join(s.dir, d)); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanDir returns the ids having a meta file and those having a body file in sub.
func (s *Spool) scanDir(sub string) (metas, bodies map[string]bool, err error) {
	d := filepath.Join(s.dir, sub)
	entries, err := os.ReadDir(d)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: read %s: %w", d, err)
	}
	metas, bodies = map[string]bool{}, map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		id, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
		switch {
		case validID(id) && ext == extMeta:
			metas[id] = true
		case validID(id) && ext == extBody:
			bodies[id] = true
		default:
			s.log.Warn("spool: unexpected file left alone", "path", filepath.Join(d, name))
		}
	}
	return metas, bodies, nil
}

func (s *Spool) quarantine(sub, id string) error {
	for _, ext := range []string{extMeta, extBody} {
		from, to := s.path(sub, id, ext), s.path(dirCorrupt, id, ext)
		if err := os.Rename(from, to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: move %s to %s: %w", from, to, err)
		}
	}
	return nil
}

// Notify returns a channel that receives a value (coalesced) after each successful
// Commit, so a single consumer such as Runner wakes at once instead of polling.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// takeCommitted returns the ids committed since the previous call.
func (s *Spool) takeCommitted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.committed
	s.committed = nil
	return ids
}

// newID returns a unique, time-sortable, filename-safe id: 8 bytes of big-endian
// Unix nanoseconds (strictly increasing within the process) and 7 random bytes in
// lower-case base32hex, whose alphabet sorts like the bytes it encodes.
func (s *Spool) newID() (string, error) {
	var b [15]byte
	s.mu.Lock()
	n := time.Now().UnixNano()
	if n <= s.lastNanos {
		n = s.lastNanos + 1
	}
	s.lastNanos = n
	s.mu.Unlock()
	binary.BigEndian.PutUint64(b[:8], uint64(n))
	if _, err := rand.Read(b[8:]); err != nil {
		return "", fmt.Errorf("spool: random id: %w", err)
	}
	return idEncoding.EncodeToString(b[:]), nil
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

const idLen = 24 // base32 of 15 bytes

func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'v') {
			return false
		}
	}
	return true
}

func checkID(id string) error {
	if !validID(id) {
		return fmt.Errorf("spool: invalid queue id %q", id)
	}
	return nil
}

// Incoming is a message being received. Write the body to it, then call Commit
// or Abort. It is not safe for concurrent use.
type Incoming struct {
	s    *Spool
	id   string
	f    *os.File
	size int64
	done bool // committed, aborted or commit attempted

	committed bool
	aborted   bool
}

// Create starts a new message: it creates the body's temporary file.
func (s *Spool) Create() (*Incoming, error) {
	id, err := s.newID()
	if err != nil {
		return nil, err
	}
	p := s.path(dirTmp, id, extBody)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", p, err)
	}
	return &Incoming{s: s, id: id, f: f}, nil
}

// ID returns the queue id the message will have once committed.
func (in *Incoming) ID() string { return in.id }

// Write appends body bytes (streamed during DATA). The bytes are stored as given.
func (in *Incoming) Write(p []byte) (int, error) {
	if in.done {
		return 0, fmt.Errorf("spool: write to finished message %s", in.id)
	}
	n, err := in.f.Write(p)
	in.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("spool: write body of %s: %w", in.id, err)
	}
	return n, nil
}

// Commit makes the message durable and queues it. header is the final header
// block: header fields each ending in CRLF, without the blank line that separates
// it from the body. env.ID, env.Size and (if zero) env.ReceivedAt are filled in.
//
// Order: body fsync; body renamed into msg/; meta (envelope + header) written to
// tmp/, fsynced and renamed to msg/<id>.meta — the commit point; then a directory
// fsync of msg/, shared with concurrent committers. Only after Commit returns nil
// may the client be told 250. If Commit fails, nothing is queued.
func (in *Incoming) Commit(env *Envelope, header []byte) (id string, err error) {
	s := in.s
	if in.done {
		return "", fmt.Errorf("spool: commit of finished message %s", in.id)
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
	if err := in.f.Sync(); err != nil {
		in.f.Close()
		return "", fmt.Errorf("spool: fsync body of %s: %w", in.id, err)
	}
	if err := in.f.Close(); err != nil {
		return "", fmt.Errorf("spool: close body of %s: %w", in.id, err)
	}
	in.f = nil

	env.ID = in.id
	env.Size = int64(len(header)) + 2 + in.size
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = time.Now()
	}
	body := s.path(dirMsg, in.id, extBody)
	if err := os.Rename(s.path(dirTmp, in.id, extBody), body); err != nil {
		return "", fmt.Errorf("spool: move body of %s into queue: %w", in.id, err)
	}
	if err := s.writeMeta(dirMsg, env, header); err != nil {
		os.Remove(body)
		return "", err
	}
	if err := s.msgDir.sync(); err != nil {
		// Durability unknown: undo, so the client's retry does not make a duplicate.
		s.removeFiles(dirMsg, in.id)
		return "", fmt.Errorf("spool: commit %s: %w", in.id, err)
	}

	in.committed = true
	s.mu.Lock()
	s.committed = append(s.committed, in.id)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return in.id, nil
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

// Abort discards the message and its temporary file. It is a no-op after a
// successful Commit, so `defer in.Abort()` is safe.
func (in *Incoming) Abort() error {
	if in.f != nil {
		in.f.Close()
		in.f = nil
	}
	if in.committed || in.aborted {
		return nil
	}
	in.done, in.aborted = true, true
	p := in.s.path(dirTmp, in.id, extBody)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: abort %s: %w", p, err)
	}
	return nil
}

// writeMeta writes env and header to tmp/, fsyncs and renames to sub/<id>.meta.
// The caller syncs the directory.
func (s *Spool) writeMeta(sub string, env *Envelope, header []byte) error {
	js, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("spool: encode envelope of %s: %w", env.ID, err)
	}
	buf := make([]byte, 0, len(metaMagic)+len(js)+1+len(header))
	buf = append(buf, metaMagic...)
	buf = append(buf, js...)
	buf = append(buf, '\n')
	buf = append(buf, header...)

	f, err := os.CreateTemp(filepath.Join(s.dir, dirTmp), env.ID+extMeta+".*")
	if err != nil {
		return fmt.Errorf("spool: create meta of %s: %w", env.ID, err)
	}
	tmp := f.Name()
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path(sub, env.ID, extMeta))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: write meta of %s: %w", env.ID, err)
	}
	return nil
}

// readMeta reads sub/<id>.meta.
func (s *Spool) readMeta(sub, id string) (*Envelope, []byte, error) {
	p := s.path(sub, id, extMeta)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: read %s: %w", p, err)
	}
	rest, ok := bytes.CutPrefix(data, []byte(metaMagic))
	if !ok {
		return nil, nil, fmt.Errorf("spool: %s: not a spool meta file", p)
	}
	js, header, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return nil, nil, fmt.Errorf("spool: %s: truncated", p)
	}
	env := new(Envelope)
	if err := json.Unmarshal(js, env); err != nil {
		return nil, nil, fmt.Errorf("spool: %s: %w", p, err)
	}
	if env.ID != id {
		return nil, nil, fmt.Errorf("spool: %s: holds id %q", p, env.ID)
	}
	if err := checkHeader(header); err != nil {
		return nil, nil, fmt.Errorf("spool: %s: %w", p, err)
	}
	return env, header, nil
}

// List returns the ids of queued (committed, not failed) messages, oldest first.
func (s *Spool) List() ([]string, error) {
	d := filepath.Join(s.dir, dirMsg)
	entries, err := os.ReadDir(d)
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", d, err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), extMeta); ok && validID(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // ids sort by creation time
	return ids, nil
}

// Envelope returns the envelope of a queued message without opening its body.
func (s *Spool) Envelope(id string) (*Envelope, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	env, _, err := s.readMeta(dirMsg, id)
	return env, err
}

// Open returns a queued message's envelope and its content: the header block,
// CRLF, then the body, byte for byte as committed. The caller closes the reader.
func (s *Spool) Open(id string) (*Envelope, io.ReadCloser, error) {
	if err := checkID(id); err != nil {
		return nil, nil, err
	}
	env, header, err := s.readMeta(dirMsg, id)
	if err != nil {
		return nil, nil, err
	}
	p := s.path(dirMsg, id, extBody)
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: open %s: %w", p, err)
	}
	return env, &messageReader{Reader: io.MultiReader(bytes.NewReader(header), strings.NewReader("\r\n"), f), f: f}, nil
}

type messageReader struct {
	io.Reader
	f *os.File
}

func (m *messageReader) Close() error { return m.f.Close() }

// Update atomically replaces the stored envelope of queued message env.ID (for
// attempts, next attempt, remaining recipients). The header block is kept.
func (s *Spool) Update(env *Envelope) error {
	if err := checkID(env.ID); err != nil {
		return err
	}
	_, header, err := s.readMeta(dirMsg, env.ID)
	if err != nil {
		return err
	}
	if err := s.writeMeta(dirMsg, env, header); err != nil {
		return err
	}
	return s.msgDir.sync()
}

// Remove deletes a queued message (after delivery). The meta file goes first, so
// a crash in between leaves only a body that OpenSpool removes. No directory fsync:
// after a crash a removed message may come back and be delivered twice, which
// SMTP tolerates (RFC 5321 §6.1); losing one it does not.
func (s *Spool) Remove(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	return s.removeFiles(dirMsg, id)
}

func (s *Spool) removeFiles(sub, id string) error {
	for _, ext := range []string{extMeta, extBody} {
		p := s.path(sub, id, ext)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: remove %s: %w", p, err)
		}
	}
	return nil
}

// Fail stores env (with its LastError and Failed recipients) and moves the message
// from the queue to failed/, where it waits for the DSN generator (a later issue)
// or an admin. Order: meta updated in place, meta renamed to failed/ (the message
// leaves the queue), body renamed; OpenSpool finishes an interrupted move.
func (s *Spool) Fail(env *Envelope) error {
	if err := checkID(env.ID); err != nil {
		return err
	}
	_, header, err := s.readMeta(dirMsg, env.ID)
	if err != nil {
		return err
	}
	if err := s.writeMeta(dirMsg, env, header); err != nil {
		return err
	}
	for _, ext := range []string{extMeta, extBody} {
		from, to := s.path(dirMsg, env.ID, ext), s.path(dirFailed, env.ID, ext)
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("spool: move %s to failed: %w", from, err)
		}
	}
	if err := s.fail.sync(); err != nil {
		return err
	}
	return s.msgDir.sync()
}

// dirSyncer group-commits fsyncs of one directory: a caller needs a sync that
// started after its rename; if one is running it waits for the next, and one
// fsync serves every caller waiting when it starts (libraries.md §4).
type dirSyncer struct {
	path string

	mu        sync.Mutex
	cond      *sync.Cond
	running   bool
	started   uint64 // number of fsyncs started
	completed uint64 // number of fsyncs finished
	failedGen uint64 // number of the last fsync that failed
	failedErr error
}

func (d *dirSyncer) sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cond == nil {
		d.cond = sync.NewCond(&d.mu)
	}
	target := d.started + 1 // the first fsync to start from now on covers our renames
	for d.completed < target {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		gen := d.started
		d.mu.Unlock()
		err := syncDir(d.path)
		d.mu.Lock()
		d.running = false
		d.completed = gen
		if err != nil {
			d.failedGen, d.failedErr = gen, err
		}
		d.cond.Broadcast()
	}
	// Conservative: a failure in any fsync since ours started may have lost our entry.
	if d.failedGen >= target {
		return d.failedErr
	}
	return nil
}

func syncDir(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("spool: open directory %s: %w", p, err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("spool: fsync directory %s: %w", p, err)
	}
	return nil
}
