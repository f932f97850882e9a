package relay

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
	"sync"
	"testing"
	"time"
)

// segments returns the names of the journal's segment files.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, dirJournal))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// recordStarts returns the offset of each record in a segment's bytes, and the end.
func recordStarts(t *testing.T, data []byte) []int {
	t.Helper()
	var offs []int
	off := 0
	for off < len(data) {
		offs = append(offs, off)
		_, n, _, err := parseRecordHeader(data[off : off+recHeaderLen])
		if err != nil {
			t.Fatalf("record at %d: %v", off, err)
		}
		off += recHeaderLen + int(n)
	}
	return append(offs, off)
}

// threeInSegment commits three small messages to a new spool in dir, closes it and
// returns their ids with the path and bytes of the one segment holding them.
func threeInSegment(t *testing.T, dir string) (ids []string, seg string, data []byte) {
	t.Helper()
	s := testSpool(t, dir)
	for i := range 3 {
		ids = append(ids, commit(t, s, testEnv("b@example.net"), testHeader, fmt.Sprintf("message %d\r\n", i)))
	}
	s.Close()
	seg = filepath.Join(dir, dirJournal, segments(t, dir)[0])
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	return ids, seg, data
}

func testEnv(rcpt string) *Envelope {
	return &Envelope{From: "a@example.com", To: []string{rcpt}, Identity: "a@example.com"}
}

func TestJournalRoundTripAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir)
	body := "line one\r\n..dot\r\n\r\nlast"
	id := commit(t, s, testEnv("b@example.net"), testHeader, body[:5], body[5:])

	if files := filesOf(t, dir, id); len(files) != 0 {
		t.Errorf("a small message made files %v; want it only in the journal", files)
	}
	if segs := segments(t, dir); len(segs) != 1 {
		t.Fatalf("journal segments = %v, want one", segs)
	}
	env, got := readMessage(t, s, id)
	if want := testHeader + "\r\n" + body; got != want {
		t.Errorf("stored message\n%q\nwant\n%q", got, want)
	}
	if env.ID != id || env.Size != int64(len(testHeader)+2+len(body)) || env.To[0] != "b@example.net" {
		t.Errorf("envelope = %+v", env)
	}

	// Restart: the journal is scanned, the message is still queued, byte for byte.
	s.Close()
	s = testSpool(t, dir)
	if ids, err := s.List(); err != nil || !slices.Equal(ids, []string{id}) {
		t.Fatalf("List after restart = %v, %v", ids, err)
	}
	if _, got2 := readMessage(t, s, id); got2 != got {
		t.Errorf("after restart the message reads\n%q\nwant\n%q", got2, got)
	}

	// Delivered: gone, also after another restart; the old, now empty, segment is deleted.
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open after Remove: %v, want ErrNotExist", err)
	}
	s.Close()
	s = testSpool(t, dir)
	if ids, _ := s.List(); len(ids) != 0 {
		t.Errorf("List after Remove and restart = %v", ids)
	}
	// The first segment only held done messages; the second holds the done record
	// and is the newest, so it stays until a newer one exists.
	if segs := segments(t, dir); len(segs) > 1 || slices.Contains(segs, segmentName(1)) {
		t.Errorf("segments after everything was delivered = %v, want at most the newest", segs)
	}
}

// TestJournalEnvelopeKeptInMemory: a journal message's envelope is parsed once, at
// commit, and kept for its delivery attempts: Envelope and Open do not read it from
// the segment again (changed bytes there go unnoticed until the next OpenSpool's
// scan, which checks the record's checksum), and each hands out its own copy.
func TestJournalEnvelopeKeptInMemory(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir)
	id := commit(t, s, &Envelope{From: "a@example.com", To: []string{"b@example.net", "c@example.net"},
		Notify: []string{"NEVER", ""}, Identity: "a@example.com"}, testHeader, "body\r\n")
	seg := filepath.Join(dir, dirJournal, segments(t, dir)[0])
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	stored := []byte(`"to":["b@example.net","c@example.net"]`)
	at := bytes.LastIndex(data, stored)
	if at < 0 {
		t.Fatalf("envelope JSON not found in the segment: %q", data)
	}
	f, err := os.OpenFile(seg, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(`"to":["x@example.net","y@example.net"]`), int64(at)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	env, err := s.Envelope(id)
	if err != nil || !slices.Equal(env.To, []string{"b@example.net", "c@example.net"}) || env.ID != id {
		t.Fatalf("Envelope = %+v, %v; want the envelope as committed, not read again", env, err)
	}
	env.To[0], env.Notify[0] = "changed@example.net", "SUCCESS"
	env2, msg := readMessage(t, s, id)
	if !slices.Equal(env2.To, []string{"b@example.net", "c@example.net"}) || !slices.Equal(env2.Notify, []string{"NEVER", ""}) {
		t.Errorf("Open's envelope = %+v; a change to an earlier copy reached it", env2)
	}
	if msg != testHeader+"\r\nbody\r\n" {
		t.Errorf("message = %q", msg)
	}
	if env2.ReceivedAt.IsZero() || env2.Size != int64(len(msg)) {
		t.Errorf("envelope lost what Commit set: %+v", env2)
	}
}

