package relay

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
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

	"sealgate/internal/atomicfile"
)

// Spool layout under the directory given to OpenSpool (file format in spool_format.go):
//
//	msg/<id>.part   a message being received: created by Create, the body streamed
//	                into it; removed by OpenSpool (it was never answered 250)
//	msg/<id>.msg    a queued message: body, header block, envelope and a checksummed
//	                trailer in one file; renamed from .part at Commit, which IS the commit
//	msg/<id>.env    newer envelope of a queued message (Update), overriding the one in
//	                its .msg; never present without the .msg
//	tmp/            files being written atomically (.env overrides, messages written
//	                out of the journal, conversions); emptied by OpenSpool
//	failed/         messages given up on (permanent failure or too old), kept for the
//	                DSN generator of a later issue and for the admin; same file names
//	corrupt/        files OpenSpool could not use, kept for inspection
//	journal/        <seq>.log segments holding small messages until their first
//	                delivery attempt ends (journal.go); the fast path of Commit
//	lock            flock(2)ed while a Spool is open, so two processes never share a spool
//
// Messages of the older layout (msg/<id>.meta + msg/<id>.body, and the same in
// failed/) are converted to .msg files by OpenSpool.
const (
	dirTmp     = "tmp"
	dirMsg     = "msg"
	dirFailed  = "failed"
	dirCorrupt = "corrupt"

	extPart = ".part"
	extMsg  = ".msg"
	extEnv  = ".env"

	// Format version 1, migrated by OpenSpool.
	extMeta = ".meta"
	extBody = ".body"
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
	msgDir *groupSync
	fail   *groupSync

	journal    *journal // nil when disabled
	journalMax int64

	notify chan struct{}

	mu        sync.Mutex
	lastNanos int64    // last time used in an id, for strictly increasing ids
	committed []string // ids committed since the runner last drained them
}

// SpoolOptions tune a Spool. The zero value gives the defaults.
type SpoolOptions struct {
	// JournalMaxBody is the largest body committed through the journal (held in
	// memory while it arrives, then appended to a shared segment file); larger
	// ones get their own file as they stream in. 0 means DefaultJournalMaxBody;
	// a negative value turns the journal off, so every message gets its own file.
	JournalMaxBody int64
	// Logger receives recovery and error events; nil means slog.Default().
	Logger *slog.Logger
}

// OpenSpool opens (creating if needed, mode 0700) the spool in dir with the
// default options and recovers from a crash: it removes temporary and .part
// files (never acknowledged), finishes interrupted moves to failed/, removes
// envelope overrides whose message is gone, moves messages whose trailer or
// checksum is bad to corrupt/, converts messages of the older meta + body layout
// to the current one, and scans the journal (journal.go). Every repair is logged
// with slog.
func OpenSpool(dir string) (*Spool, error) {
	return OpenSpoolWith(dir, SpoolOptions{})
}

// OpenSpoolWith is OpenSpool with options.
func OpenSpoolWith(dir string, o SpoolOptions) (*Spool, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.JournalMaxBody == 0 {
		o.JournalMaxBody = DefaultJournalMaxBody
	}
	return openSpool(dir, o)
}

func openSpool(dir string, o SpoolOptions) (*Spool, error) {
	log := o.Logger
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
		msgDir: newDirSync(filepath.Join(dir, dirMsg)),
		fail:   newDirSync(filepath.Join(dir, dirFailed)),
		notify: make(chan struct{}, 1),
	}
	if err := s.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	// The journal is scanned even when new messages will not use it, so that
	// messages it still holds are delivered.
	j, err := openJournal(filepath.Join(dir, dirJournal), filepath.Join(dir, dirCorrupt), log, func(id string) bool {
		for _, sub := range []string{dirMsg, dirFailed} {
			if _, err := os.Lstat(s.path(sub, id, extMsg)); err == nil {
				return true
			}
		}
		return false
	})
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.journal, s.journalMax = j, o.JournalMaxBody
	return s, nil
}

