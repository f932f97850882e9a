package relay

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The journal is the spool's fast path for the common, small message. Instead of
// one new file per message (a create, an fsync, a rename and a directory fsync:
// on the virtualised ext4 we measured, about 0.7–1 ms of kernel CPU per message,
// a third of the relay's whole budget), a message whose body fits in memory is
// appended as one record to the active segment file, journal/<seq>.log, and one
// fdatasync, shared by every message appended meanwhile, makes it durable before
// the 250. The record's payload is exactly the image of a message file
// (queue_format.go), so reading, checking and moving a journal message reuse the
// file code.
//
// A journal message lives there only until its first delivery attempt ends:
//   - delivered (Remove): a done record is appended and made durable by the
//     segment's next group fdatasync (shared with commits) before Remove returns,
//     so a delivered message does not come back after a crash to be sent twice;
//   - deferred (Update) or given up (Fail): the message is written out as its own
//     file in msg/ or failed/ (fsynced, renamed, directory fsynced), then a done
//     record is appended. After a crash between the two the file wins.
//
// Segments are deleted oldest first, once sealed (a newer one is active) and
// without live messages. Deleting only in order keeps every done record until
// the segment holding the message it refers to is gone too.
//
// Record layout (integers big-endian):
//
//	off len
//	  0   4  magic "SGJ1"
//	  4   1  kind: 'M' message (payload = message file image), 'D' done (payload = queue id)
//	  5   3  reserved, 0
//	  8   8  payload length
//	 16   4  CRC-32C of the payload
//	 20   4  CRC-32C of bytes 0..19
//	 24      payload
//
// OpenSpool scans every segment. A record whose header is damaged or cut short
// ends the scan of its segment: records are written in order and a message is
// acknowledged only after an fdatasync that covers everything before it, so
// nothing after a torn record was acknowledged. A record with a sound header but
// a payload that fails its checksum is copied to corrupt/ and skipped.
const (
	dirJournal = "journal"
	extLog     = ".log"

	recHeaderLen = 24
	recMagic     = "SGJ1"
	recMsg       = 'M'
	recDone      = 'D'

	// DefaultJournalMaxBody is the largest body (in bytes) committed through the
	// journal; larger bodies are streamed to their own file as they arrive, so a
	// connection never holds more than this in memory.
	DefaultJournalMaxBody = 256 << 10
)

// segmentMaxBytes is the size after which a new segment is started (a variable
// for tests).
var segmentMaxBytes int64 = 64 << 20

// segment is one journal file.
type segment struct {
	seq  uint64
	path string
	f    *os.File
	sync groupSync // fdatasync of f, shared by concurrent committers

	// Guarded by journal.mu.
	size    int64 // bytes written (the next record's offset)
	live    int   // message records neither done nor moved out
	pending int   // message records written, fdatasync not yet done
	sealed  bool  // no more appends: a newer segment is active, or a write failed
}

// jentry locates a live message's payload in a segment and holds what its
// delivery attempts read of it: the envelope, parsed once (at commit, or by the
// scan at OpenSpool) instead of read and JSON-decoded at every Envelope, Open,
// Update and Fail, and where the header block is. env is never changed: get and
// envelope hand out copies.
type jentry struct {
	seg *segment
	off int64 // of the payload
	n   int64 // payload length

	bodyLen, headerLen int64
	env                *Envelope
}

// newJentry is the entry of the payload at off in seg, of n bytes, holding the
// message m describes.
func newJentry(seg *segment, off, n int64, m *storedMessage) jentry {
	return jentry{seg: seg, off: off, n: n, bodyLen: m.t.bodyLen, headerLen: m.t.headerLen, env: m.env}
}

// journal is the set of segments and the index of the messages they hold.
type journal struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	segs    []*segment // oldest first
	entries map[string]jentry
	nextSeq uint64
}

func segmentName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, extLog) }

// openJournal scans the segments in dir. A message for which moved(id) reports
// a file (it was written out before a crash kept its done record from disk)
// is dropped from the journal: the file is the newer copy.
func openJournal(dir, corruptDir string, log *slog.Logger, moved func(id string) bool) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", dir, err)
	}
	j := &journal{dir: dir, log: log, entries: make(map[string]jentry), nextSeq: 1}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), extLog)
		seq, err := strconv.ParseUint(name, 16, 64)
		if !ok || err != nil || len(name) != 16 {
			log.Warn("spool: ignoring unexpected file in the journal", "path", filepath.Join(dir, e.Name()))
			continue
		}
		j.segs = append(j.segs, &segment{seq: seq, path: filepath.Join(dir, e.Name()), sealed: true})
	}
	slices.SortFunc(j.segs, func(a, b *segment) int { return cmpUint(a.seq, b.seq) })
	fail := func(err error) (*journal, error) {
		j.close()
		return nil, err
	}
	for _, seg := range j.segs {
		if seg.f, err = os.Open(seg.path); err != nil {
			return fail(fmt.Errorf("spool: open %s: %w", seg.path, err))
		}
		seg.sync.do = func() error { return fdatasync(seg.f) }
		if err := j.scan(seg, corruptDir); err != nil {
			return fail(err)
		}
		j.nextSeq = seg.seq + 1
	}
	for id, e := range j.entries {
		if moved(id) {
			delete(j.entries, id)
			log.Info("spool: journal message was already written out to its own file", "queue_id", id)
			continue
		}
		e.seg.live++
	}
	j.mu.Lock()
	err = j.collect()
	j.mu.Unlock()
	if err != nil {
		return fail(err)
	}
	return j, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scan reads seg's records into j.entries (message records add, done records remove).
