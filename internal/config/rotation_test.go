package config

import (
	"testing"
	"time"
)

func TestKeyRotationKeys(t *testing.T) {
	c, err, _ := loadWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k := c.KeyRotation; k.CheckInterval != 5*time.Minute || k.KeepOldRecord != 7*24*time.Hour || k.AuthoritativePort != 53 {
		t.Errorf("key_rotation defaults %+v, want 5m, 168h, 53", k)
	}
	c, err, _ = loadWith(t, nil, "dns:\n", "key_rotation:\n  check_interval: 2s\n  keep_old_record: 1h\n  authoritative_port: 5353\ndns:\n")
	if err != nil {
		t.Fatal(err)
	}
	if k := c.KeyRotation; k.CheckInterval != 2*time.Second || k.KeepOldRecord != time.Hour || k.AuthoritativePort != 5353 {
		t.Errorf("key_rotation %+v, want 2s, 1h, 5353", k)
	}
	_, err, _ = loadWith(t, nil, "dns:\n", "key_rotation:\n  check_interval: 10ms\n  keep_old_record: -1h\n  authoritative_port: 0\ndns:\n")
	onlyProblems(t, err,
		"key_rotation.check_interval: 10ms: want a duration from 1s",
		"key_rotation.keep_old_record: -1h0m0s: want a duration from 1s",
		"key_rotation.authoritative_port: 0: want a port")
}