// Close releases the spool's lock. Messages stay on disk.
func (s *Spool) Close() error {
	s.journal.close()
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("spool: close %s: %w", s.lock.Name(), err)
	}
	return nil
}

func (s *Spool) path(sub, id, ext string) string {
	return filepath.Join(s.dir, sub, id+ext)
}

// dirFiles holds, per file extension, the ids having such a file in one directory.
type dirFiles map[string]map[string]bool

func (d dirFiles) has(ext, id string) bool { return d[ext][id] }

// recover repairs what a crash can leave behind. See the ordering in Commit,
// Update, Remove and Fail.
func (s *Spool) recover() error {
	tmp := filepath.Join(s.dir, dirTmp)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("spool: read %s: %w", tmp, err)
	}
	for _, e := range entries {
		p := filepath.Join(tmp, e.Name())
		// Only files being written live here (envelope overrides, messages written
		// out of the journal or converted, and bodies and meta files of the older
		// layout); each still has its source elsewhere, or was never acknowledged.
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("spool: remove orphaned temp file %s: %w", p, err)
		}
		s.log.Warn("spool: removed orphaned temp file", "path", p)
	}

	msg, err := s.scanDir(dirMsg)
	if err != nil {
		return err
	}
	failed, err := s.scanDir(dirFailed)
	if err != nil {
		return err
	}
	changed := false
	remove := func(sub, id, ext, what string) error {
		p := s.path(sub, id, ext)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: remove %s: %w", p, err)
		}
		s.log.Warn("spool: removed "+what, "queue_id", id, "path", p)
		changed = true
		return nil
	}

	// A .part was never renamed, so never answered 250 (in failed/: left by an
	// older version's unfinished conversion or write-out; the sources are still there).
	for sub, files := range map[string]dirFiles{dirMsg: msg, dirFailed: failed} {
		for id := range files[extPart] {
			if err := remove(sub, id, extPart, "uncommitted message"); err != nil {
				return err
			}
		}
	}

	obsolete, legacyChanged, err := s.recoverLegacy(msg, failed)
	if err != nil {
		return err
	}
	changed = changed || legacyChanged

	// Fail writes failed/<id>.env before it moves the .msg: finish the move.
	for id := range failed[extEnv] {
		if failed.has(extMsg, id) {
			continue
		}
		if !msg.has(extMsg, id) {
			s.log.Error("spool: failed/ holds an envelope without its message", "queue_id", id,
				"path", s.path(dirFailed, id, extEnv))
			continue
		}
		from, to := s.path(dirMsg, id, extMsg), s.path(dirFailed, id, extMsg)
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("spool: finish moving %s to failed: %w", id, err)
		}
		delete(msg[extMsg], id)
		failed[extMsg][id] = true
		s.log.Warn("spool: finished interrupted move to failed", "queue_id", id)
		changed = true
	}

	for id := range msg[extMsg] {
		_, err := s.readMessage(dirMsg, id, false)
		if err == nil {
			continue
		}
		// Keep the evidence; never deliver half a message.
		if err := s.quarantine(dirMsg, id, extMsg, extEnv); err != nil {
			return err
		}
		delete(msg[extEnv], id)
		s.log.Error("spool: unusable message moved to corrupt/", "queue_id", id, "reason", err.Error())
		changed = true
	}
	// An override whose message is gone: Remove or Fail was interrupted, or an
	// Update raced a Remove. The message has left the queue; so does this.
	for id := range msg[extEnv] {
		if !msg.has(extMsg, id) {
			if err := remove(dirMsg, id, extEnv, "envelope of a message no longer queued"); err != nil {
				return err
			}
		}
	}

	if changed {
		for _, d := range []string{dirMsg, dirFailed, dirCorrupt} {
			if err := syncDir(filepath.Join(s.dir, d)); err != nil {
				return err
			}
		}
	}
	// Only now that the converted files are durable may their sources go.
	for _, p := range obsolete {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: remove converted %s: %w", p, err)
		}
	}
	return nil
}

