package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckMode(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		want string // "" for accepted
	}{
		{0o600, ""},
		{0o400, ""},
		{0o640, "mode 0640 lets others read the key; chmod 600 it"},
		{0o604, "mode 0604 lets others read the key"},
		{0o620, "mode 0620 lets others change the key"},
	} {
		path := filepath.Join(dir, "k")
		os.WriteFile(path, nil, 0o600)
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckMode(path, fi, "the key")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%04o: %v", tc.mode, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%04o: %v, want %q", tc.mode, err, tc.want)
		}
	}
	fi, _ := os.Stat(dir)
	if err := CheckMode(dir, fi, "the key"); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("directory: %v", err)
	}
}
