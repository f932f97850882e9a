package relay

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// On-disk format of the spool's files (format version 2).
//
// A message file, <id>.msg, is one file written front to back:
//
//	body        bodyLen bytes, exactly as received during DATA
//	header      headerLen bytes: the final, signed header block, each field ending
//	            in CRLF, without the blank line
//	envelope    envLen bytes: the Envelope as JSON
//	trailer     trailerLen (44) bytes, below
//
// An envelope override, <id>.env, written by Update and Fail, has the same shape
// with bodyLen = headerLen = 0 and kind 'E'.
//
// The trailer (integers big-endian):
//
//	off len
//	  0   7  magic "SGSPOOL"
//	  7   1  kind: 'M' message file, 'E' envelope override
//	  8   4  format version, 2 (version 1 never shipped in a release)
//	 12   4  reserved, 0
//	 16   8  bodyLen    (the body is at offset 0)
//	 24   8  headerLen  (the header is at offset bodyLen)
//	 32   8  envLen     (the envelope is at offset bodyLen+headerLen)
//	 40   4  CRC-32C (Castagnoli) of header, envelope and trailer bytes 0..39
//
// A file is valid only if its size is exactly bodyLen+headerLen+envLen+44, the
// magic, kind and version match, and the checksum matches; so a torn or
// truncated trailer, or a damaged header or envelope, is detected by reading
// only the end of the file. The body is not checksummed: it is fsynced before
// the rename that makes the file visible under its final name, and checking it
// would mean reading every queued body at start-up.
const (
	trailerLen    = 44
	trailerMagic  = "SGSPOOL"
	formatVersion = 2

	kindMsg = 'M'
	kindEnv = 'E'

	// tailReadSize is how much of a file's end is read at once: usually the
	// trailer, envelope and header block all fit, so one read suffices.
	tailReadSize = 8 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// trailer describes where the parts of a spool file are.
type trailer struct {
	kind      byte
	bodyLen   int64
	headerLen int64
	envLen    int64
}

// appendTail appends header, the JSON of env and the trailer to buf: what
// follows the body in a message file (or, with a nil header and kind 'E', the
// whole of an envelope override).
func appendTail(buf []byte, kind byte, bodyLen int64, header []byte, env *Envelope) ([]byte, error) {
	js, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode envelope of %s: %w", env.ID, err)
	}
	buf = append(buf, header...)
	buf = append(buf, js...)
	var t [trailerLen]byte
	copy(t[:], trailerMagic)
	t[7] = kind
	binary.BigEndian.PutUint32(t[8:], formatVersion)
	binary.BigEndian.PutUint64(t[16:], uint64(bodyLen))
	binary.BigEndian.PutUint64(t[24:], uint64(len(header)))
	binary.BigEndian.PutUint64(t[32:], uint64(len(js)))
	crc := crc32.Update(crc32.Update(0, castagnoli, header), castagnoli, js)
	crc = crc32.Update(crc, castagnoli, t[:40])
	binary.BigEndian.PutUint32(t[40:], crc)
	return append(buf, t[:]...), nil
}

// errBadFile marks a spool file whose content is not valid (as opposed to an
// I/O error reading it).
var errBadFile = errors.New("invalid spool file")

func badFile(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadFile, fmt.Sprintf(format, args...))
}

// readTail reads and checks the trailer of a spool file of the given size and
// kind, and returns the trailer with the header and envelope JSON bytes.
func readTail(r io.ReaderAt, size int64, kind byte) (t trailer, header, js []byte, err error) {
	if size < trailerLen {
		return t, nil, nil, badFile("%d bytes, shorter than the trailer", size)
	}
	// One read for the common case: the end of the file holds trailer, envelope and header.
	n := min(size, tailReadSize)
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, size-n); err != nil {
		return t, nil, nil, err
	}
	tb := buf[n-trailerLen:]
	switch {
	case string(tb[:7]) != trailerMagic:
		return t, nil, nil, badFile("no trailer (bad magic)")
	case tb[7] != kind:
		return t, nil, nil, badFile("kind %q, want %q", tb[7], kind)
	case binary.BigEndian.Uint32(tb[8:]) != formatVersion:
		return t, nil, nil, badFile("format version %d, want %d", binary.BigEndian.Uint32(tb[8:]), formatVersion)
	case binary.BigEndian.Uint32(tb[12:]) != 0:
		return t, nil, nil, badFile("reserved trailer field set")
	}
	b, h, e := binary.BigEndian.Uint64(tb[16:]), binary.BigEndian.Uint64(tb[24:]), binary.BigEndian.Uint64(tb[32:])
	// Each length is at most the file size, so the sum cannot overflow.
	if b > uint64(size) || h > uint64(size) || e > uint64(size) || b+h+e+trailerLen != uint64(size) {
		return t, nil, nil, badFile("lengths %d+%d+%d+%d do not add up to the file size %d", b, h, e, trailerLen, size)
	}
	t = trailer{kind: tb[7], bodyLen: int64(b), headerLen: int64(h), envLen: int64(e)}
	want := binary.BigEndian.Uint32(tb[40:])

	meta := t.headerLen + t.envLen // header and envelope, just before the trailer
	var he []byte
	if meta <= n-trailerLen {
		he = buf[n-trailerLen-meta : n-trailerLen]
	} else {
		he = make([]byte, meta)
		if _, err := r.ReadAt(he, t.bodyLen); err != nil {
			return t, nil, nil, err
		}
	}
	crc := crc32.Update(crc32.Update(0, castagnoli, he), castagnoli, tb[:40])
	if crc != want {
		return t, nil, nil, badFile("checksum mismatch (stored %08x, computed %08x)", want, crc)
	}
	return t, he[:t.headerLen], he[t.headerLen:], nil
}

// decodeEnvelope parses the envelope JSON of message id.
func decodeEnvelope(js []byte, id string) (*Envelope, error) {
	env := new(Envelope)
	if err := json.Unmarshal(js, env); err != nil {
		return nil, badFile("envelope: %v", err)
	}
	if env.ID != id {
		return nil, badFile("holds id %q", env.ID)
	}
	return env, nil
}
