package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsersFileFormat(t *testing.T) {
	file := "# users\nalice@client.example " + testHash("a") + " *@client.example\n\n" +
		"Bob " + testHash("b") + " bob@other.example *@*.other.example null_sender=yes rate=60 max_recipients=10 seal=no unsigned=yes\n"
	path := filepath.Join(t.TempDir(), "users")
	os.WriteFile(path, []byte(file), 0o600)
	u, err := ReadUsersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 2 || u[0].Login != "alice@client.example" || u[0].Line != 2 || !u[0].Seal || u[0].AllowNullSender {
		t.Fatalf("alice: %+v", u)
	}
	b := u[1]
	if b.Login != "Bob" || b.Line != 4 || !b.AllowNullSender || b.RatePerMinute != 60 || b.MaxRecipients != 10 || b.Seal || !b.AllowUnsigned ||
		len(b.MaySendAs) != 2 || b.MaySendAs[1].String() != "*@*.other.example" || b.Hash != testHash("b") {
		t.Fatalf("bob: %+v", b)
	}
	// The file holds password hashes: the mode rule of private keys applies.
	os.Chmod(path, 0o640)
	if _, err := ReadUsersFile(path); err == nil || err.Error() != "users: "+path+": mode 0640 lets others read the password hashes; chmod 600 it" {
		t.Errorf("mode 0640: %v", err)
	}
}

func TestUsersFileErrors(t *testing.T) {
	argon := testHash("x")
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
	_, err := ParseUsersFile(strings.NewReader(file), "users.txt")
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

func TestFormatUserLine(t *testing.T) {
	argon := testHash("pw")
	line, err := FormatUserLine("alice", argon, []string{"*@client.example", "bob@other.example"})
	if err != nil || line != "alice "+argon+" *@client.example bob@other.example" {
		t.Fatalf("%q %v", line, err)
	}
	u, err := ParseUsersFile(strings.NewReader(line), "t")
	if err != nil || len(u) != 1 || u[0].Login != "alice" || len(u[0].MaySendAs) != 2 || !u[0].Seal {
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
