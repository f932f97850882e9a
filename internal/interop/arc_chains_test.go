package interop

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sealgate/internal/resolver/resolvertest"
)

// TestARCChainCases runs dkimpy's arc_verify over the file-driven ARC cases of package arc
// (arc/testdata/chains: chains with an AMS without c=, an empty h=, an empty name in h=, an
// ARC-Seal with an empty tag-spec) and checks that it reaches the verdict each case's .result
// file records, which is sealgate's (package arc's TestChainCases checks sealgate against the
// same files), and that sealgate's arc.Validate agrees.
func TestARCChainCases(t *testing.T) {
	requireTools(t)
	dir := "../../arc/testdata/chains"
	zone, err := os.ReadFile(filepath.Join(dir, "chains.zone"))
	must(t, err)
	r := resolvertest.NewZone(t, string(zone))
	const keyName = "arc._domainkey.sealer.example"
	txts, err := r.LookupTXT(context.Background(), keyName)
	if err != nil || len(txts) != 1 {
		t.Fatalf("chains.zone: %s: %v %v", keyName, txts, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	must(t, err)
	slices.Sort(files)
	if len(files) < 6 {
		t.Fatalf("%d chain files, want at least 6", len(files))
	}
	var abs []string
	for _, f := range files {
		a, err := filepath.Abs(f)
		must(t, err)
		abs = append(abs, a)
	}
	tmp := t.TempDir()
	dnsJSON := writeJSON(t, filepath.Join(tmp, "dns.json"), map[string]string{keyName: txts[0]})
	var py map[string]pyVerdict
	run(t, &py, python, "testdata/verify.py", writeJSON(t, filepath.Join(tmp, "job.json"), map[string]any{"dns": dnsJSON, "messages": abs}))
	for _, f := range abs {
		name := strings.TrimSuffix(filepath.Base(f), ".eml")
		want, err := os.ReadFile(strings.TrimSuffix(f, ".eml") + ".result")
		must(t, err)
		status, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(want)), "arc="), " ")
		v := verifyOurs(context.Background(), r, f)
		if v.err != nil {
			t.Errorf("%s: sealgate: %v", name, v.err)
			continue
		}
		got := py[f].ARC
		t.Logf("%s: dkimpy %s (%s), sealgate %s (%s)", name, got.CV, got.Reason, v.arc.Status, v.arc.Reason)
		if got.CV != status {
			t.Errorf("%s: dkimpy arc_verify says %s (%s), the case says %s", name, got.CV, got.Reason, status)
		}
		if string(v.arc.Status) != status {
			t.Errorf("%s: sealgate says %s (%s), the case says %s", name, v.arc.Status, v.arc.Reason, status)
		}
	}
}
