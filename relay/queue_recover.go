package relay

// Recovery at OpenSpool: what a crash can leave behind in tmp/, msg/ and
// failed/, and how each case is finished or undone. The ordering of the writes
// it relies on is described at Commit, Update, Remove and Fail; the journal's
// own recovery is in queue_journal.go.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

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
		// out of the journal); each still has its source elsewhere, or was never
		// acknowledged.
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
	// older version's unfinished write-out; the sources are still there).
	for sub, files := range map[string]dirFiles{dirMsg: msg, dirFailed: failed} {
		for id := range files[extPart] {
			if err := remove(sub, id, extPart, "uncommitted message"); err != nil {
				return err
			}
		}
	}

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
	return nil
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
	for _, ext := range []string{extPart, extMsg, extEnv} {
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
