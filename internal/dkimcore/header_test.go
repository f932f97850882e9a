package dkimcore

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadHeader(t *testing.T) {
	msg := "From: a@b\nSubject: one\n two\nX:\n\nbody\n"
	br := bufio.NewReader(strings.NewReader(msg))
	h, err := ReadHeader(br, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 {
		t.Fatalf("got %d fields, want 3", len(h))
	}
	if string(h[1]) != "Subject: one\r\n two\r\n" {
		t.Errorf("folded field = %q", h[1])
	}
	if got := h.Values("subject"); len(got) != 1 || got[0] != "one two" {
		t.Errorf("Values(subject) = %q", got)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "body\n" {
		t.Errorf("body = %q", rest)
	}
	if _, err := ReadHeader(bufio.NewReader(strings.NewReader(msg)), true); !errors.Is(err, ErrBareLineEnd) {
		t.Errorf("strict mode accepted bare LF: %v", err)
	}
}

func TestReadHeaderErrors(t *testing.T) {
	for _, in := range []string{
		" continuation first\r\n\r\n",
		"no colon here\r\n\r\n",
		": empty name\r\n\r\n",
		"Bad Name: x\r\n\r\n",
		"A: x\r" + "B: y\r\n\r\n",
	} {
		if _, err := ReadHeader(bufio.NewReader(strings.NewReader(in)), true); err == nil {
			t.Errorf("ReadHeader(%q) accepted a malformed header", in)
		}
	}
	// No blank line: all header, empty body.
	h, err := ReadHeader(bufio.NewReader(strings.NewReader("A: b\r\nC: d")), true)
	if err != nil || len(h) != 2 || string(h[1]) != "C: d\r\n" {
		t.Errorf("header without body: %q, %v", h, err)
	}
	long := "X: " + strings.Repeat("a", MaxHeaderBytes) + "\r\n\r\n"
	if _, err := ReadHeader(bufio.NewReader(strings.NewReader(long)), false); err == nil {
		t.Error("accepted a header over MaxHeaderBytes")
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: x\r\n y\r\n\r\nbody"))
	f.Add([]byte("A:\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, strict := range []bool{false, true} {
			h, err := ReadHeader(bufio.NewReader(strings.NewReader(string(in))), strict)
			if err != nil {
				continue
			}
			for _, f := range h {
				if !strings.HasSuffix(string(f), "\r\n") || f.Name() == "" {
					t.Fatalf("field %q not CRLF-terminated or nameless", f)
				}
			}
		}
	})
}
