package relay

import (
	"bytes"
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
	"testing"
	"time"
)

func testSpool(t *testing.T, dir string) *Spool {
	t.Helper()
	s, _ := testSpoolLog(t, dir)
	return s
}

// testFileSpool opens a spool with the journal off: every message gets its own file.
func testFileSpool(t *testing.T, dir string) *Spool {
	t.Helper()
	s, _ := testSpoolOpts(t, dir, -1)
	return s
}

// testSpoolLog opens a spool (journal on) whose log goes to the returned buffer.
func testSpoolLog(t *testing.T, dir string) (*Spool, *bytes.Buffer) {
	t.Helper()
	return testSpoolOpts(t, dir, DefaultJournalMaxBody)
}

func testSpoolOpts(t *testing.T, dir string, journalMax int64) (*Spool, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	s, err := openSpool(dir, SpoolOptions{Logger: slog.New(slog.NewTextHandler(&buf, nil)), JournalMaxBody: journalMax})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, &buf
}

const testHeader = "DKIM-Signature: v=1; a=rsa-sha256; d=example.com;\r\n\tb=abc\r\nFrom: a@example.com\r\nSubject: hi\r\n"

// commit stores one message whose body is written in the given chunks.
func commit(t *testing.T, s *Spool, env *Envelope, header string, chunks ...string) string {
	t.Helper()
	in, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Abort()
	for _, c := range chunks {
		if _, err := in.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	id, err := in.Commit(env, []byte(header))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func readMessage(t *testing.T, s *Spool, id string) (*Envelope, string) {
	t.Helper()
	env, rc, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return env, string(b)
}

// readMeta returns the envelope (the .env override if any) and header block of
// the message id in sub (dirMsg or dirFailed); for tests that look into failed/.
func (s *Spool) readMeta(sub, id string) (*Envelope, []byte, error) {
	m, err := s.readMessage(sub, id, false)
	if err != nil {
		return nil, nil, err
	}
	return m.env, m.header, nil
}

func TestSpoolRoundTripByteExact(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool") // created by OpenSpool
	s := testFileSpool(t, dir)
	// Binary and 8-bit bytes, dots at line starts, no final CRLF, something that
	// looks like a trailer: stored as given.
	body := []string{"line one\r\n.dot\r\n", "\x00\xff\xfe caf\xc3\xa9\r\n", "..two dots\r\n", trailerMagic + "M\x00\x00\x00\x02", "no final newline"}
	env := &Envelope{
		From: "a@example.com", To: []string{"b@example.net", "c@example.org"}, Identity: "alice",
		EnvID: "env 1", Ret: "HDRS", Notify: []string{"SUCCESS,DELAY", ""}, ORcpt: []string{"rfc822;b@example.net", ""},
	}
	id := commit(t, s, env, testHeader, body...)
	if !validID(id) || env.ID != id {
		t.Fatalf("id %q, env.ID %q", id, env.ID)
	}
	want := testHeader + "\r\n" + strings.Join(body, "")
	if env.Size != int64(len(want)) {
		t.Errorf("Size = %d, want %d", env.Size, len(want))
	}
	got, msg := readMessage(t, s, id)
	if msg != want {
		t.Errorf("message = %q, want %q", msg, want)
	}
	if got.ReceivedAt.IsZero() || got.Identity != "alice" || got.EnvID != "env 1" || got.Ret != "HDRS" ||
		!slices.Equal(got.To, env.To) || !slices.Equal(got.Notify, env.Notify) || !slices.Equal(got.ORcpt, env.ORcpt) {
		t.Errorf("envelope = %+v, want %+v", got, env)
	}
	if e2, err := s.Envelope(id); err != nil || e2.Size != env.Size || e2.EnvID != "env 1" {
		t.Errorf("Envelope = %+v, %v", e2, err)
	}
	if ids, _ := s.List(); !slices.Equal(ids, []string{id}) {
		t.Errorf("List = %v", ids)
	}

	// One file per message, laid out as documented in queue_format.go.
	if files := filesOf(t, dir, id); !slices.Equal(files, []string{"msg/" + id + ".msg"}) {
		t.Errorf("files = %v", files)
	}
	p := filepath.Join(dir, "msg", id+".msg")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(env)
	prefix := strings.Join(body, "") + testHeader + string(js)
	if !strings.HasPrefix(string(raw), prefix) || len(raw) != len(prefix)+trailerLen {
		t.Errorf("file = %q, want %q + %d-byte trailer", raw, prefix, trailerLen)
	}
	for _, d := range []string{"", "tmp", "msg", "failed", "corrupt"} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp not empty after commit: %v", left)
	}
}

// TestSpoolSizes covers an empty body and header blocks and bodies larger than
// the part of the file read at once.
func TestSpoolSizes(t *testing.T) {
	s := testSpool(t, t.TempDir())
	bigHeader := testHeader + "X-Big: " + strings.Repeat("h", 2*tailReadSize) + "\r\n"
	bigBody := strings.Repeat("0123456789abcdef\r\n", 3*tailReadSize/16)
	for _, tc := range []struct{ name, header, body string }{
		{"empty body", testHeader, ""},
		{"big body", testHeader, bigBody},
		{"big header", bigHeader, "small\r\n"},
		{"big both", bigHeader, bigBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := commit(t, s, &Envelope{To: []string{"b@y"}}, tc.header, tc.body)
			env, msg := readMessage(t, s, id)
			if msg != tc.header+"\r\n"+tc.body {
				t.Errorf("message differs (%d bytes, want %d)", len(msg), len(tc.header)+2+len(tc.body))
			}
			if env.Size != int64(len(msg)) {
				t.Errorf("Size = %d, want %d", env.Size, len(msg))
			}
		})
	}
}

