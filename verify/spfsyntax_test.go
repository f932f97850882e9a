package verify

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// TestSPFSyntax runs the records of testdata/spf-syntax.txt through the RFC 7208 §12
// grammar check.
func TestSPFSyntax(t *testing.T) {
	f, err := os.Open("testdata/spf-syntax.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	n := 0
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		want, record, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		n++
		msg := CheckSPFSyntax(record)
		if (msg == "") != (want == "ok") {
			t.Errorf("%q: want %s, got %q", record, want, msg)
		}
	}
	if n < 20 {
		t.Fatalf("only %d cases read", n)
	}
}
