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