func (j *journal) scan(seg *segment, corruptDir string) error {
	fi, err := seg.f.Stat()
	if err != nil {
		return fmt.Errorf("spool: stat %s: %w", seg.path, err)
	}
	size := fi.Size()
	br := bufio.NewReaderSize(io.NewSectionReader(seg.f, 0, size), 64<<10)
	var off int64
	var hdr [recHeaderLen]byte
	for off < size {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			j.log.Warn("spool: journal segment ends in a cut-short record (a write interrupted by a crash, never acknowledged)",
				"path", seg.path, "offset", off, "bytes", size-off)
			break
		}
		kind, n, sum, err := parseRecordHeader(hdr[:])
		if err == nil && n > uint64(size-off-recHeaderLen) {
			err = fmt.Errorf("payload of %d bytes runs past the end of the file", n)
		}
		if err != nil {
			j.log.Warn("spool: journal scan stopped at a damaged or cut-short record; nothing after it was acknowledged",
				"path", seg.path, "offset", off, "bytes_left", size-off, "reason", err.Error())
			break
		}
		payloadOff := off + recHeaderLen
		crc := crc32.New(castagnoli)
		var idBuf strings.Builder
		w := io.Writer(crc)
		if kind == recDone {
			w = io.MultiWriter(crc, &idBuf)
		}
		if _, err := io.CopyN(w, br, int64(n)); err != nil {
			return fmt.Errorf("spool: read %s at %d: %w", seg.path, payloadOff, err)
		}
		off = payloadOff + int64(n)
		if crc.Sum32() != sum {
			if kind == recMsg {
				if err := j.quarantine(seg, payloadOff, int64(n), corruptDir); err != nil {
					return err
				}
			} else {
				j.log.Warn("spool: journal done record fails its checksum; ignored", "path", seg.path, "offset", payloadOff-recHeaderLen)
			}
			continue
		}
		switch kind {
		case recDone:
			delete(j.entries, idBuf.String())
		case recMsg:
			e := jentry{seg: seg, off: payloadOff, n: int64(n)}
			m, err := e.parse()
			if err != nil {
				// The checksum matched, so this is not damage on disk but a record
				// we cannot use; keep it for inspection.
				if err := j.quarantine(seg, payloadOff, int64(n), corruptDir); err != nil {
					return err
				}
				continue
			}
			j.entries[m.env.ID] = newJentry(seg, payloadOff, int64(n), m)
		}
	}
	seg.size = off
	return nil
}

// parseRecordHeader checks a record header and returns its kind, payload length
// and payload checksum.
func parseRecordHeader(h []byte) (kind byte, n uint64, sum uint32, err error) {
	if string(h[:4]) != recMagic {
		return 0, 0, 0, errors.New("bad record magic")
	}
	if got, want := crc32.Checksum(h[:20], castagnoli), binary.BigEndian.Uint32(h[20:]); got != want {
		return 0, 0, 0, fmt.Errorf("record header checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	kind = h[4]
	if kind != recMsg && kind != recDone || h[5]|h[6]|h[7] != 0 {
		return 0, 0, 0, fmt.Errorf("unknown record kind %q", kind)
	}
	return kind, binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[16:]), nil
}

// putRecordHeader fills the first recHeaderLen bytes of rec, whose payload follows.
func putRecordHeader(rec []byte, kind byte) {
	h := rec[:recHeaderLen]
	copy(h, recMagic)
	h[4] = kind
	h[5], h[6], h[7] = 0, 0, 0
	binary.BigEndian.PutUint64(h[8:], uint64(len(rec)-recHeaderLen))
	binary.BigEndian.PutUint32(h[16:], crc32.Checksum(rec[recHeaderLen:], castagnoli))
	binary.BigEndian.PutUint32(h[20:], crc32.Checksum(h[:20], castagnoli))
}

// quarantine copies a damaged message payload to corrupt/<segment>-<offset>.rec.
func (j *journal) quarantine(seg *segment, off, n int64, corruptDir string) error {
	p := filepath.Join(corruptDir, fmt.Sprintf("%016x-%d.rec", seg.seq, off))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		_, err = io.Copy(f, io.NewSectionReader(seg.f, off, n))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("spool: copy a damaged journal record to %s: %w", p, err)
	}
	j.log.Error("spool: damaged journal record copied to corrupt/ and skipped", "path", seg.path, "offset", off-recHeaderLen, "copy", p)
	return nil
}

