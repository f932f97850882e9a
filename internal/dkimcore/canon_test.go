package dkimcore

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// referenceRelaxedBody is RFC 6376 §3.4.4 written line by line, the obvious way, to check
// the streaming canonicaliser against.
func referenceRelaxedBody(body string) string {
	lines := strings.Split(body, "\r\n")
	unterminated := lines[len(lines)-1]
	lines = lines[:len(lines)-1]
	if unterminated != "" {
		lines = append(lines, unterminated)
	}
	var out []string
	for _, l := range lines {
		var b strings.Builder
		space := false
		for i := 0; i < len(l); i++ {
			if l[i] == ' ' || l[i] == '\t' {
				space = true
				continue
			}
			if space {
				b.WriteByte(' ')
			}
			space = false
			b.WriteByte(l[i])
		}
		out = append(out, b.String())
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\r\n") + "\r\n"
}

func referenceSimpleBody(body string) string {
	for strings.HasSuffix(body, "\r\n") {
		body = strings.TrimSuffix(body, "\r\n")
	}
	return body + "\r\n"
}

func canonicalize(t testing.TB, body string, c Canonicalization, chunk int) string {
	var out bytes.Buffer
	w := NewBodyCanonicalizer(&out, c)
	b := []byte(body)
	for len(b) > 0 {
		n := min(chunk, len(b))
		if _, err := w.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestBodyCanonicalization(t *testing.T) {
	tests := []struct {
		name, in, simple, relaxed string
	}{
		{"empty", "", "\r\n", ""},
		{"only blank lines", "\r\n\r\n", "\r\n", ""},
		{"white space line", " \t\r\n", " \t\r\n", ""},
		{"unterminated", "abc", "abc\r\n", "abc\r\n"},
		{"trailing ws and blank lines", "a  b\t\r\n\r\n\r\n", "a  b\t\r\n", "a b\r\n"},
		{"leading tab", "\tx\r\n", "\tx\r\n", " x\r\n"},
		{"inner blank lines kept", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n"},
		{"blank ws lines between", "a\r\n \r\n\t\r\nb\r\n", "a\r\n \r\n\t\r\nb\r\n", "a\r\n\r\n\r\nb\r\n"},
		{"lone CR is content", "a\rb\r\n", "a\rb\r\n", "a\rb\r\n"},
		{"trailing lone CR", "a\r", "a\r\r\n", "a\r\r\n"},
		{"ws before lone CR", "a \r\r\n", "a \r\r\n", "a \r\r\n"},
		{"crlf then ws only unterminated", "a\r\n  ", "a\r\n  \r\n", "a\r\n"},
		{"trailing white space and empty lines", "Totals below.  \r\n\tLine two\t\r\n\r\n", "Totals below.  \r\n\tLine two\t\r\n", "Totals below.\r\n Line two\r\n"},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 2, 3, 7, 1 << 20} {
			if got := canonicalize(t, tt.in, Relaxed, chunk); got != tt.relaxed {
				t.Errorf("%s: relaxed (chunk %d) = %q, want %q", tt.name, chunk, got, tt.relaxed)
			}
			if got := canonicalize(t, tt.in, Simple, chunk); got != tt.simple {
				t.Errorf("%s: simple (chunk %d) = %q, want %q", tt.name, chunk, got, tt.simple)
			}
		}
	}
}

func TestBodyHashConstants(t *testing.T) {
	// RFC 6376 §3.4.3/§3.4.4 empty-body hashes, and a body with trailing white space and empty
	// lines.
	for _, tt := range []struct {
		body string
		c    Canonicalization
		want string
	}{
		{"", Relaxed, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
		{"", Simple, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY="},
		{"Totals below.  \r\n\tLine two\t\r\n\r\n", Relaxed, "DapSA3MWkeoN3LaBjupcppw3MK8VhzSxI5qPqsot3N0="},
		{"Totals below.  \r\n\tLine two\t\r\n\r\n", Simple, "3y0gyWhglZ6WIDY8kyC2p5sjl//sacn1DDZJV+ve1Jg="},
		{"Hi.\r\n\r\nWe lost the game. Are you hungry yet?\r\n\r\nJoe.\r\n", Relaxed, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="},
	} {
		got := base64.StdEncoding.EncodeToString(HashBody([]byte(tt.body), tt.c)[tt.c])
		if got != tt.want {
			t.Errorf("%s body hash of %q = %s, want %s", tt.c, tt.body, got, tt.want)
		}
	}
}

func randomBody(r *rand.Rand, n int) string {
	alphabet := []string{"a", "b", " ", "  ", "\t", "\r\n", "\r\n", "\r", "\n", "xyz", "\r\n\r\n", " \r\n"}
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

func TestBodyCanonicalizationRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		body := randomBody(r, r.IntN(200))
		chunk := 1 + r.IntN(50)
		if got, want := canonicalize(t, body, Relaxed, chunk), referenceRelaxedBody(body); got != want {
			t.Fatalf("case %d relaxed(%q, chunk %d) = %q, want %q", i, body, chunk, got, want)
		}
		if got, want := canonicalize(t, body, Simple, chunk), referenceSimpleBody(body); got != want {
			t.Fatalf("case %d simple(%q, chunk %d) = %q, want %q", i, body, chunk, got, want)
		}
	}
}

func FuzzRelaxedBody(f *testing.F) {
	f.Add([]byte("a  b\t\r\n\r\nc\r\n\r\n"), uint8(3))
	f.Add([]byte("\r\r\n\n \r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8) {
		c := int(chunk%64) + 1
		if got, want := canonicalize(t, string(body), Relaxed, c), referenceRelaxedBody(string(body)); got != want {
			t.Fatalf("relaxed(%q, chunk %d) = %q, want %q", body, c, got, want)
		}
		if got, want := canonicalize(t, string(body), Simple, c), referenceSimpleBody(string(body)); got != want {
			t.Fatalf("simple(%q, chunk %d) = %q, want %q", body, c, got, want)
		}
	})
}

func TestRelaxedHeader(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Subject:  Quarterly   numbers\r\n\t(draft)\r\n", "subject:Quarterly numbers (draft)\r\n"},
		{"FROM : a@b\r\n", "from:a@b\r\n"},
		{"X-Empty:\r\n", "x-empty:\r\n"},
		{"X-Ws: \t \r\n", "x-ws:\r\n"},
		{"To: A  <a@b> \t\r\n", "to:A <a@b>\r\n"},
		{"Subject: Grüße\r\n", "subject:Grüße\r\n"},
	} {
		if got := string(AppendCanonicalField(nil, Field(tt.in), Relaxed)); got != tt.want {
			t.Errorf("relaxed(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkRelaxedBody(b *testing.B) {
	// Mail-like text: 72-column lines, a few with trailing spaces or tabs.
	var sb strings.Builder
	r := rand.New(rand.NewPCG(3, 4))
	for sb.Len() < 1<<20 {
		line := strings.Repeat("word ", 14) + "end"
		switch r.IntN(20) {
		case 0:
			line += "  "
		case 1:
			line = "\t" + line
		}
		sb.WriteString(line + "\r\n")
	}
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.Run("relaxed+sha256", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			HashBody(body, Relaxed)
		}
	})
	b.Run("relaxed-only", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			w := NewBodyCanonicalizer(io.Discard, Relaxed)
			w.Write(body)
			w.Close()
		}
	})
	b.Run("sha256-only", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			sha256.Sum256(body)
		}
	})
}
