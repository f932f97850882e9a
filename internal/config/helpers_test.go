package config

import (
	"path/filepath"
	"testing"

	"sealgate/internal/config/configtest"
)

// The configuration fixtures of configtest, under the names these tests use.
var (
	writeFiles    = configtest.WriteFiles
	pemKey        = configtest.PEMKey
	edKey         = configtest.EdKey
	rsaKey        = configtest.RSAKey
	certPair      = configtest.CertPair
	testHash      = configtest.Hash
	goodConfigDir = configtest.GoodDir
	wantProblems  = configtest.WantProblems
	onlyProblems  = configtest.OnlyProblems
)

const goodConfig = configtest.Good

// loadWith writes goodConfig with the replacements (old, new pairs) applied, and the extra
// files, into a good configuration directory, and loads it.
func loadWith(t *testing.T, files map[string]string, replace ...string) (*Config, error, string) {
	t.Helper()
	dir := configtest.Dir(t, files, replace...)
	c, err := Load(filepath.Join(dir, "sealgate.yaml"))
	return c, err, dir
}
