package dmarcreport

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"path"
	"strings"
)

// Limits bound what one import reads and what the store keeps. Zero fields take the
// defaults.
type Limits struct {
	// MaxInputBytes caps a file, message or attachment as read, compressed (default 10 MiB).
	MaxInputBytes int64
	// MaxXMLBytes caps one report's XML after decompression (default 32 MiB): the bytes
	// read are counted, so an archive that lies about its sizes is caught all the same.
	MaxXMLBytes int64
	// MaxRecords caps the records of one report (default 50000).
	MaxRecords int
	// MaxReports caps the reports the store keeps (default 20000); an import beyond it
	// is refused until old reports are pruned.
	MaxReports int
}

// The defaults of Limits.
const (
	DefaultMaxInputBytes = 10 << 20
	DefaultMaxXMLBytes   = 32 << 20
	DefaultMaxRecords    = 50000
	DefaultMaxReports    = 20000
)

func (l Limits) maxInput() int64 { return cmpOr(l.MaxInputBytes, DefaultMaxInputBytes) }
func (l Limits) maxXML() int64   { return cmpOr(l.MaxXMLBytes, DefaultMaxXMLBytes) }
func (l Limits) maxRecords() int { return cmpOr(l.MaxRecords, DefaultMaxRecords) }
func (l Limits) maxReports() int { return cmpOr(l.MaxReports, DefaultMaxReports) }

func cmpOr[T int | int64](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// maxDepth bounds nesting: a message in a message, an archive in an archive.
const maxDepth = 4

// maxZipEntries bounds the files looked at in one zip archive.
const maxZipEntries = 16

// document is one XML document found in an input, with where it came from.
type document struct {
	source string
	data   []byte
}

// errTooLarge is returned by readCapped when the input exceeds its cap.
type errTooLarge struct {
	what string
	max  int64
}

func (e *errTooLarge) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes (limit)", e.what, e.max)
}

// readCapped reads all of r, failing once more than max bytes were read.
func readCapped(r io.Reader, max int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(b)) > max {
		return nil, &errTooLarge{what: what, max: max}
	}
	return b, nil
}

// extract finds the report documents in data, which is XML, gzip, zip or a message
// (RFC 5322) with the report attached.
func extract(source string, data []byte, lim Limits, depth int) ([]document, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%s: nested more than %d levels deep", source, maxDepth)
	}
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", source, err)
		}
		zr.Multistream(false)
		x, err := readCapped(zr, lim.maxXML(), source+" decompressed")
		if err != nil {
			return nil, err
		}
		return extract(source, x, lim, depth+1)
	case bytes.HasPrefix(data, []byte("PK\x03\x04")):
		return extractZip(source, data, lim, depth)
	case looksLikeXML(data):
		return []document{{source: source, data: data}}, nil
	case looksLikeMessage(data):
		return extractMessage(source, data, lim, depth)
	}
	return nil, fmt.Errorf("%s: neither XML, gzip, zip nor a mail message", source)
}

func extractZip(source string, data []byte, lim Limits, depth int) ([]document, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: zip: %w", source, err)
	}
	var docs []document
	var total int64
	seen := 0
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		if seen++; seen > maxZipEntries {
			return nil, fmt.Errorf("%s: more than %d files in the zip archive", source, maxZipEntries)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: zip entry %s: %w", source, f.Name, err)
		}
		// The cap is on what is read, across entries: declared sizes can lie.
		x, err := readCapped(rc, lim.maxXML()-total, source+" decompressed")
		rc.Close()
		if err != nil {
			return nil, err
		}
		total += int64(len(x))
		d, err := extract(source+"/"+path.Base(f.Name), x, lim, depth+1)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: the zip archive holds no report", source)
	}
	return docs, nil
}

func looksLikeXML(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '<'
}

// looksLikeMessage: the first line is a header field (name, colon).
func looksLikeMessage(b []byte) bool {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	name, _, ok := bytes.Cut(line, []byte(":"))
	if !ok || len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// reportTypes are the media types a report is sent as (RFC 7489 §7.2.1.1), and those
// seen in the wild.
var reportTypes = map[string]bool{
	"application/gzip": true, "application/x-gzip": true, "application/zip": true,
	"application/x-zip-compressed": true, "application/x-zip": true, "text/xml": true,
	"application/xml": true, "application/octet-stream": true, "message/rfc822": true,
}

func extractMessage(source string, data []byte, lim Limits, depth int) ([]document, error) {
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: mail message: %w", source, err)
	}
	var docs []document
	err = walkPart(source, textproto.MIMEHeader(msg.Header), msg.Body, lim, depth, &docs)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: the message has no report attached (looked for application/gzip, application/zip and text/xml parts)", source)
	}
	return docs, nil
}

func walkPart(source string, h textproto.MIMEHeader, body io.Reader, lim Limits, depth int, docs *[]document) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: MIME nested more than %d levels deep", source, maxDepth)
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("%s: Content-Type %q: %w", source, ct, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: MIME: %w", source, err)
			}
			if err := walkPart(source, p.Header, p, lim, depth+1, docs); err != nil {
				return err
			}
		}
	}
	name := params["name"]
	if _, dp, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil && dp["filename"] != "" {
		name = dp["filename"]
	}
	if !reportTypes[mt] && !strings.HasSuffix(name, ".gz") && !strings.HasSuffix(name, ".zip") && !strings.HasSuffix(name, ".xml") {
		return nil // the text part saying "this is a report"
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, &skipSpace{r: body})
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	}
	what := source + " attachment"
	if name != "" {
		what = source + "/" + path.Base(name)
	}
	b, err := readCapped(body, lim.maxInput(), what)
	if err != nil {
		return err
	}
	if mt == "message/rfc822" {
		d, err := extractMessage(what, b, lim, depth+1)
		if err != nil {
			return err
		}
		*docs = append(*docs, d...)
		return nil
	}
	d, err := extract(what, b, lim, depth+1)
	if err != nil {
		if mt == "application/octet-stream" && name == "" {
			return nil // some other binary part
		}
		return err
	}
	*docs = append(*docs, d...)
	return nil
}

// skipSpace drops the white space base64 bodies are broken with (the decoder only
// skips CR and LF).
type skipSpace struct{ r io.Reader }

func (s *skipSpace) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != ' ' && c != '\t' {
			p[j] = c
			j++
		}
	}
	if j == 0 && n > 0 && err == nil {
		return s.Read(p)
	}
	return j, err
}

var errNotMaildir = errors.New("a directory that is not a Maildir (no cur/ or new/)")