func TestJournalLargeBodyGetsItsOwnFile(t *testing.T) {
	dir := t.TempDir()
	s, _ := testSpoolOpts(t, dir, 100)
	small := commit(t, s, testEnv("b@example.net"), testHeader, strings.Repeat("a", 100))
	large := commit(t, s, testEnv("b@example.net"), testHeader, strings.Repeat("a", 60), strings.Repeat("b", 60))
	if files := filesOf(t, dir, small); len(files) != 0 {
		t.Errorf("100-byte body: files %v, want none (journal)", files)
	}
	if files := filesOf(t, dir, large); !slices.Equal(files, []string{"msg/" + large + ".msg"}) {
		t.Errorf("120-byte body: files %v, want its own .msg", files)
	}
	if _, got := readMessage(t, s, large); got != testHeader+"\r\n"+strings.Repeat("a", 60)+strings.Repeat("b", 60) {
		t.Errorf("large message reads %q", got)
	}
	if ids, _ := s.List(); !slices.Equal(ids, []string{small, large}) {
		t.Errorf("List = %v, want both in commit order", ids)
	}
}

func TestJournalUpdateAndFailWriteOut(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir)
	deferred := commit(t, s, testEnv("b@example.net"), testHeader, "deferred body\r\n")
	failed := commit(t, s, testEnv("c@example.net"), testHeader, "failed body\r\n")

	env, err := s.Envelope(deferred)
	if err != nil {
		t.Fatal(err)
	}
	env.Attempts, env.NextAttempt, env.LastError = 1, time.Now().Add(time.Hour).Round(0), "451 try later"
	if err := s.Update(env); err != nil {
		t.Fatal(err)
	}
	if files := filesOf(t, dir, deferred); !slices.Equal(files, []string{"msg/" + deferred + ".msg"}) {
		t.Errorf("after Update: files %v, want the message written out to msg/", files)
	}
	env2, got := readMessage(t, s, deferred)
	if env2.Attempts != 1 || env2.LastError != "451 try later" || got != testHeader+"\r\ndeferred body\r\n" {
		t.Errorf("after Update: envelope %+v, message %q", env2, got)
	}

	fenv, err := s.Envelope(failed)
	if err != nil {
		t.Fatal(err)
	}
	fenv.LastError = "550 no such user"
	if err := s.Fail(fenv); err != nil {
		t.Fatal(err)
	}
	if files := filesOf(t, dir, failed); !slices.Equal(files, []string{"failed/" + failed + ".msg"}) {
		t.Errorf("after Fail: files %v, want failed/<id>.msg", files)
	}
	if fe, _, err := s.readMeta(dirFailed, failed); err != nil || fe.LastError != "550 no such user" {
		t.Errorf("failed/ envelope = %+v, %v", fe, err)
	}

	s.Close()
	s = testSpool(t, dir)
	if ids, _ := s.List(); !slices.Equal(ids, []string{deferred}) {
		t.Errorf("List after restart = %v, want only the deferred message", ids)
	}
	if e, _ := s.Envelope(deferred); e == nil || e.Attempts != 1 {
		t.Errorf("deferred envelope after restart = %+v", e)
	}
}

// A crash after a message was written out of the journal but before its done
// record reached the disk leaves it in both places: the file wins, once.
func TestJournalWrittenOutBeforeDoneRecord(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir)
	id := commit(t, s, testEnv("b@example.net"), testHeader, "body\r\n")
	seg := filepath.Join(dir, dirJournal, segments(t, dir)[0])
	before, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := s.Envelope(id)
	env.Attempts = 3
	if err := s.Update(env); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(seg, before, 0o600); err != nil { // the done record is lost
		t.Fatal(err)
	}
	s, logs := testSpoolLog(t, dir)
	if ids, _ := s.List(); !slices.Equal(ids, []string{id}) {
		t.Errorf("List = %v, want the message once", ids)
	}
	if e, _ := s.Envelope(id); e == nil || e.Attempts != 3 {
		t.Errorf("envelope = %+v, want the written-out one (3 attempts)", e)
	}
	if !strings.Contains(logs.String(), "already written out") {
		t.Errorf("log does not mention the duplicate:\n%s", logs)
	}
}