// recoverLegacy deals with messages of the older layout (format version 1: a
// meta file and a body file): it finishes a Fail interrupted between its two
// renames, removes bodies whose meta file was never committed, moves unusable
// queued pairs to corrupt/ and converts every usable pair, queued or failed, to a
// .msg file. It returns the old files to remove once the new ones are durable,
// and whether it changed anything.
func (s *Spool) recoverLegacy(msg, failed dirFiles) (obsolete []string, changed bool, err error) {
	for id := range msg[extBody] {
		if msg.has(extMeta, id) {
			continue
		}
		p := s.path(dirMsg, id, extBody)
		if failed.has(extMeta, id) && !failed.has(extBody, id) {
			// The old Fail moved the meta file first.
			if err := os.Rename(p, s.path(dirFailed, id, extBody)); err != nil {
				return nil, false, fmt.Errorf("spool: finish moving %s to failed: %w", id, err)
			}
			failed[extBody][id] = true
			s.log.Warn("spool: finished interrupted move to failed", "queue_id", id)
		} else {
			// The old Commit crashed before the meta rename: never acknowledged.
			if err := os.Remove(p); err != nil {
				return nil, false, fmt.Errorf("spool: remove uncommitted body %s: %w", p, err)
			}
			s.log.Warn("spool: removed body of uncommitted message", "queue_id", id, "path", p)
		}
		delete(msg[extBody], id)
		changed = true
	}
	for _, sub := range []string{dirMsg, dirFailed} {
		files := msg
		if sub == dirFailed {
			files = failed
		}
		for id := range files[extMeta] {
			env, header, err := s.readLegacy(sub, id)
			if err != nil {
				if sub == dirFailed {
					// Not ours to judge any more; the admin sees the log.
					s.log.Error("spool: failed message of the older layout left as it is", "queue_id", id, "reason", err.Error())
					continue
				}
				if err := s.quarantine(sub, id, extMeta, extBody); err != nil {
					return nil, false, err
				}
				s.log.Error("spool: unusable message moved to corrupt/", "queue_id", id, "reason", err.Error())
				changed = true
				continue
			}
			// A .msg next to the pair is from a conversion interrupted before the
			// pair was removed; converting again replaces it, whatever its state.
			if err := s.convertLegacy(sub, id, env, header); err != nil {
				return nil, false, err
			}
			files[extMsg][id] = true
			obsolete = append(obsolete, s.path(sub, id, extMeta), s.path(sub, id, extBody))
			s.log.Info("spool: converted message to the current format", "queue_id", id, "dir", sub)
			changed = true
		}
		for id := range files[extBody] {
			if !files.has(extMeta, id) { // only in failed/ by now
				s.log.Error("spool: body without meta file left as it is", "path", s.path(sub, id, extBody))
			}
		}
	}
	return obsolete, changed, nil
}

// readLegacy reads the meta file of an older-layout message and checks that its
// body exists.
func (s *Spool) readLegacy(sub, id string) (*Envelope, []byte, error) {
	p := s.path(sub, id, extMeta)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: read %s: %w", p, err)
	}
	env, header, err := parseLegacyMeta(data, id)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: %s: %w", p, err)
	}
	if _, err := os.Stat(s.path(sub, id, extBody)); err != nil {
		return nil, nil, fmt.Errorf("spool: body file missing: %w", err)
	}
	return env, header, nil
}

