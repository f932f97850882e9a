package config

import "time"

// KeyRotationConfig is the key_rotation section: how a running relay moves DKIM key
// rotations on (`sealgate keys rotate`, keys/rotation.go). Defaults: check_interval 5m,
// keep_old_record 168h (7 days), authoritative_port 53.
type KeyRotationConfig struct {
	// CheckInterval is how often a pending rotation's new record is looked up.
	CheckInterval time.Duration `mapstructure:"check_interval"`
	// KeepOldRecord is how long the old record must stay published once the new key
	// signs: long enough for queued and forwarded mail signed with the old key.
	KeepOldRecord time.Duration `mapstructure:"keep_old_record"`
	// AuthoritativePort is the port the zone's authoritative servers are asked on (53;
	// tests use another).
	AuthoritativePort int `mapstructure:"authoritative_port"`
}

// keyRotationDefaults are key_rotation's entries in Defaults.
var keyRotationDefaults = map[string]any{
	"key_rotation.check_interval":     "5m",
	"key_rotation.keep_old_record":    "168h",
	"key_rotation.authoritative_port": 53,
}

func init() {
	for k, v := range keyRotationDefaults {
		Defaults[k] = v
	}
}

// keyRotation checks the key_rotation section.
func (v *validation) keyRotation() {
	k, p := v.c.KeyRotation, &v.p
	if k.CheckInterval < time.Second || k.CheckInterval > 24*time.Hour {
		p.add("key_rotation.check_interval", "%s: want a duration from 1s to 24h, such as 5m", k.CheckInterval)
	}
	if k.KeepOldRecord < time.Second || k.KeepOldRecord > 365*24*time.Hour {
		p.add("key_rotation.keep_old_record", "%s: want a duration from 1s to 8760h (a year), such as 168h (7 days)", k.KeepOldRecord)
	}
	if k.AuthoritativePort < 1 || k.AuthoritativePort > 65535 {
		p.add("key_rotation.authoritative_port", "%d: want a port from 1 to 65535 (53)", k.AuthoritativePort)
	}
}
