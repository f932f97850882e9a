package relay

import (
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
	s, err := openSpool(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
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

func TestSpoolRoundTripByteExact(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool") // created by OpenSpool
	s := testSpool(t, dir)
	// Binary and 8-bit bytes, dots at line starts, no final CRLF: stored as given.
	body := []string{"line one\r\n.dot\r\n", "\x00\xff\xfe caf\xc3\xa9\r\n", "..two dots\r\n", "no final newline"}
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
	if ids, _ := s.List(); !slices.Equal(ids, []string{id}) {
		t.Errorf("List = %v", ids)
	}

	for _, p := range []string{filepath.Join(dir, "msg", id+".meta"), filepath.Join(dir, "msg", id+".body")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
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
			if left, _ := os.ReadDir(filepath.Join(s.dir, "tmp")); len(left) != 0 {
				t.Errorf("tmp not empty: %v", left)
			}
		})
	}
}

func TestSpoolLock(t *testing.T) {
	dir := t.TempDir()
	testSpool(t, dir)
	if s, err := openSpool(dir, slog.Default()); err == nil {
		s.Close()
		t.Fatal("second OpenSpool of the same directory succeeded")
	}
}

// TestSpoolRecover leaves the files each crash point can leave and checks that
// OpenSpool keeps every committed message and exposes no partial one.
func TestSpoolRecover(t *testing.T) {
	write := func(t *testing.T, p, content string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Each case gets a spool with one intact committed message ("keep") and a
	// second message id ("x") whose files it arranges.
	tests := []struct {
		name       string
		crash      func(t *testing.T, dir, x string, meta []byte)
		wantQueued bool     // x is listed and readable after recovery
		wantFailed bool     // x is complete in failed/
		wantFiles  []string // other files of x expected, relative to dir, X standing for x
	}{
		{"during DATA: body in tmp", func(t *testing.T, dir, x string, meta []byte) {
			write(t, filepath.Join(dir, "tmp", x+".body"), "partial")
		}, false, false, nil},
		{"meta being written in tmp", func(t *testing.T, dir, x string, meta []byte) {
			write(t, filepath.Join(dir, "tmp", x+".body"), "body\r\n")
			write(t, filepath.Join(dir, "tmp", x+".meta.123"), string(meta[:len(meta)/2]))
		}, false, false, nil},
		{"body renamed, meta not yet", func(t *testing.T, dir, x string, meta []byte) {
			write(t, filepath.Join(dir, "msg", x+".body"), "body\r\n")
		}, false, false, nil},
		{"meta renamed (committed)", func(t *testing.T, dir, x string, meta []byte) {
			write(t, filepath.Join(dir, "msg", x+".body"), "body\r\n")
			write(t, filepath.Join(dir, "msg", x+".meta"), string(meta))
		}, true, false, nil},
		{"meta without body", func(t *testing.T, dir, x string, meta []byte) {
			write(t, filepath.Join(dir, "msg", x+".meta"), string(meta))
		}, false, false, []string{"corrupt/X.meta"}},
		{"truncated meta", func(t *testing.T, dir, x string, meta []byte) {
			write(t, filepath.Join(dir, "msg", x+".body"), "body\r\n")
			write(t, filepath.Join(dir, "msg", x+".meta"), string(meta[:len(meta)-10]))
		}, false, false, []string{"corrupt/X.meta", "corrupt/X.body"}},
		{"Fail interrupted after meta move", func(t *testing.T, dir, x string, meta []byte) {
			write(t, filepath.Join(dir, "msg", x+".body"), "body\r\n")
			write(t, filepath.Join(dir, "failed", x+".meta"), string(meta))
		}, false, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := testSpool(t, dir)
			keep := commit(t, s, &Envelope{From: "a@x", To: []string{"b@y"}}, testHeader, "kept body\r\n")
			// A valid meta file for x, made by committing and taking the files away.
			x := commit(t, s, &Envelope{From: "a@x", To: []string{"c@y"}}, testHeader, "body\r\n")
			meta, err := os.ReadFile(filepath.Join(dir, "msg", x+".meta"))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Remove(x); err != nil {
				t.Fatal(err)
			}
			s.Close()

			tt.crash(t, dir, x, meta)
			s = testSpool(t, dir)

			ids, err := s.List()
			if err != nil {
				t.Fatal(err)
			}
			want := []string{keep}
			if tt.wantQueued {
				want = append(want, x)
			}
			if !slices.Equal(ids, want) {
				t.Fatalf("List = %v, want %v", ids, want)
			}
			if _, msg := readMessage(t, s, keep); msg != testHeader+"\r\nkept body\r\n" {
				t.Errorf("kept message = %q", msg)
			}
			if tt.wantQueued {
				if _, msg := readMessage(t, s, x); msg != testHeader+"\r\nbody\r\n" {
					t.Errorf("recovered message = %q", msg)
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
			if tt.wantQueued {
				wantFiles = append(wantFiles, "msg/"+x+".meta", "msg/"+x+".body")
			}
			if tt.wantFailed {
				wantFiles = append(wantFiles, "failed/"+x+".meta", "failed/"+x+".body")
			}
			slices.Sort(wantFiles)
			if got := filesOf(t, dir, x); !slices.Equal(got, wantFiles) {
				t.Errorf("files of x = %v, want %v", got, wantFiles)
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
	s := testSpool(t, t.TempDir())
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
				in.Write([]byte(body))
				id, err := in.Commit(&Envelope{From: "a@x", To: []string{"b@y"}}, []byte(testHeader))
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
		if _, msg := readMessage(t, s, id); msg != testHeader+"\r\n"+bodies[id] {
			t.Errorf("%s: message = %q", id, msg)
		}
	}
	if got := len(s.takeCommitted()); got != writers*each {
		t.Errorf("takeCommitted returned %d ids, want %d", got, writers*each)
	}
}

func TestSpoolUpdateRemoveFail(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir)
	id := commit(t, s, &Envelope{From: "a@x", To: []string{"b@y", "c@y"}}, testHeader, "body\r\n")

	env, err := s.Envelope(id)
	if err != nil {
		t.Fatal(err)
	}
	env.Attempts, env.NextAttempt, env.LastError = 2, time.Now().Add(time.Hour).Round(0), "451 try later"
	if err := s.Update(env); err != nil {
		t.Fatal(err)
	}
	got, msg := readMessage(t, s, id)
	if got.Attempts != 2 || !got.NextAttempt.Equal(env.NextAttempt) || got.LastError != env.LastError {
		t.Errorf("after Update: %+v", got)
	}
	if msg != testHeader+"\r\nbody\r\n" {
		t.Errorf("Update changed the message: %q", msg)
	}

	got.Failed = []FailedRecipient{{Rcpt: "c@y", Error: "550 no such user"}}
	if err := s.Fail(got); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.List(); len(ids) != 0 {
		t.Errorf("List after Fail = %v", ids)
	}
	if files := filesOf(t, dir, id); !slices.Equal(files, []string{"failed/" + id + ".body", "failed/" + id + ".meta"}) {
		t.Errorf("files after Fail = %v", files)
	}
	if _, _, err := s.Open(id); err == nil {
		t.Error("Open of failed message succeeded")
	}

	id2 := commit(t, s, &Envelope{From: "a@x", To: []string{"b@y"}}, testHeader, "body\r\n")
	if err := s.Remove(id2); err != nil {
		t.Fatal(err)
	}
	if files := filesOf(t, dir, id2); len(files) != 0 {
		t.Errorf("files after Remove = %v", files)
	}
	if err := s.Update(&Envelope{ID: id2}); err == nil {
		t.Error("Update of removed message succeeded (would resurrect it)")
	}
	for _, bad := range []string{"../../etc/passwd", "", "ABC"} {
		if err := s.Remove(bad); err == nil {
			t.Errorf("Remove(%q) succeeded", bad)
		}
	}
}

func TestIncomingAbort(t *testing.T) {
	s := testSpool(t, t.TempDir())
	in, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("partial"))
	if err := in.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := in.Abort(); err != nil {
		t.Fatal("second Abort:", err)
	}
	if left, _ := os.ReadDir(filepath.Join(s.dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp not empty after Abort: %v", left)
	}
	if _, err := in.Commit(&Envelope{To: []string{"b@y"}}, []byte(testHeader)); err == nil {
		t.Error("Commit after Abort succeeded")
	}

	// Abort after a successful Commit must keep the message.
	id := commit(t, s, &Envelope{To: []string{"b@y"}}, testHeader, "x\r\n")
	if ids, _ := s.List(); !slices.Equal(ids, []string{id}) {
		t.Errorf("List = %v", ids)
	}
}

func TestDirSyncerShares(t *testing.T) {
	d := &dirSyncer{path: t.TempDir()}
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

	bad := &dirSyncer{path: filepath.Join(t.TempDir(), "missing")}
	if err := bad.sync(); err == nil {
		t.Error("sync of a missing directory succeeded")
	}
}