// TestSpoolFileDamageDetected truncates a message file at every length and flips
// every byte after the body: each must be refused. (Body bytes are not
// checksummed; the body is fsynced before the file gets its final name.)
func TestSpoolFileDamageDetected(t *testing.T) {
	dir := t.TempDir()
	s := testFileSpool(t, dir)
	body := "body\r\n"
	id := commit(t, s, &Envelope{From: "a@x", To: []string{"b@y"}}, testHeader, body)
	good, err := os.ReadFile(filepath.Join(dir, "msg", id+".msg"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, data []byte) {
		t.Helper()
		if _, _, _, err := readTail(bytes.NewReader(data), int64(len(data)), kindMsg); !errors.Is(err, errBadFile) {
			t.Errorf("%s: readTail error %v, want errBadFile", what, err)
		}
	}
	if _, h, js, err := readTail(bytes.NewReader(good), int64(len(good)), kindMsg); err != nil || string(h) != testHeader || !json.Valid(js) {
		t.Fatalf("intact file: header %q, envelope %q, %v", h, js, err)
	}
	for n := 0; n < len(good); n++ {
		check(fmt.Sprintf("truncated to %d", n), good[:n])
	}
	for i := len(body); i < len(good); i++ {
		bad := slices.Clone(good)
		bad[i] ^= 0x01
		check(fmt.Sprintf("byte %d flipped", i), bad)
	}
	check("byte appended", append(slices.Clone(good), 0))
	check("envelope override read as message", mustEnvFile(t, &Envelope{ID: id, To: []string{"b@y"}}))
}

func mustEnvFile(t *testing.T, env *Envelope) []byte {
	t.Helper()
	b, err := appendTail(nil, kindEnv, 0, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSpoolIDsSortedAndUnique(t *testing.T) {
	s := testSpool(t, t.TempDir())
	var ids []string
	for i := 0; i < 200; i++ {
		in, err := s.Create()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID())
		in.Abort()
	}
	if !slices.IsSorted(ids) {
		t.Error("ids are not in creation order")
	}
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Error("duplicate ids")
	}
	for _, id := range ids {
		if !validID(id) {
			t.Fatalf("invalid id %q", id)
		}
	}
}

func TestSpoolCommitRejects(t *testing.T) {
	s := testSpool(t, t.TempDir())
	tests := []struct {
		name   string
		env    Envelope
		header string
	}{
		{"empty header", Envelope{To: []string{"b@x"}}, ""},
		{"header without CRLF", Envelope{To: []string{"b@x"}}, "Subject: x"},
		{"header with blank line", Envelope{To: []string{"b@x"}}, "Subject: x\r\n\r\n"},
		{"no recipients", Envelope{}, testHeader},
		{"notify not parallel", Envelope{To: []string{"b@x"}, Notify: []string{"NEVER", "NEVER"}}, testHeader},
		{"orcpt not parallel", Envelope{To: []string{"b@x"}, ORcpt: []string{"rfc822;a@x", ""}}, testHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := s.Create()
			if err != nil {
				t.Fatal(err)
			}
			in.Write([]byte("body\r\n"))
			if _, err := in.Commit(&tt.env, []byte(tt.header)); err == nil {
				t.Fatal("Commit succeeded")
			}
			if err := in.Abort(); err != nil {
				t.Fatal(err)
			}
			if ids, _ := s.List(); len(ids) != 0 {
				t.Errorf("List = %v", ids)
			}
			for _, d := range []string{"tmp", "msg"} {
				if left, _ := os.ReadDir(filepath.Join(s.dir, d)); len(left) != 0 {
					t.Errorf("%s not empty: %v", d, left)
				}
			}
		})
	}
}

