package main

import (
	"path/filepath"
	"testing"

	"sealgate/internal/config"
	"sealgate/internal/config/configtest"
)

// The configuration fixtures of configtest (shared with internal/config's tests), for the
// checks of signing.go.
var (
	edKey        = configtest.EdKey
	rsaKey       = configtest.RSAKey
	certPair     = configtest.CertPair
	testHash     = configtest.Hash
	onlyProblems = configtest.OnlyProblems
)

// loadWith writes configtest.Good with the replacements (old, new pairs) applied, and the
// extra files, into a new directory, and loads it as every command does (loadConfig).
func loadWith(t *testing.T, files map[string]string, replace ...string) (*config.Config, error, string) {
	t.Helper()
	dir := configtest.Dir(t, files, replace...)
	c, err := loadConfig(filepath.Join(dir, "sealgate.yaml"))
	return c, err, dir
}
