package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sealgate/internal/config"
	"sealgate/submit"
)

// runCLIInput is runCLI with stdin.
func runCLIInput(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	rootCmd.SetIn(strings.NewReader(stdin))
	defer rootCmd.SetIn(nil)
	return runCLI(t, args...)
}

func TestUsersAdd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	_, errOut, code := runCLIInput(t, "a long password\n", "users", "add", "alice@corp.example", "--file", file, "--password-stdin")
	if code != 0 || !strings.Contains(errOut, "added alice@corp.example to "+file+" (may send as alice@corp.example)") {
		t.Fatalf("users add: exit %d, %q", code, errOut)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("users file: %v %v", st, err)
	}
	_, errOut, code = runCLIInput(t, "another password\n", "users", "add", "bob", "--file", file, "--password-stdin",
		"--may-send-as", "*@corp.example", "--may-send-as", "*@*.corp.example")
	if code != 0 || strings.Contains(errOut, "warning") {
		t.Fatalf("users add bob: exit %d, %q", code, errOut)
	}
	// The format: LOGIN HASH PATTERNS..., one line each, read back by config.
	data, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "alice@corp.example $argon2id$v=19$m=19456,t=2,p=1$") ||
		!strings.HasSuffix(lines[0], " alice@corp.example") || !strings.HasSuffix(lines[1], " *@corp.example *@*.corp.example") {
		t.Fatalf("users file:\n%s", data)
	}
	entries, err := config.ReadUsersFile(file)
	if err != nil || len(entries) != 2 || entries[1].Login != "bob" || len(entries[1].MaySendAs) != 2 {
		t.Fatalf("read back: %+v %v", entries, err)
	}

	_, errOut, code = runCLIInput(t, "pw\n", "users", "add", "ALICE@corp.example", "--file", file, "--password-stdin")
	if code != 2 || !strings.Contains(errOut, `login "alice@corp.example" is already there`) {
		t.Errorf("duplicate login: exit %d, %q", code, errOut)
	}
	_, errOut, code = runCLIInput(t, "pw\n", "users", "add", "carol", "--file", file, "--password-stdin", "--may-send-as", "*@co.uk")
	if code != 2 || !strings.Contains(errOut, `"co.uk" is a public suffix`) {
		t.Errorf("public suffix pattern: exit %d, %q", code, errOut)
	}

	// A file others can read is refused by serve; users add says so.
	os.Chmod(file, 0o644)
	_, errOut, code = runCLIInput(t, "a long password\n", "users", "add", "dave@corp.example", "--file", file, "--password-stdin")
	if code != 0 || !strings.Contains(errOut, "warning: "+file+": mode 0644 lets others read the password hashes; chmod 600 it") {
		t.Errorf("users add to a 0644 file: exit %d, %q", code, errOut)
	}
}

func TestUsersRemoveAndPasswd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	for _, login := range []string{"alice@corp.example", "bob@corp.example"} {
		if _, errOut, code := runCLIInput(t, "a long password\n", "users", "add", login, "--file", file, "--password-stdin"); code != 0 ||
			!strings.Contains(errOut, "a running relay picks the change up on reload") {
			t.Fatalf("users add %s: exit %d, %q", login, code, errOut)
		}
	}
	before, _ := os.ReadFile(file)
	bobBefore := strings.Split(string(before), "\n")[1]

	_, errOut, code := runCLIInput(t, "a new long password\n", "users", "passwd", "ALICE@corp.example", "--file", file, "--password-stdin")
	if code != 0 || !strings.Contains(errOut, "a running relay picks the change up on reload") {
		t.Fatalf("users passwd: exit %d, %q", code, errOut)
	}
	entries, err := config.ReadUsersFile(file)
	if err != nil || len(entries) != 2 {
		t.Fatalf("after passwd: %+v %v", entries, err)
	}
	users, err := submit.NewUsers(entries, submit.UsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.Authenticate("alice@corp.example", "a new long password"); err != nil {
		t.Errorf("new password refused: %v", err)
	}
	if _, err := users.Authenticate("alice@corp.example", "a long password"); err == nil {
		t.Error("old password still accepted")
	}
	after, _ := os.ReadFile(file)
	if l := strings.Split(string(after), "\n"); l[1] != bobBefore || !strings.HasSuffix(l[0], " alice@corp.example") {
		t.Errorf("passwd changed more than alice's hash:\n%s", after)
	}

	_, errOut, code = runCLI(t, "users", "remove", "alice@corp.example", "--file", file)
	if code != 0 || !strings.Contains(errOut, "removed alice@corp.example") {
		t.Fatalf("users remove: exit %d, %q", code, errOut)
	}
	after, _ = os.ReadFile(file)
	if string(after) != bobBefore+"\n" {
		t.Errorf("after remove:\n%s", after)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after remove", st.Mode())
	}
	_, errOut, code = runCLI(t, "users", "remove", "alice@corp.example", "--file", file)
	if code != 2 || !strings.Contains(errOut, `no login "alice@corp.example"`) {
		t.Errorf("remove of a missing login: exit %d, %q", code, errOut)
	}
	_, errOut, code = runCLIInput(t, "pw\n", "users", "passwd", "carol", "--file", file, "--password-stdin")
	if code != 2 || !strings.Contains(errOut, `no login "carol"`) {
		t.Errorf("passwd of a missing login: exit %d, %q", code, errOut)
	}
}