// parse checks and parses the message payload e points to.
func (e jentry) parse() (*storedMessage, error) {
	r := io.NewSectionReader(e.seg.f, e.off, e.n)
	t, header, js, err := readTail(r, e.n, kindMsg)
	if err != nil {
		return nil, err
	}
	if err := checkHeader(header); err != nil {
		return nil, badFile("%v", err)
	}
	env, err := decodeEnvelopeAny(js)
	if err != nil {
		return nil, err
	}
	if !validID(env.ID) {
		return nil, badFile("invalid queue id %q", env.ID)
	}
	return &storedMessage{t: t, env: env, header: header}, nil
}

// decodeEnvelopeAny parses envelope JSON whose id is not known beforehand.
func decodeEnvelopeAny(js []byte) (*Envelope, error) {
	env := new(Envelope)
	if err := json.Unmarshal(js, env); err != nil {
		return nil, badFile("envelope: %v", err)
	}
	return env, nil
}

// body returns a reader of e's message body.
func (e jentry) body(bodyLen int64) *io.SectionReader {
	return io.NewSectionReader(e.seg.f, e.off, bodyLen)
}

// get returns the live journal message id: a copy of its envelope and its header
// block, read from the segment; found is false if the journal does not hold it.
// A message done while being read gives an error matching fs.ErrNotExist, as a
// removed file does.
func (j *journal) get(id string) (e jentry, m *storedMessage, found bool, err error) {
	e, ok := j.lookup(id)
	if !ok {
		return jentry{}, nil, false, nil
	}
	header := make([]byte, e.headerLen)
	if _, err = e.seg.f.ReadAt(header, e.off+e.bodyLen); err == nil {
		err = checkHeader(header) // as it was committed or scanned; a read gone wrong is caught here
	}
	if err != nil {
		if _, still := j.lookup(id); !still {
			return jentry{}, nil, true, fmt.Errorf("spool: %s: %w", id, fs.ErrNotExist)
		}
		return jentry{}, nil, true, fmt.Errorf("spool: journal message %s: %w", id, err)
	}
	m = &storedMessage{t: trailer{kind: kindMsg, bodyLen: e.bodyLen, headerLen: e.headerLen}, env: e.env.clone(), header: header}
	return e, m, true, nil
}

// envelope returns a copy of the envelope of live journal message id, without
// reading the segment.
func (j *journal) envelope(id string) (*Envelope, bool) {
	e, ok := j.lookup(id)
	if !ok {
		return nil, false
	}
	return e.env.clone(), true
}

// lookup returns the live journal message id, if there is one.
func (j *journal) lookup(id string) (jentry, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.entries[id]
	return e, ok
}

// ids returns the ids of the live journal messages.
func (j *journal) ids() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	ids := make([]string, 0, len(j.entries))
	for id := range j.entries {
		ids = append(ids, id)
	}
	return ids
}

// active returns the segment to append n bytes to, starting a new one when
// there is none, the current one is sealed or would grow past segmentMaxBytes.
// A new segment's directory entry is fsynced before anything is appended to it.
// Called with j.mu held.
func (j *journal) active(n int) (*segment, error) {
	if k := len(j.segs); k > 0 {
		seg := j.segs[k-1]
		if !seg.sealed && (seg.size == 0 || seg.size+int64(n) <= segmentMaxBytes) {
			return seg, nil
		}
		seg.sealed = true
	}
	seg := &segment{seq: j.nextSeq, path: filepath.Join(j.dir, segmentName(j.nextSeq))}
	f, err := os.OpenFile(seg.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: create journal segment %s: %w", seg.path, err)
	}
	if err := syncDir(j.dir); err != nil {
		f.Close()
		os.Remove(seg.path)
		return nil, err
	}
	j.nextSeq++
	seg.f = f
	seg.sync.do = func() error { return fdatasync(f) }
	j.segs = append(j.segs, seg)
	if err := j.collect(); err != nil {
		j.log.Error("spool: delete done journal segment", "error", err)
	}
	return seg, nil
}

