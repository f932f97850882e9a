package relay

// Migration of the older spool layout (format version 1: msg/<id>.meta holding
// the envelope and header block, msg/<id>.body the body) to message files,
// run by recovery at OpenSpool. The converted file is made durable before the
// old pair is removed, so a crash during the conversion loses nothing.

import (
	"fmt"
	"io"
	"os"

	"sealgate/internal/atomicfile"
)

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