func TestSpoolLock(t *testing.T) {
	dir := t.TempDir()
	testSpool(t, dir)
	if s, err := OpenSpool(dir); err == nil {
		s.Close()
		t.Fatal("second OpenSpool of the same directory succeeded")
	}
}

// crashFiles are valid files of message x for the crash cases to arrange.
type crashFiles struct {
	msg    []byte // msg/X.msg as committed
	env    []byte // msg/X.env as written by Update (Attempts 7)
	failed []byte // failed/X.env as written by Fail (one Failed recipient)
}

// TestSpoolRecover leaves the files each crash point can leave and checks that
// OpenSpool keeps every committed message, exposes no partial one, and logs what
// it repaired.
func TestSpoolRecover(t *testing.T) {
	write := func(t *testing.T, p string, content []byte) {
		t.Helper()
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	flip := func(b []byte, i int) []byte {
		b = slices.Clone(b)
		b[i] ^= 0x40
		return b
	}
	// Each case gets a spool with one intact committed message ("keep") and a
	// second message id ("x") whose files it arranges.
	tests := []struct {
		name         string
		crash        func(t *testing.T, dir, x string, f crashFiles)
		wantQueued   bool     // x is listed and readable after recovery
		wantAttempts int      // x's envelope has this Attempts (7: the .env override)
		wantFiles    []string // every file of x expected afterwards, relative to dir, X standing for x
		wantLog      string   // in the log
	}{
		// Current layout.
		{name: "during DATA: .part left over", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".part"), []byte("partial"))
		}, wantLog: "removed uncommitted message"},
		{name: "fsynced .part, rename not done", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".part"), f.msg)
		}, wantLog: "removed uncommitted message"},
		{name: "committed", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".msg"), f.msg)
		}, wantQueued: true, wantFiles: []string{"msg/X.msg"}},
		{name: "truncated trailer", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".msg"), f.msg[:len(f.msg)-10])
		}, wantFiles: []string{"corrupt/X.msg"}, wantLog: "moved to corrupt/"},
		{name: "trailer missing", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".msg"), f.msg[:len(f.msg)-trailerLen])
		}, wantFiles: []string{"corrupt/X.msg"}, wantLog: "bad magic"},
		{name: "empty message file", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".msg"), nil)
		}, wantFiles: []string{"corrupt/X.msg"}, wantLog: "moved to corrupt/"},
		{name: "flipped checksum byte", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".msg"), flip(f.msg, len(f.msg)-1))
		}, wantFiles: []string{"corrupt/X.msg"}, wantLog: "checksum mismatch"},
		{name: "flipped header byte", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".msg"), flip(f.msg, len("body\r\n")+3))
		}, wantFiles: []string{"corrupt/X.msg"}, wantLog: "checksum mismatch"},
		{name: "Update: .env being written", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".msg"), f.msg)
			write(t, filepath.Join(dir, "tmp", x+".env.123"), f.env[:len(f.env)/2])
		}, wantQueued: true, wantFiles: []string{"msg/X.msg"}, wantLog: "removed orphaned temp file"},
		{name: "Update done", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".msg"), f.msg)
			write(t, filepath.Join(dir, "msg", x+".env"), f.env)
		}, wantQueued: true, wantAttempts: 7, wantFiles: []string{"msg/X.env", "msg/X.msg"}},
		{name: "damaged .env", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".msg"), f.msg)
			write(t, filepath.Join(dir, "msg", x+".env"), flip(f.env, 5))
		}, wantFiles: []string{"corrupt/X.env", "corrupt/X.msg"}, wantLog: "moved to corrupt/"},
		{name: "orphan .env (Remove interrupted)", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".env"), f.env)
		}, wantLog: "no longer queued"},
		{name: "Fail: envelope in failed/, message not moved", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".msg"), f.msg)
			write(t, filepath.Join(dir, "msg", x+".env"), f.env)
			write(t, filepath.Join(dir, "failed", x+".env"), f.failed)
		}, wantFiles: []string{"failed/X.env", "failed/X.msg"}, wantLog: "finished interrupted move"},
		{name: "Fail: message moved, old .env left", crash: func(t *testing.T, dir, x string, f crashFiles) {
			write(t, filepath.Join(dir, "msg", x+".env"), f.env)
			write(t, filepath.Join(dir, "failed", x+".msg"), f.msg)
			write(t, filepath.Join(dir, "failed", x+".env"), f.failed)
		}, wantFiles: []string{"failed/X.env", "failed/X.msg"}, wantLog: "no longer queued"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := testFileSpool(t, dir)
			keep := commit(t, s, &Envelope{From: "a@x", To: []string{"b@y"}}, testHeader, "kept body\r\n")
			// Valid files for x, made by committing, updating and failing, then taken away.
			env := &Envelope{From: "a@x", To: []string{"c@y", "d@y"}}
			x := commit(t, s, env, testHeader, "body\r\n")
			var f crashFiles
			var err error
			if f.msg, err = os.ReadFile(filepath.Join(dir, "msg", x+".msg")); err != nil {
				t.Fatal(err)
			}
			upd := *env
			upd.Attempts = 7
			if err := s.Update(&upd); err != nil {
				t.Fatal(err)
			}
			if f.env, err = os.ReadFile(filepath.Join(dir, "msg", x+".env")); err != nil {
				t.Fatal(err)
			}
			upd.Failed = []FailedRecipient{{Rcpt: "d@y", Error: "550 no"}}
			upd.To = upd.To[:1]
			if err := s.Fail(&upd); err != nil {
				t.Fatal(err)
			}
			if f.failed, err = os.ReadFile(filepath.Join(dir, "failed", x+".env")); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"failed/" + x + ".msg", "failed/" + x + ".env"} {
				if err := os.Remove(filepath.Join(dir, p)); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()

			tt.crash(t, dir, x, f)
			s, logs := testSpoolOpts(t, dir, -1)

			ids, err := s.List()
			if err != nil {
				t.Fatal(err)
			}
			want := []string{keep}
			if tt.wantQueued {
				want = append(want, x)
			}
			if !slices.Equal(ids, want) {
				t.Fatalf("List = %v, want %v; log:\n%s", ids, want, logs)
			}
			if _, msg := readMessage(t, s, keep); msg != testHeader+"\r\nkept body\r\n" {
				t.Errorf("kept message = %q", msg)
			}
			if tt.wantQueued {
				got, msg := readMessage(t, s, x)
				if wantMsg := testHeader + "\r\nbody\r\n"; msg != wantMsg {
					t.Errorf("recovered message = %q", msg)
				}
				if got.Attempts != tt.wantAttempts || !slices.Equal(got.To, env.To) {
					t.Errorf("recovered envelope = %+v", got)
				}
			}
			if slices.Contains(tt.wantFiles, "failed/X.msg") {
				fenv, header, err := s.readMeta(dirFailed, x)
				if err != nil || string(header) != testHeader {
					t.Errorf("failed message: header %q, %v", header, err)
				} else if tt.wantFiles[0] == "failed/X.env" && len(fenv.Failed) != 1 {
					t.Errorf("failed envelope = %+v", fenv)
				}
			}
			if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
				t.Errorf("tmp not empty: %v", left)
			}
			// Nothing of x may remain anywhere except where expected.
			var wantFiles []string
			for _, f := range tt.wantFiles {
				wantFiles = append(wantFiles, strings.ReplaceAll(f, "X", x))
			}
			if got := filesOf(t, dir, x); !slices.Equal(got, wantFiles) {
				t.Errorf("files of x = %v, want %v; log:\n%s", got, wantFiles, logs)
			}
			if tt.wantLog != "" && !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, logs)
			}
			// A second open finds nothing more to repair.
			s.Close()
			s, logs = testSpoolOpts(t, dir, -1)
			if logs.Len() != 0 {
				t.Errorf("second OpenSpool logged:\n%s", logs)
			}
			if got := filesOf(t, dir, x); !slices.Equal(got, wantFiles) {
				t.Errorf("after second open, files of x = %v, want %v", got, wantFiles)
			}
		})
	}
}

