// Package atomicfile writes a file so that a crash leaves at its path either what
// was there before (or nothing) or the complete new content, never a part of it.
//
// The content goes to a temporary file in the same directory (or in a directory
// the caller names on the same file system), which is fsynced, closed and then
// renamed into place (rename(2) replaces atomically) or, when an existing file
// must not be replaced, hard-linked (link(2) fails if the name exists, so a file
// that appeared meanwhile is never clobbered). Last, the directory is fsynced: a
// rename or link is atomic at once but durable only once its directory is
// (POSIX fsync; ext4 and xfs behave so). On failure the temporary file is
// removed and the error names the file.
//
// It is for files written now and then: keys, configuration, a dev-mode outbox
// message, a spool envelope. It does not make a hot path fast: sealgate's spool
// commits small messages through a journal with one shared fdatasync, and groups
// the directory fsyncs of concurrent writers (Options.NoDirSync leaves that to
// the caller). It takes no locks: of two concurrent writers of one path the last
// rename wins (with NoReplace, the first link). The file gets exactly the
// permission bits asked for, whatever the umask; owner and mode of a replaced
// file are not carried over.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Options control WriteFunc. The zero value replaces an existing file, creates
// the temporary file beside path, gives mode 0600 and fsyncs the directory.
type Options struct {
	// Perm is the new file's permission bits, set exactly (the umask does not
	// apply); 0 means 0600.
	Perm fs.FileMode
	// NoReplace refuses to write when path already exists; the error then
	// matches fs.ErrExist and nothing is left behind.
	NoReplace bool
	// TempDir is where the temporary file is written; "" means path's own
	// directory. It must be on path's file system. A directory that its owner
	// empties at start (like the spool's tmp/) keeps crash leftovers out of the
	// destination directory.
	TempDir string
	// NoDirSync skips the fsync of path's directory, for a caller that groups
	// it with other writers' (the spool). Until then the new name may be lost
	// in a power failure.
	NoDirSync bool
}

// Write writes data to path, replacing any file there, with permission bits perm.
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteFunc(path, Options{Perm: perm}, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Create writes data to a new file at path with permission bits perm. If path
// already exists it writes nothing and returns an error matching fs.ErrExist.
func Create(path string, data []byte, perm fs.FileMode) error {
	return WriteFunc(path, Options{Perm: perm, NoReplace: true}, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc writes the file at path with what fill writes to w (the temporary
// file itself, so io.Copy can use the kernel's copy paths). If fill returns an
// error, nothing changes at path and that error is returned, wrapped.
func WriteFunc(path string, o Options, fill func(w io.Writer) error) (err error) {
	perm := o.Perm
	if perm == 0 {
		perm = 0o600
	}
	if perm&^fs.ModePerm != 0 {
		return fmt.Errorf("write %s: mode %v has bits other than permissions", path, perm)
	}
	dir := filepath.Dir(path)
	tmpDir := o.TempDir
	if tmpDir == "" {
		tmpDir = dir
	}
	if o.NoReplace {
		// Checked here too, so a refusal costs no write; the link below decides.
		if _, err := os.Lstat(path); err == nil {
			return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
		}
	}

	// CreateTemp opens with O_EXCL and mode 0600, so no one else can open the
	// file before it is complete.
	f, err := os.CreateTemp(tmpDir, tempPrefix(path)+"*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil || o.NoReplace {
			// On failure nothing is left; after a link the file lives on at path.
			os.Remove(tmp)
		}
	}()
	if perm != 0o600 {
		if err := f.Chmod(perm); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := fill(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync %s: %w", path, tmp, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("write %s: close %s: %w", path, tmp, err)
	}
	if o.NoReplace {
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
			}
			return fmt.Errorf("write %s: %w", path, err)
		}
	} else if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if o.NoDirSync {
		return nil
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// SyncDir fsyncs directory dir, making the renames, links, creations and
// removals of names in it durable. A file system that cannot fsync a directory
// (EINVAL) is taken to make them durable by itself.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// RemoveTemps removes temporary files that writes of path interrupted by a
// crash left in path's directory (or in tempDir, if not ""). Call it only when
// no write of path is running, as a writer that is the only one for its path
// knows (the outbox writes each message once at a time).
func RemoveTemps(path, tempDir string) error {
	if tempDir == "" {
		tempDir = filepath.Dir(path)
	}
	ents, err := os.ReadDir(tempDir)
	if err != nil {
		return fmt.Errorf("remove temporary files of %s: %w", path, err)
	}
	prefix := tempPrefix(path)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || rest == "" || strings.Trim(rest, "0123456789") != "" || !e.Type().IsRegular() {
			continue // CreateTemp's suffix is decimal digits
		}
		p := filepath.Join(tempDir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove temporary file %s of %s: %w", p, path, err)
		}
	}
	return nil
}

// tempPrefix is the name prefix of path's temporary files: hidden, and named
// after the file they become.
func tempPrefix(path string) string {
	return "." + filepath.Base(path) + ".tmp"
}
