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

// TestAppendHeaderHashInput: each name takes the bottom-most instance not yet used, names
// match case-insensitively, a name with no instance left (oversigning) or an empty name adds
// nothing (RFC 6376 §5.4.2).
func TestAppendHeaderHashInput(t *testing.T) {
	h := Header{
		Field("Subject: one\r\n"), Field("From: a@x\r\n"), Field("subject: two\r\n"), Field("To: b@y\r\n"), Field("SUBJECT : three\r\n"),
	}
	got := string(AppendHeaderHashInput(nil, h, []string{"subject", "From", " Subject ", "", "x-none", "from", "subject", "subject", "to"}, Simple))
	want := "SUBJECT : three\r\nFrom: a@x\r\nsubject: two\r\nSubject: one\r\nTo: b@y\r\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	idx := IndexHeader(h)
	if n := idx.Count("Subject"); n != 3 {
		t.Errorf("Count = %d", n)
	}
	if f := idx.Next("SUBJECT"); string(f) != "SUBJECT : three\r\n" || idx.Count("subject") != 2 {
		t.Errorf("Next = %q, then Count %d", f, idx.Count("subject"))
	}
}