// Cutting the segment anywhere inside the last record (a crash during its write,
// so it was never acknowledged) loses that record and nothing before it.
func TestJournalTornTail(t *testing.T) {
	ids, seg, full := threeInSegment(t, t.TempDir())
	name := filepath.Base(seg)
	third := recordStarts(t, full)[2]
	for _, cut := range []int{third, third + 1, third + recHeaderLen - 1, third + recHeaderLen, third + recHeaderLen + 5, len(full) - 1} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, dirJournal), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, dirJournal, name), full[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
			s, logs := testSpoolLog(t, dir)
			got, _ := s.List()
			if !slices.Equal(got, ids[:2]) {
				t.Errorf("List = %v, want the first two %v", got, ids[:2])
			}
			for _, id := range ids[:2] {
				readMessage(t, s, id)
			}
			if cut > third && !strings.Contains(logs.String(), "cut-short") {
				t.Errorf("log does not report the torn record:\n%s", logs)
			}
			// New messages go to a new segment and survive the next restart.
			id := commit(t, s, testEnv("c@example.net"), testHeader, "after the crash\r\n")
			s.Close()
			s = testSpool(t, dir)
			if got, _ := s.List(); !slices.Equal(got, append(slices.Clone(ids[:2]), id)) {
				t.Errorf("after a second restart List = %v", got)
			}
		})
	}
}

// A record whose header is sound but whose payload fails its checksum is copied to
// corrupt/ and skipped; the records after it are still found.
func TestJournalDamagedRecordQuarantined(t *testing.T) {
	dir := t.TempDir()
	ids, p, data := threeInSegment(t, dir)
	offs := recordStarts(t, data)
	data[offs[1]+recHeaderLen+3] ^= 0x20 // a body byte of the second message
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, logs := testSpoolLog(t, dir)
	if got, _ := s.List(); !slices.Equal(got, []string{ids[0], ids[2]}) {
		t.Errorf("List = %v, want the first and third", got)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, dirCorrupt))
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ".rec") {
		t.Errorf("corrupt/ = %v, want the damaged record", ents)
	} else if kept, _ := os.ReadFile(filepath.Join(dir, dirCorrupt, ents[0].Name())); !bytes.Equal(kept, data[offs[1]+recHeaderLen:offs[2]]) {
		t.Errorf("corrupt/ copy differs from the damaged payload")
	}
	if !strings.Contains(logs.String(), "damaged journal record") {
		t.Errorf("log does not report the damage:\n%s", logs)
	}
}

// Segments are deleted oldest first and only when no message in them is queued.
func TestJournalSegmentsDeletedInOrder(t *testing.T) {
	old := segmentMaxBytes
	segmentMaxBytes = 1 // every record starts a new segment
	t.Cleanup(func() { segmentMaxBytes = old })

	dir := t.TempDir()
	s := testSpool(t, dir)
	var ids []string
	for i := range 4 {
		ids = append(ids, commit(t, s, testEnv("b@example.net"), testHeader, fmt.Sprintf("message %d\r\n", i)))
	}
	if segs := segments(t, dir); len(segs) != 4 {
		t.Fatalf("segments = %v, want 4", segs)
	}
	// Done records go to new segments too. Removing the newest messages first
	// must not delete anything: the oldest segment still holds a queued message.
	for _, id := range []string{ids[3], ids[2], ids[1]} {
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
		if segs := segments(t, dir); !slices.Contains(segs, segmentName(1)) || len(segs) < 4 {
			t.Fatalf("after removing %s: segments %v; the oldest holds a queued message", id, segs)
		}
	}
	// A restart at this point must see exactly the one queued message.
	s.Close()
	s = testSpool(t, dir)
	if got, _ := s.List(); !slices.Equal(got, ids[:1]) {
		t.Fatalf("after restart List = %v, want %v", got, ids[:1])
	}
	if err := s.Remove(ids[0]); err != nil {
		t.Fatal(err)
	}
	if segs := segments(t, dir); len(segs) != 1 {
		t.Errorf("after the last removal segments = %v, want only the newest", segs)
	}
	s.Close()
	s = testSpool(t, dir)
	if got, _ := s.List(); len(got) != 0 {
		t.Errorf("after the last removal and a restart List = %v", got)
	}
}

