package submit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", h)
	}
	if h2, _ := HashPassword("correct horse"); h2 == h {
		t.Fatal("same salt twice")
	}
	if !verifyPassword(h, "correct horse") || verifyPassword(h, "correct horsf") || verifyPassword(h, "") {
		t.Fatal("verify")
	}
	if _, err := HashPassword(""); err == nil {
		t.Fatal("empty password hashed")
	}
}

func TestUsersFile(t *testing.T) {
	argon, _ := HashPassword("alice-pw")
	bc, err := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf(`# users
alice@client.example %s *@client.example

Bob %s bob@other.example *@*.other.example null_sender=yes rate=60 max_recipients=10 seal=no unsigned=yes
`, argon, bc)
	path := filepath.Join(t.TempDir(), "users")
	os.WriteFile(path, []byte(file), 0o600)
	u, err := LoadUsers(path, UsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u.Len() != 2 {
		t.Fatalf("Len = %d", u.Len())
	}
	id, err := u.Authenticate("Alice@Client.Example", "alice-pw")
	if err != nil || id.Name != "alice@client.example" || id.Kind != KindLogin || id.AllowedString() != "*@client.example" || !id.Seal {
		t.Fatalf("alice: %+v %v", id, err)
	}
	id, err = u.Authenticate("bob", "bob-pw")
	if err != nil || id.Name != "Bob" || !id.AllowNullSender || id.RatePerMinute != 60 || id.MaxRecipients != 10 || id.Seal || !id.AllowUnsigned ||
		id.AllowedString() != "bob@other.example, *@*.other.example" {
		t.Fatalf("bob: %+v %v", id, err)
	}
	for _, c := range [][2]string{{"alice@client.example", "bob-pw"}, {"bob", "alice-pw"}, {"carol", "x"}, {"", ""}, {"alice@client.example", ""}} {
		if id, err := u.Authenticate(c[0], c[1]); id != nil || err != smtp.ErrAuthFailed {
			t.Errorf("Authenticate(%q, %q) = %v, %v; want ErrAuthFailed", c[0], c[1], id, err)
		}
	}
}

func TestUsersFileErrors(t *testing.T) {
	argon, _ := HashPassword("x")
	file := strings.Join([]string{
		"alice " + argon + " *@client.example",
		"alice " + argon + " *@client.example",            // 2: duplicate
		"ALICE " + argon + " *@client.example",            // 3: duplicate after folding
		"carol " + argon,                                  // 4: no pattern
		"dave notahash *@client.example",                  // 5: bad hash
		"erin " + argon + " *",                            // 6: everything
		"frank " + argon + " *@client.example rate=-1",    // 7: bad option value
		"gina " + argon + " *@client.example colour=blue", // 8: unknown option
		"hank $argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA *@client.example", // 9: 4 GiB
		"ivan $2b$31$abcdefghijklmnopqrstuuJmC1qG0nD5cXGqIlJcvkzN3p3w9H7Sy *@client.example",        // 10: bcrypt cost
		"jill " + argon + " client.example",                                                         // 11: neither pattern nor option
	}, "\n")
	_, err := ParseUsers(strings.NewReader(file), "users.txt", UsersOptions{})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"users.txt:2: login \"alice\" listed twice", "users.txt:3:", "users.txt:4: login \"carol\": no may_send_as",
		"users.txt:5: login \"dave\"", "users.txt:6:", `pattern "*"`, "users.txt:7:", "users.txt:8:", "unknown option",
		"users.txt:9:", "out of range", "users.txt:10:", "users.txt:11:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "users.txt:1:") {
		t.Errorf("good line reported: %v", err)
	}
}

func TestAuthenticateBoundedConcurrency(t *testing.T) {
	argon, _ := HashPassword("pw")
	u, err := ParseUsers(strings.NewReader("a "+argon+" *@client.example\n"), "t", UsersOptions{MaxConcurrent: 1, Wait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	u.sem <- struct{}{} // occupy the only slot
	_, err = u.Authenticate("a", "pw")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 454 {
		t.Fatalf("with no free slot: %v", err)
	}
	<-u.sem
	// Many concurrent callers all complete and never exceed the bound.
	u.wait = time.Minute
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := u.Authenticate("a", "pw"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestFormatUserLine(t *testing.T) {
	argon, _ := HashPassword("pw")
	line, err := FormatUserLine("alice", argon, []string{"*@client.example", "bob@other.example"})
	if err != nil || line != "alice "+argon+" *@client.example bob@other.example" {
		t.Fatalf("%q %v", line, err)
	}
	u, err := ParseUsers(strings.NewReader(line), "t", UsersOptions{})
	if err != nil || u.Len() != 1 {
		t.Fatalf("written line does not load: %v", err)
	}
	for _, bad := range []struct {
		login, hash string
		pats        []string
	}{
		{"", argon, []string{"*@client.example"}},
		{"a b", argon, []string{"*@client.example"}},
		{"#a", argon, []string{"*@client.example"}},
		{"a", "plain", []string{"*@client.example"}},
		{"a", argon, nil},
		{"a", argon, []string{"*"}},
		{"a", argon, []string{`"x y"@client.example`}},
		{"a", argon, []string{"rate=5"}},
	} {
		if _, err := FormatUserLine(bad.login, bad.hash, bad.pats); err == nil {
			t.Errorf("FormatUserLine(%q, %q, %q) accepted", bad.login, bad.hash, bad.pats)
		}
	}
}