// convertLegacy writes sub/<id>.msg from an older-layout pair: the body and then
// the tail Commit appends, written atomically through tmp/. The caller syncs the
// directory.
func (s *Spool) convertLegacy(sub, id string, env *Envelope, header []byte) error {
	body, err := os.Open(s.path(sub, id, extBody))
	if err != nil {
		return fmt.Errorf("spool: convert %s: %w", id, err)
	}
	defer body.Close()
	err = atomicfile.WriteFunc(s.path(sub, id, extMsg), s.tmpOptions(), func(w io.Writer) error {
		n, err := io.Copy(w, body)
		if err != nil {
			return err
		}
		tail, err := appendTail(nil, kindMsg, n, header, env)
		if err != nil {
			return err
		}
		_, err = w.Write(tail)
		return err
	})
	if err != nil {
		return fmt.Errorf("spool: convert %s: %w", id, err)
	}
	return nil
}

// tmpOptions are those of every atomic write in the spool: the temporary file in
// tmp/, which OpenSpool empties, so a crash leaves nothing among the messages;
// the directory fsync left to the caller, who groups it with concurrent ones.
func (s *Spool) tmpOptions() atomicfile.Options {
	return atomicfile.Options{Perm: 0o600, TempDir: filepath.Join(s.dir, dirTmp), NoDirSync: true}
}

// scanDir returns which ids have which files in sub; other files are logged and
// left alone.
func (s *Spool) scanDir(sub string) (dirFiles, error) {
	d := filepath.Join(s.dir, sub)
	entries, err := os.ReadDir(d)
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", d, err)
	}
	files := dirFiles{}
	for _, ext := range []string{extPart, extMsg, extEnv, extMeta, extBody} {
		files[ext] = map[string]bool{}
	}
	for _, e := range entries {
		name := e.Name()
		id, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
		if set, ok := files[ext]; ok && validID(id) && e.Type().IsRegular() {
			set[id] = true
		} else {
			s.log.Warn("spool: unexpected file left alone", "path", filepath.Join(d, name))
		}
	}
	return files, nil
}

// quarantine moves the files of id with the given extensions from sub to corrupt/.
func (s *Spool) quarantine(sub, id string, exts ...string) error {
	for _, ext := range exts {
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
		err = s.journal.commit(in.id, rec)
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
	if _, m, found, err := s.journal.get(id); found {
		if err != nil {
			return nil, err
		}
		return m.env, nil
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

// Remove deletes a queued message (after delivery): the .msg first, so a crash in
// between leaves only an .env that OpenSpool removes. No directory fsync: after a
// crash a removed message may come back and be delivered twice, which SMTP
// tolerates (RFC 5321 §6.1); losing one it does not.
func (s *Spool) Remove(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if _, ok := s.journal.lookup(id); ok {
		return s.journal.done(id)
	}
	for _, ext := range []string{extMsg, extEnv} {
		p := s.path(dirMsg, id, ext)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: remove %s: %w", p, err)
		}
	}
	return nil
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
// from the queue to failed/, where it waits for the DSN generator (a later issue)
// or an admin. Order: env written to failed/<id>.env and failed/ fsynced; the
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

// groupSync group-commits a sync (of a directory or a journal segment): a caller
// needs a sync that started after its own write; if one is running it waits for
// the next, and one sync serves every caller waiting when it starts
// (libraries.md §4).
type groupSync struct {
	do func() error

	mu        sync.Mutex
	cond      *sync.Cond
	running   bool
	started   uint64 // number of syncs started
	completed uint64 // number of syncs finished
	failedGen uint64 // number of the last sync that failed
	failedErr error
}

func newDirSync(path string) *groupSync {
	return &groupSync{do: func() error { return syncDir(path) }}
}

func (g *groupSync) sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	target := g.started + 1 // the first sync to start from now on covers our writes
	for g.completed < target {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := g.do()
		g.mu.Lock()
		g.running = false
		g.completed = gen
		if err != nil {
			g.failedGen, g.failedErr = gen, err
		}
		g.cond.Broadcast()
	}
	// Conservative: a failure in any sync since ours started may have lost our write.
	if g.failedGen >= target {
		return g.failedErr
	}
	return nil
}

func syncDir(p string) error {
	if err := atomicfile.SyncDir(p); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}