// filesOf lists the files under dir whose name contains id.
func filesOf(t *testing.T, dir, id string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), id) {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func TestSpoolConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	s := testFileSpool(t, dir)
	const writers, each = 16, 10
	var mu sync.Mutex
	bodies := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf("writer %d message %d\r\n%s\r\n", w, i, strings.Repeat("x", 100*i))
				in, err := s.Create()
				if err != nil {
					errs <- err
					return
				}
				// Several writes, interleaved with the other writers'.
				for _, part := range strings.SplitAfter(body, "\r\n") {
					if _, err := in.Write([]byte(part)); err != nil {
						errs <- err
						return
					}
				}
				id, err := in.Commit(&Envelope{From: "a@x", To: []string{fmt.Sprintf("w%d@y", w)}}, []byte(testHeader))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if _, dup := bodies[id]; dup {
					errs <- fmt.Errorf("id %s reused", id)
				}
				bodies[id] = body
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ids, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != writers*each {
		t.Fatalf("List has %d ids, want %d", len(ids), writers*each)
	}
	for _, id := range ids {
		env, msg := readMessage(t, s, id)
		if msg != testHeader+"\r\n"+bodies[id] {
			t.Errorf("%s: message = %q", id, msg)
		}
		if w := strings.Fields(bodies[id])[1]; env.To[0] != "w"+w+"@y" {
			t.Errorf("%s: envelope of another message: %v", id, env.To)
		}
	}
	if got := len(s.takeCommitted()); got != writers*each {
		t.Errorf("takeCommitted returned %d ids, want %d", got, writers*each)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "msg")); len(ents) != writers*each {
		t.Errorf("msg/ holds %d files, want %d (one per message)", len(ents), writers*each)
	}
}

