package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var devPasswordPattern = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// TestDevPasswordsLettersAndDigits: ten fresh `serve --dev` directories each get passwords a
// client can type as an argument (a leading '-' made swaks read the password as an option).
func TestDevPasswordsLettersAndDigits(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		dir := filepath.Join(t.TempDir(), "dev")
		st, err := prepareDev(dir, devOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "credentials"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Fields(string(b))
		if len(lines) != 4 {
			t.Fatalf("setup %d: credentials = %q, want two LOGIN PASSWORD lines", i, b)
		}
		for _, pw := range []string{lines[1], lines[3], st.password, st.listPassword} {
			if !devPasswordPattern.MatchString(pw) {
				t.Errorf("setup %d: password %q does not match %s", i, pw, devPasswordPattern)
			}
			if len(pw) < passwordLength {
				t.Errorf("setup %d: password %q shorter than %d", i, pw, passwordLength)
			}
		}
		if lines[1] != st.password || lines[3] != st.listPassword {
			t.Errorf("setup %d: credentials file %q disagrees with the state (%q, %q)", i, b, st.password, st.listPassword)
		}
		for _, pw := range []string{st.password, st.listPassword} {
			if seen[pw] {
				t.Errorf("setup %d: password %q repeated", i, pw)
			}
			seen[pw] = true
		}
	}
}

// TestNewPasswordUsesWholeAlphabet: many draws reach every symbol, so the generator is not
// stuck on a subset of the alphabet (a shorter alphabet would lose entropy).
func TestNewPasswordUsesWholeAlphabet(t *testing.T) {
	used := map[rune]bool{}
	for i := 0; i < 400; i++ {
		pw := newPassword()
		if len(pw) != passwordLength || !devPasswordPattern.MatchString(pw) {
			t.Fatalf("newPassword() = %q", pw)
		}
		for _, r := range pw {
			used[r] = true
		}
	}
	// 10000 draws from 62 symbols: a given symbol is missing with probability (61/62)^10000 < 1e-70.
	if len(used) != len(passwordAlphabet) {
		t.Errorf("400 passwords used %d of %d symbols", len(used), len(passwordAlphabet))
	}
}

// TestDevZoneKeepsAddedRecords: serve --dev writes its zone again at each start, keeping
// what was added below the marker (a rotated key's record published by hand).
func TestDevZoneKeepsAddedRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	st, err := prepareDev(dir, devOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(st.zoneFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(first), devZoneKeep+"\n") {
		t.Fatalf("the zone does not end with the marker:\n%s", first)
	}
	added := "rot1._domainkey.example.test. IN TXT \"v=DKIM1; k=ed25519; p=AAAA\"\n"
	if err := os.WriteFile(st.zoneFile, append(first, added...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := prepareDev(dir, devOptions{}); err != nil {
		t.Fatal(err)
	}
	again, err := os.ReadFile(st.zoneFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(first)+added {
		t.Errorf("the zone after a restart:\n%s\nwant the generated part and the added record once", again)
	}
}