// append writes rec (header space included) to the active segment and returns
// where it went. Called with j.mu held.
func (j *journal) append(rec []byte, kind byte) (*segment, int64, error) {
	putRecordHeader(rec, kind)
	seg, err := j.active(len(rec))
	if err != nil {
		return nil, 0, err
	}
	off := seg.size
	if _, err := seg.f.WriteAt(rec, off); err != nil {
		// Whatever reached the file after off is a torn record: the scan at the
		// next start stops there, before anything appended later. So append no more.
		seg.sealed = true
		return nil, 0, fmt.Errorf("spool: write to %s: %w", seg.path, err)
	}
	seg.size += int64(len(rec))
	return seg, off, nil
}

// commit appends the message record rec for id and returns once an fdatasync
// that started after the write has completed: then, and only then, may the
// message be acknowledged. The message is then live, m (its envelope and where
// its header is) kept in memory for its delivery.
func (j *journal) commit(id string, rec []byte, m *storedMessage) error {
	j.mu.Lock()
	seg, off, err := j.append(rec, recMsg)
	if err == nil {
		seg.pending++
	}
	j.mu.Unlock()
	if err != nil {
		return err
	}
	err = seg.sync.sync()
	j.mu.Lock()
	defer j.mu.Unlock()
	seg.pending--
	if err != nil {
		// The record may or may not be on disk. Say it is done, so that if it
		// is, it does not come back after a restart to be delivered alongside
		// the client's retry; and stop appending to a file whose pages the
		// kernel may have dropped.
		seg.sealed = true
		if _, _, derr := j.append(doneRecord(id), recDone); derr != nil {
			j.log.Error("spool: could not cancel a journal record whose fdatasync failed", "queue_id", id, "error", derr)
		}
		return fmt.Errorf("spool: fdatasync %s: %w", seg.path, err)
	}
	j.entries[id] = newJentry(seg, off+recHeaderLen, int64(len(rec)-recHeaderLen), m)
	seg.live++
	return nil
}

// recordBufs recycles the buffers message records are built in (header space, body,
// header block, envelope, trailer); most messages fit in the initial 16 KiB.
var recordBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 16<<10)
	return &b
}}

// getRecordBuf returns an empty record with room reserved for its header.
func getRecordBuf() []byte {
	return (*recordBufs.Get().(*[]byte))[:recHeaderLen]
}

// putRecordBuf recycles rec, unless it grew large; rec must not be used afterwards.
func putRecordBuf(rec []byte) {
	if cap(rec) <= 64<<10 {
		rec = rec[:0]
		recordBufs.Put(&rec)
	}
}

func doneRecord(id string) []byte {
	rec := make([]byte, recHeaderLen, recHeaderLen+len(id))
	return append(rec, id...)
}

// done ends the journal life of message id (delivered, or written out to its
// own file) by appending a done record, without an fdatasync of its own.
func (j *journal) done(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.entries[id]
	if !ok {
		return nil
	}
	delete(j.entries, id)
	e.seg.live--
	_, _, err := j.append(doneRecord(id), recDone)
	if cerr := j.collect(); err == nil {
		err = cerr
	}
	return err
}

// remove ends the journal life of delivered message id durably: its done record
// is appended and an fdatasync of the segment it went to, shared like a commit's,
// has completed when remove returns. The segment is held (pending) meanwhile, so
// it is not deleted before it is synced.
func (j *journal) remove(id string) error {
	j.mu.Lock()
	e, ok := j.entries[id]
	if !ok {
		j.mu.Unlock()
		return nil
	}
	delete(j.entries, id)
	e.seg.live--
	seg, _, err := j.append(doneRecord(id), recDone)
	if err == nil {
		seg.pending++
	}
	cerr := j.collect()
	j.mu.Unlock()
	if err != nil {
		return err
	}
	err = seg.sync.sync()
	j.mu.Lock()
	seg.pending--
	if err != nil {
		// Whether the done record reached the disk is unknown: the message may
		// come back after a crash and be delivered again, never lost. Append no
		// more to a file whose pages the kernel may have dropped.
		seg.sealed = true
		err = fmt.Errorf("spool: fdatasync %s: %w", seg.path, err)
	}
	if c := j.collect(); cerr == nil {
		cerr = c
	}
	j.mu.Unlock()
	if err != nil {
		return err
	}
	return cerr
}

// collect deletes the oldest segments while they are sealed and hold neither
// live nor pending messages. Called with j.mu held.
func (j *journal) collect() error {
	for len(j.segs) > 0 {
		seg := j.segs[0]
		if !seg.sealed || seg.live > 0 || seg.pending > 0 {
			return nil
		}
		if seg.f != nil {
			seg.f.Close()
		}
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: delete journal segment %s: %w", seg.path, err)
		}
		j.segs = j.segs[1:]
	}
	return nil
}

func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, seg := range j.segs {
		if seg.f != nil {
			seg.f.Close()
			seg.f = nil
		}
	}
}