func TestSpoolUpdateRemoveFail(t *testing.T) {
	dir := t.TempDir()
	s := testFileSpool(t, dir)
	id := commit(t, s, &Envelope{From: "a@x", To: []string{"b@y", "c@y"}}, testHeader, "body\r\n")
	msgFile := filepath.Join(dir, "msg", id+".msg")
	before, err := os.ReadFile(msgFile)
	if err != nil {
		t.Fatal(err)
	}

	env, err := s.Envelope(id)
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 2; attempt++ { // the second Update replaces the first
		env.Attempts, env.NextAttempt, env.LastError = attempt, time.Now().Add(time.Hour).Round(0), fmt.Sprintf("451 try later %d", attempt)
		if err := s.Update(env); err != nil {
			t.Fatal(err)
		}
		got, msg := readMessage(t, s, id)
		if got.Attempts != attempt || !got.NextAttempt.Equal(env.NextAttempt) || got.LastError != env.LastError {
			t.Errorf("after Update %d: %+v", attempt, got)
		}
		if msg != testHeader+"\r\nbody\r\n" {
			t.Errorf("Update changed the message: %q", msg)
		}
		if e, err := s.Envelope(id); err != nil || e.Attempts != attempt {
			t.Errorf("Envelope after Update %d: %+v, %v", attempt, e, err)
		}
	}
	if after, _ := os.ReadFile(msgFile); !bytes.Equal(after, before) {
		t.Error("Update rewrote the message file")
	}
	if files := filesOf(t, dir, id); !slices.Equal(files, []string{"msg/" + id + ".env", "msg/" + id + ".msg"}) {
		t.Errorf("files after Update = %v", files)
	}

	got, _ := readMessage(t, s, id)
	got.Failed = []FailedRecipient{{Rcpt: "c@y", Error: "550 no such user"}}
	got.To = got.To[:1]
	if err := s.Fail(got); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.List(); len(ids) != 0 {
		t.Errorf("List after Fail = %v", ids)
	}
	if files := filesOf(t, dir, id); !slices.Equal(files, []string{"failed/" + id + ".env", "failed/" + id + ".msg"}) {
		t.Errorf("files after Fail = %v", files)
	}
	if fenv, header, err := s.readMeta(dirFailed, id); err != nil || len(fenv.Failed) != 1 || fenv.Attempts != 2 || string(header) != testHeader {
		t.Errorf("failed/: %+v %q %v", fenv, header, err)
	}
	if _, _, err := s.Open(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of failed message: %v, want ErrNotExist", err)
	}
	if _, err := s.Envelope(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Envelope of failed message: %v, want ErrNotExist", err)
	}
	if err := s.Fail(got); err == nil {
		t.Error("second Fail succeeded")
	}

	id2 := commit(t, s, &Envelope{From: "a@x", To: []string{"b@y"}}, testHeader, "body\r\n")
	if err := s.Update(&Envelope{ID: id2, To: []string{"b@y"}, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id2); err != nil {
		t.Fatal(err)
	}
	if files := filesOf(t, dir, id2); len(files) != 0 {
		t.Errorf("files after Remove = %v", files)
	}
	if err := s.Update(&Envelope{ID: id2}); err == nil {
		t.Error("Update of removed message succeeded (would resurrect it)")
	}
	if files := filesOf(t, dir, id2); len(files) != 0 {
		t.Errorf("files after refused Update = %v", files)
	}
	if err := s.Remove(id2); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	for _, bad := range []string{"../../etc/passwd", "", "ABC", "../msg/" + id2[:17], id2 + "/"} {
		if err := s.Remove(bad); err == nil {
			t.Errorf("Remove(%q) succeeded", bad)
		}
		if _, err := s.Envelope(bad); err == nil {
			t.Errorf("Envelope(%q) succeeded", bad)
		}
		if _, _, err := s.Open(bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
		if err := s.Update(&Envelope{ID: bad}); err == nil {
			t.Errorf("Update(%q) succeeded", bad)
		}
		if err := s.Fail(&Envelope{ID: bad}); err == nil {
			t.Errorf("Fail(%q) succeeded", bad)
		}
	}
}

func TestIncomingAbort(t *testing.T) {
	s := testFileSpool(t, t.TempDir())
	in, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if files := filesOf(t, s.dir, in.ID()); !slices.Equal(files, []string{"msg/" + in.ID() + ".part"}) {
		t.Errorf("files after Create = %v", files)
	}
	if ids, _ := s.List(); len(ids) != 0 {
		t.Errorf("List lists a message being received: %v", ids)
	}
	in.Write([]byte("partial"))
	if err := in.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := in.Abort(); err != nil {
		t.Fatal("second Abort:", err)
	}
	for _, d := range []string{"tmp", "msg"} {
		if left, _ := os.ReadDir(filepath.Join(s.dir, d)); len(left) != 0 {
			t.Errorf("%s not empty after Abort: %v", d, left)
		}
	}
	if _, err := in.Commit(&Envelope{To: []string{"b@y"}}, []byte(testHeader)); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	if _, err := in.Write([]byte("more")); err == nil {
		t.Error("Write after Abort succeeded")
	}

	// Abort after a successful Commit must keep the message.
	id := commit(t, s, &Envelope{To: []string{"b@y"}}, testHeader, "x\r\n")
	if ids, _ := s.List(); !slices.Equal(ids, []string{id}) {
		t.Errorf("List = %v", ids)
	}
}

func TestGroupSyncShares(t *testing.T) {
	d := newDirSync(t.TempDir())
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.sync(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if d.started == 0 || d.started > 32 || d.completed != d.started || d.running {
		t.Errorf("started %d completed %d running %v", d.started, d.completed, d.running)
	}

	bad := newDirSync(filepath.Join(t.TempDir(), "missing"))
	if err := bad.sync(); err == nil {
		t.Error("sync of a missing directory succeeded")
	}
}
