package main

import (
	"errors"

	"sealgate/internal/config"
)

// loadConfig is config.Load with the checks of signing.go: every problem of the file at
// path, each with its key path. The *Config is returned too if the file could be read.
func loadConfig(path string) (*config.Config, error) {
	cfg, _, err := loadAndOpen(path)
	return cfg, err
}

// loadAndOpen is loadConfig that also returns what its checks opened, for the callers that
// use it (config check, dns records, selftest, reload): the keys are read and loaded once.
// The resources are nil when there is an error.
func loadAndOpen(path string) (*config.Config, *resources, error) {
	cfg, res, err := config.LoadAndOpen(path)
	if cfg == nil {
		return nil, nil, err
	}
	r, err := withSigning(cfg, res, err)
	return cfg, r, err
}

// resources is what serve needs from a configuration: the files config.Open loads, and
// what signs and seals (signing.go).
type resources struct {
	*config.Resources
	*signing
}

// withSigning adds to what config.Open loaded (and its problems, err) the keys and the
// key ring; the error lists every problem of both.
func withSigning(cfg *config.Config, res *config.Resources, err error) (*resources, error) {
	sg, serr := checkSigning(cfg, res)
	if err := errors.Join(err, serr); err != nil {
		return nil, err
	}
	return &resources{Resources: res, signing: sg}, nil
}
