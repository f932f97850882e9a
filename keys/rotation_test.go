package keys

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sealgate/internal/resolver"
)

func TestDefaultSelector(t *testing.T) {
	day := time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC)
	tests := []struct {
		family string
		taken  []string
		want   string
	}{
		{FamilyRSA, nil, "rsa20261207"},
		{FamilyEd25519, []string{"rsa20261207"}, "ed20261207"},
		{FamilyRSA, []string{"RSA20261207"}, "rsa20261207-2"},
		{FamilyRSA, []string{"rsa20261207", "rsa20261207-2"}, "rsa20261207-3"},
	}
	for _, tt := range tests {
		if got := DefaultSelector(tt.family, day, tt.taken); got != tt.want {
			t.Errorf("DefaultSelector(%s, %q) = %q, want %q", tt.family, tt.taken, got, tt.want)
		}
	}
}

func TestRotationStates(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Rotation{Domain: "example.com", Family: FamilyRSA, Old: "old", New: "new"}
	steps := []struct {
		do   func()
		at   time.Time
		want string
	}{
		{func() {}, t0, RotationPending},
		{func() { r.Switch(t0, 48*time.Hour, false) }, t0.Add(time.Hour), RotationRetiring},
		{func() {}, t0.Add(48 * time.Hour), RotationRemoveRecord},
		{func() { r.Removed = t0.Add(49 * time.Hour) }, t0.Add(50 * time.Hour), RotationDone},
	}
	for i, s := range steps {
		s.do()
		if got := r.State(s.at); got != s.want {
			t.Errorf("step %d: State = %s, want %s", i, got, s.want)
		}
	}
	added := Rotation{Domain: "example.com", Family: FamilyEd25519, New: "ed1"}
	added.Switch(t0, time.Hour, true)
	if got := added.State(t0); got != RotationDone {
		t.Errorf("a switched rotation without an old key: State = %s, want done", got)
	}
}

