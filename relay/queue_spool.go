package relay

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"sealgate/internal/atomicfile"
)

// Spool layout under the directory given to OpenSpool (file format in queue_format.go):
//
//	msg/<id>.part   a message being received: created by Create, the body streamed
//	                into it; removed by OpenSpool (it was never answered 250)
//	msg/<id>.msg    a queued message: body, header block, envelope and a checksummed
//	                trailer in one file; renamed from .part at Commit, which IS the commit
//	msg/<id>.env    newer envelope of a queued message (Update), overriding the one in
//	                its .msg; never present without the .msg
//	tmp/            files being written atomically (.env overrides, messages written
//	                out of the journal); emptied by OpenSpool
//	failed/         messages given up on (permanent failure or too old), kept for the
//	                admin with what a DSN would need; same file names
//	corrupt/        files OpenSpool could not use, kept for inspection
//	journal/        <seq>.log segments holding small messages until their first
//	                delivery attempt ends (queue_journal.go); the fast path of Commit
//	lock            flock(2)ed while a Spool is open, so two processes never share a spool
const (
	dirTmp     = "tmp"
	dirMsg     = "msg"
	dirFailed  = "failed"
	dirCorrupt = "corrupt"

	extPart = ".part"
	extMsg  = ".msg"
	extEnv  = ".env"
)

// Envelope is the SMTP envelope of a queued message plus its delivery state.
// It is stored as JSON in the tail of the message file (queue_format.go).
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

	// Submitter is the purported responsible address of the header (RFC 4407 §2),
	// computed at acceptance; "" when the header has none. Sent as SUBMITTER
	// (RFC 4405) to servers that offer it.
	Submitter string `json:"submitter,omitempty"`
	// RequireTLS is set when the client asked for REQUIRETLS (RFC 8689 §3): the
	// message goes only over verified TLS to servers that offer REQUIRETLS.
	// Both fields are optional members of the envelope JSON, so format version
	// 2 holds them: files written before they existed read as "" and false.
	RequireTLS bool `json:"requiretls,omitempty"`
	// UTF8 says the message needs SMTPUTF8 (RFC 6531 §3.4): a UTF-8 local part
	// in the envelope or UTF-8 in the header. It is sent only to next hops that
	// offer SMTPUTF8; to one that does not, the recipients fail with 5.6.7 and
	// no downgrade (RFC 6531 §3.5). Optional like RequireTLS: older files read
	// as false.
	UTF8 bool `json:"smtputf8,omitempty"`
	// EightBit records the client's BODY=8BITMIME (RFC 6152), declared again to
	// next hops that offer 8BITMIME. Optional: older files read as false.
	EightBit bool `json:"8bitmime,omitempty"`

	// HeaderFrom is the domain of the header From (RFC 5322 §3.6.2) as the
	// message left the pipeline, and DKIM the signatures we added (d= and s=):
	// what the send log keeps so DMARC aggregate reports (RFC 7489 §7.2) can be
	// matched to our mail. Optional members, like Submitter: older files read
	// as empty.
	HeaderFrom string          `json:"header_from,omitempty"`
	DKIM       []DKIMSignature `json:"dkim,omitempty"`

	// Size is the length in bytes of the stored message (header + blank line + body),
	// set by Commit; used for the SIZE parameter (RFC 1870).
	Size int64 `json:"size"`

	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`

	// Failed lists recipients that will not be delivered, with why: what a
	// delivery status notification (RFC 3464) reports.
	Failed []FailedRecipient `json:"failed,omitempty"`

	// DelayWarned is when a delay warning DSN was queued (at most one per message).
	DelayWarned time.Time `json:"delay_warned,omitzero"`
	// RequeuedAt is when an admin brought the message back from failed/
	// ("sealgate queue requeue"); retries run until MaxAge after it.
	RequeuedAt time.Time `json:"requeued_at,omitzero"`

	// bounce holds the recipients given up on during the current attempt,
	// for Runner.Bouncer; not stored.
	bounce []RecipientError
}

// DKIMSignature names one DKIM-Signature we added: its d= and s= (RFC 6376 §3.5).
type DKIMSignature struct {
	Domain   string `json:"d"`
	Selector string `json:"s"`
}

// FailedRecipient records why a recipient was given up on.
type FailedRecipient struct {
	Rcpt   string    `json:"rcpt"`
	ORcpt  string    `json:"orcpt,omitempty"`
	Notify string    `json:"notify,omitempty"`
	Error  string    `json:"error"`
	At     time.Time `json:"at"`
	// Status is the enhanced status code (RFC 3463) of the failure, the
	// server's or one derived from it; Reply is the server's reply ("550 5.1.1
	// ...") and RemoteMTA the server that gave it, "" when none did.
	Status    string `json:"status,omitempty"`
	Reply     string `json:"reply,omitempty"`
	RemoteMTA string `json:"remote_mta,omitempty"`
	// DSN is the queue id of the DSN (RFC 3464) sent about this recipient, or
	// why none was (DSNNotRequested, DSNNullSender, ...); "" before the
	// Runner's Bouncer has seen it.
	DSN string `json:"dsn,omitempty"`
}

// queuedSince is when the retry period of env began: acceptance, or the last requeue.
func (e *Envelope) queuedSince() time.Time {
	if e.RequeuedAt.After(e.ReceivedAt) {
		return e.RequeuedAt
	}
	return e.ReceivedAt
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

// clone returns a copy of e that shares no slice with it (bounce, not stored, is
// left out).
func (e *Envelope) clone() *Envelope {
	c := *e
	c.To = slices.Clone(e.To)
	c.Notify = slices.Clone(e.Notify)
	c.ORcpt = slices.Clone(e.ORcpt)
	c.Failed = slices.Clone(e.Failed)
	c.bounce = nil
	return &c
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
// checksum is bad to corrupt/, and scans the journal (queue_journal.go). Every repair
// is logged with slog.
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

// tmpOptions are those of every atomic write in the spool: the temporary file in
// tmp/, which OpenSpool empties, so a crash leaves nothing among the messages;
// the directory fsync left to the caller, who groups it with concurrent ones.
func (s *Spool) tmpOptions() atomicfile.Options {
	return atomicfile.Options{Perm: 0o600, TempDir: filepath.Join(s.dir, dirTmp), NoDirSync: true}
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