func TestJournalConcurrentCommits(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir)
	const writers, each = 8, 25
	var mu sync.Mutex
	want := map[string]string{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				body := fmt.Sprintf("writer %d message %d\r\n%s", w, i, strings.Repeat("x", w*100+i))
				in, err := s.Create()
				if err != nil {
					t.Error(err)
					return
				}
				in.Write([]byte(body))
				id, err := in.Commit(testEnv(fmt.Sprintf("r%d@example.net", w)), []byte(testHeader))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[id] = testHeader + "\r\n" + body
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s.Close()
	s = testSpool(t, dir)
	ids, _ := s.List()
	if len(ids) != writers*each || len(want) != writers*each {
		t.Fatalf("List has %d ids, %d committed; want %d", len(ids), len(want), writers*each)
	}
	for id, w := range want {
		if _, got := readMessage(t, s, id); got != w {
			t.Errorf("%s reads %q, want %q", id, got, w)
		}
	}
}

// With the journal off, messages a previous run left in it are still delivered.
func TestJournalOffStillReadsOldJournal(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir)
	id := commit(t, s, testEnv("b@example.net"), testHeader, "body\r\n")
	s.Close()
	s = testFileSpool(t, dir)
	if got, _ := s.List(); !slices.Equal(got, []string{id}) {
		t.Fatalf("List = %v", got)
	}
	readMessage(t, s, id)
	next := commit(t, s, testEnv("b@example.net"), testHeader, "body\r\n")
	if files := filesOf(t, dir, next); len(files) != 1 {
		t.Errorf("journal off: new message files %v, want its own file", files)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
}

// FuzzJournalScan opens a spool whose journal holds arbitrary bytes: OpenSpool never
// panics, and every message it lists can be read in full.
func FuzzJournalScan(f *testing.F) {
	// Seed: a real segment (two messages, one of them done), and pieces of it.
	dir := f.TempDir()
	s, err := OpenSpoolWith(dir, SpoolOptions{Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 2 {
		in, _ := s.Create()
		in.Write([]byte(fmt.Sprintf("body %d\r\n", i)))
		id, err := in.Commit(testEnv("b@example.net"), []byte(testHeader))
		if err != nil {
			f.Fatal(err)
		}
		if i == 0 {
			s.Remove(id)
		}
	}
	s.Close()
	seg, err := os.ReadFile(filepath.Join(dir, dirJournal, segmentName(1)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg)
	f.Add(seg[:len(seg)/2])
	f.Add(seg[recHeaderLen:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, dirJournal), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dirJournal, segmentName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenSpoolWith(dir, SpoolOptions{Logger: quietLogger()})
		if err != nil {
			return // an I/O error is fine; a panic is not
		}
		defer s.Close()
		ids, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			env, rc, err := s.Open(id)
			if err != nil {
				t.Fatalf("listed %s cannot be opened: %v", id, err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || int64(len(b)) != env.Size && env.Size != 0 {
				t.Fatalf("%s: read %d bytes (err %v), envelope says %d", id, len(b), err, env.Size)
			}
		}
	})
}

// Remove returns only after a sync that started after the removal was written:
// for a journal message an fdatasync of the segment that covers its done
// record, for a message file an fsync of msg/ after the unlink.
func TestRemoveIsDurable(t *testing.T) {
	s := testSpool(t, t.TempDir())
	id := commit(t, s, testEnv("b@y.test"), testHeader, "body\r\n")
	seg := s.journal.segs[len(s.journal.segs)-1]
	var synced []int64 // segment size at each fdatasync
	do := seg.sync.do
	seg.sync.do = func() error {
		fi, err := seg.f.Stat()
		if err != nil {
			return err
		}
		synced = append(synced, fi.Size())
		return do()
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(seg.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(synced) == 0 || synced[len(synced)-1] < fi.Size() {
		t.Errorf("segment synced at sizes %v, done record ends at %d: the removal is not durable", synced, fi.Size())
	}

	fileSpool := testFileSpool(t, t.TempDir())
	id = commit(t, fileSpool, testEnv("b@y.test"), testHeader, "body\r\n")
	p := fileSpool.path(dirMsg, id, extMsg)
	var goneAtSync []bool
	dirDo := fileSpool.msgDir.do
	fileSpool.msgDir.do = func() error {
		_, err := os.Lstat(p)
		goneAtSync = append(goneAtSync, err != nil)
		return dirDo()
	}
	if err := fileSpool.Remove(id); err != nil {
		t.Fatal(err)
	}
	if len(goneAtSync) == 0 || !goneAtSync[len(goneAtSync)-1] {
		t.Errorf("msg/ fsyncs %v (true: after the unlink): the removal is not durable", goneAtSync)
	}
}