func TestApplyRotations(t *testing.T) {
	t0 := time.Now()
	configured := []ActiveKey{{"rsa1", "/etc/rsa1.key"}, {"ed1", "/etc/ed1.key"}}
	switched := Rotation{Domain: "example.com", Family: FamilyRSA, Old: "rsa1", New: "rsa2", NewKeyFile: "/var/rsa2.key"}
	switched.Switch(t0, time.Hour, false)
	tests := []struct {
		name       string
		configured []ActiveKey
		rotations  []Rotation
		want       []string
	}{
		{"no rotation", configured, nil, []string{"rsa1", "ed1"}},
		{"pending: the old key signs", configured, []Rotation{{Domain: "example.com", Family: FamilyRSA, Old: "rsa1", New: "rsa2"}}, []string{"rsa1", "ed1"}},
		{"pending and listed already: not signing", append(slices.Clone(configured), ActiveKey{"rsa2", "/etc/rsa2.key"}),
			[]Rotation{{Domain: "example.com", Family: FamilyRSA, Old: "rsa1", New: "rsa2"}}, []string{"rsa1", "ed1"}},
		{"switched: the new key signs", configured, []Rotation{switched}, []string{"ed1", "rsa2"}},
		{"switched and moved into the configuration", []ActiveKey{{"rsa2", "/etc/rsa2.key"}, {"ed1", "/etc/ed1.key"}}, []Rotation{switched}, []string{"rsa2", "ed1"}},
		{"another domain's rotation", configured, []Rotation{{Domain: "example.org", Family: FamilyRSA, Old: "rsa1", New: "x", Switched: t0}}, []string{"rsa1", "ed1"}},
	}
	for _, tt := range tests {
		rs := &Rotations{Rotations: tt.rotations}
		var got []string
		for _, k := range rs.ApplyRotations("example.com", tt.configured) {
			got = append(got, k.Selector)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: ApplyRotations = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestRotationsStartAndFile(t *testing.T) {
	dir := t.TempDir()
	path := RotationFile(dir)
	rs, err := LoadRotations(path)
	if err != nil || len(rs.Rotations) != 0 {
		t.Fatalf("LoadRotations of a missing file = %+v, %v; want empty", rs, err)
	}
	now := time.Now()
	r := Rotation{Domain: "example.com", Family: FamilyRSA, Alg: RSA2048, Old: "a", New: "b", NewKeyFile: "/k"}
	if err := rs.Start(r, now); err != nil {
		t.Fatal(err)
	}
	if err := rs.Start(Rotation{Domain: "example.com", Family: FamilyRSA, New: "c", NewKeyFile: "/k"}, now); err == nil || !strings.Contains(err.Error(), "already has a rsa rotation") {
		t.Errorf("a second rotation of the family: err %v", err)
	}
	if err := rs.Start(Rotation{Domain: "example.com", Family: FamilyEd25519, New: "b", NewKeyFile: "/k"}, now); err == nil || !strings.Contains(err.Error(), "earlier rotation") {
		t.Errorf("a reused selector: err %v", err)
	}
	if err := rs.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v; want 0600", err, fi.Mode())
	}
	back, err := LoadRotations(path)
	if err != nil || len(back.Rotations) != 1 || back.Pending("example.com", FamilyRSA) == nil {
		t.Fatalf("LoadRotations = %+v, %v; want the pending rotation", back, err)
	}

	// Key files under the state directory are stored relative to it, so that the state
	// can be copied to another node's directory; others stay as they are.
	moved := &Rotations{Rotations: []Rotation{{Domain: "example.com", Family: FamilyRSA, New: "n",
		NewKeyFile: RotationKeyFile(dir, "n", "example.com"), OldKeyFile: "/etc/sealgate/old.key"}}}
	if err := moved.Save(path); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), `"new_key_file": "keys/n.example.com.key"`) || !strings.Contains(string(raw), `"old_key_file": "/etc/sealgate/old.key"`) {
		t.Errorf("stored key files:\n%s", raw)
	}
	other := t.TempDir()
	if err := os.MkdirAll(filepath.Join(other, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(RotationFile(other), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	copied, err := LoadRotations(RotationFile(other))
	if err != nil || copied.Rotations[0].NewKeyFile != RotationKeyFile(other, "n", "example.com") {
		t.Errorf("the state copied to %s: %+v, %v", other, copied, err)
	}
	if err := rs.Save(path); err != nil {
		t.Fatal(err)
	}
	if back, err = LoadRotations(path); err != nil {
		t.Fatal(err)
	}
	back.Remove(back.Pending("example.com", FamilyRSA))
	if len(back.Rotations) != 0 {
		t.Errorf("Remove left %+v", back.Rotations)
	}
	// Removing one of several, through a pointer into the slice, keeps the others.
	several := &Rotations{Rotations: []Rotation{{Domain: "a.example", New: "x"}, {Domain: "b.example", New: "y"}, {Domain: "c.example", New: "z"}}}
	several.Remove(&several.Rotations[0])
	if len(several.Rotations) != 2 || several.Rotations[0].Domain != "b.example" || several.Rotations[1].Domain != "c.example" {
		t.Errorf("Remove of the first of three left %+v", several.Rotations)
	}
	for name, content := range map[string]string{
		"not json":      "{",
		"unknown field": `{"version":1,"rotations":[],"colour":1}`,
		"new version":   `{"version":9,"rotations":[]}`,
		"incomplete":    `{"version":1,"rotations":[{"domain":"example.com","family":"rsa"}]}`,
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadRotations(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: LoadRotations err %v, want one naming the file", name, err)
		}
	}
}

// TestRotationCheckRun walks one rotation through every state with a DNS server whose
// records change: pending while the record is missing or wrong, switched once it is
// published, remove-record after the keep time, done once the old record is gone.
func TestRotationCheckRun(t *testing.T) {
	dir := t.TempDir()
	path := RotationFile(dir)
	r, key, err := NewRotation(dir, "example.com", Ed25519, "new", "old", "/etc/old.key")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(r.NewKeyFile); err != nil || fi.Mode().Perm() != 0o600 || filepath.Dir(r.NewKeyFile) != filepath.Join(dir, "keys") {
		t.Fatalf("new key file %s: %v %v", r.NewKeyFile, err, fi)
	}
	clock := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	rs := &Rotations{}
	if err := rs.Start(r, clock); err != nil {
		t.Fatal(err)
	}
	if err := rs.Save(path); err != nil {
		t.Fatal(err)
	}
	old := testKey(t, RSA2048)
	z := startLiveZone(t, "example.com. 60 IN NS ns1.example.com.", "ns1.example.com. 60 IN A 127.0.0.1", keyTXT(t, old, "old", ""))
	res, err := resolver.New(resolver.Config{Server: z.Addr})
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(z.Addr)
	p, _ := strconv.Atoi(port)
	var logs bytes.Buffer
	c := &RotationCheck{Publish: PublishOptions{Resolver: res, NSPort: p}, Keep: 24 * time.Hour,
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return clock }}
	state := func() string {
		t.Helper()
		rs, err := LoadRotations(path)
		if err != nil {
			t.Fatal(err)
		}
		return rs.Rotations[0].State(clock)
	}
	run := func() *RotationCheckResult {
		t.Helper()
		out, err := c.Run(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	steps := []struct {
		name         string
		change       func()
		wantState    string
		wantSwitched int
		wantLog      string
	}{
		{"missing", func() {}, RotationPending, 0, "not published yet"},
		{"wrong key", func() { z.Set(t, keyTXT(t, old, "new", "")) }, RotationPending, 0, "different"},
		{"published", func() { z.Set(t, keyTXT(t, key, "new", "")) }, RotationRetiring, 1, "signing switches to the new selector"},
		{"keep time passed", func() { clock = clock.Add(25 * time.Hour) }, RotationRemoveRecord, 0, "may now be removed"},
		{"old record removed", func() { z.Delete("old._domainkey.example.com", "TXT") }, RotationDone, 0, "rotation done"},
	}
	for _, s := range steps {
		logs.Reset()
		s.change()
		out := run()
		if got := state(); got != s.wantState || len(out.Switched) != s.wantSwitched || !strings.Contains(logs.String(), s.wantLog) {
			t.Errorf("%s: state %s, %d switched, log %q; want %s, %d and a log with %q", s.name, got, len(out.Switched), logs.String(), s.wantState, s.wantSwitched, s.wantLog)
		}
	}
	logs.Reset()
	run()
	if logs.Len() != 0 {
		t.Errorf("a round without a change logged %q", logs.String())
	}
}

// A state directory given relative to the working directory (`dir: sealgate-dev` in a
// configuration read from its parent): the key file written there is stored relative to
// the state directory and loads back as the same file, not as sealgate-dev/sealgate-dev/...
func TestRotationsRelativeStateDir(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := "state"
	keyFile := RotationKeyFile(dir, "n", "example.com")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := &Rotations{Rotations: []Rotation{{Domain: "example.com", Family: FamilyRSA, New: "n", NewKeyFile: keyFile,
		OldKeyFile: "old/outside.key"}}}
	if err := rs.Save(RotationFile(dir)); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(RotationFile(dir))
	if !strings.Contains(string(raw), `"new_key_file": "keys/n.example.com.key"`) {
		t.Errorf("stored new_key_file is not relative to the state directory:\n%s", raw)
	}
	back, err := LoadRotations(RotationFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Rotations[0].NewKeyFile; got != keyFile {
		t.Errorf("loaded new key file %q, want %q", got, keyFile)
	}
	if _, err := os.Stat(back.Rotations[0].NewKeyFile); err != nil {
		t.Errorf("the loaded key file is not the written one: %v", err)
	}
	wd, _ := os.Getwd()
	if got := back.Rotations[0].OldKeyFile; got != filepath.Join(wd, "old/outside.key") {
		t.Errorf("a key file outside the state directory loads as %q, want it absolute", got)
	}
}
