package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// names lists the entries of dir, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.txt")
	if err := Write(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, p); got != "two" {
		t.Errorf("content %q, want %q", got, "two")
	}
	if got := names(t, dir); !slices.Equal(got, []string{"f.txt"}) {
		t.Errorf("directory holds %q, want only f.txt", got)
	}
}

func TestPermIsExact(t *testing.T) {
	dir := t.TempDir()
	for _, perm := range []fs.FileMode{0o600, 0o644, 0o666, 0o400} {
		p := filepath.Join(dir, perm.String())
		if err := Write(p, []byte("x"), perm); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("mode %v, want %v (the umask must not apply)", fi.Mode().Perm(), perm)
		}
	}
	p := filepath.Join(dir, "default")
	if err := WriteFunc(p, Options{}, func(w io.Writer) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("zero Perm: mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	err := WriteFunc(filepath.Join(dir, "setuid"), Options{Perm: fs.ModeSetuid | 0o755}, func(w io.Writer) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "other than permissions") {
		t.Errorf("setuid mode: error %v, want a refusal", err)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key.pem")
	if err := Create(p, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Create(p, []byte("second"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create: error %v, want one matching fs.ErrExist", err)
	}
	if !strings.Contains(err.Error(), p) {
		t.Errorf("error %q does not name %s", err, p)
	}
	if got := readString(t, p); got != "first" {
		t.Errorf("content %q after refused Create, want %q", got, "first")
	}
	if got := names(t, dir); !slices.Equal(got, []string{"key.pem"}) {
		t.Errorf("directory holds %q, want only key.pem (no temporary file left)", got)
	}
}

// A file that appears between the existence check and the link is not replaced.
func TestCreateLosesRaceWithoutClobbering(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key.pem")
	err := WriteFunc(p, Options{NoReplace: true}, func(w io.Writer) error {
		if err := os.WriteFile(p, []byte("theirs"), 0o600); err != nil {
			return err
		}
		_, err := io.WriteString(w, "ours")
		return err
	})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("error %v, want one matching fs.ErrExist", err)
	}
	if got := readString(t, p); got != "theirs" {
		t.Errorf("content %q, want the other writer's %q", got, "theirs")
	}
	if got := names(t, dir); !slices.Equal(got, []string{"key.pem"}) {
		t.Errorf("directory holds %q, want only key.pem", got)
	}
}

func TestFailedFillChangesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("source broke")
	err := WriteFunc(p, Options{}, func(w io.Writer) error {
		io.WriteString(w, "half of the new")
		return boom
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), p) {
		t.Fatalf("error %v, want the fill error wrapped with the path", err)
	}
	if got := readString(t, p); got != "old" {
		t.Errorf("content %q, want the old content", got)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"f"}) {
		t.Errorf("directory holds %q, want only f", got)
	}
}

func TestErrorsNameTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing-dir", "f")
	err := Write(p, []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), p) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v, want one naming %s and matching fs.ErrNotExist", err, p)
	}
}

func TestTempDir(t *testing.T) {
	root := t.TempDir()
	tmp, dst := filepath.Join(root, "tmp"), filepath.Join(root, "dst")
	for _, d := range []string{tmp, dst} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dst, "x.env")
	var tempName string
	err := WriteFunc(p, Options{TempDir: tmp, NoDirSync: true}, func(w io.Writer) error {
		tempName = w.(*os.File).Name()
		_, err := io.WriteString(w, "env")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(tempName) != tmp {
		t.Errorf("temporary file %s not in TempDir %s", tempName, tmp)
	}
	if got := readString(t, p); got != "env" {
		t.Errorf("content %q", got)
	}
	if got := names(t, tmp); len(got) != 0 {
		t.Errorf("TempDir holds %q after the write, want nothing", got)
	}
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "id.eml")
	// What a crash inside WriteFunc leaves: the temporary file, complete or not.
	var left string
	WriteFunc(p, Options{}, func(w io.Writer) error {
		left = w.(*os.File).Name()
		os.Link(left, left+"-kept") // survives the cleanup of the failed write
		return errors.New("crash")
	})
	if err := os.Rename(left+"-kept", left); err != nil {
		t.Fatal(err)
	}
	others := []string{"id.eml", ".id.eml.tmp", ".id.eml.tmpx1", ".other.eml.tmp123", "id.eml.tmp1", ".id.eml.tmp1.tmp2"}
	for _, n := range others {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveTemps(p, ""); err != nil {
		t.Fatal(err)
	}
	got := names(t, dir)
	if slices.Contains(got, filepath.Base(left)) {
		t.Errorf("leftover %s not removed", filepath.Base(left))
	}
	want := slices.Clone(others)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("directory holds %q, want %q (only the leftover removed)", got, want)
	}
}
