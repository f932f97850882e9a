package config

import (
	"net"
	"net/netip"
)

// AdminConfig is the admin section: the HTTP listener of /metrics, /healthz and /readyz.
// Off unless listen is set; it belongs on a loopback address or a management network,
// since it has no authentication.
type AdminConfig struct {
	Listen string `mapstructure:"listen"` // host:port, e.g. 127.0.0.1:2580
}

// LogConfig is the log section.
type LogConfig struct {
	Format string `mapstructure:"format"` // text | json
	Level  string `mapstructure:"level"`  // debug | info | warn | error
}

// LogFormats and LogLevels are the values log.format and log.level accept.
var (
	LogFormats = []string{"text", "json"}
	LogLevels  = []string{"debug", "info", "warn", "error"}
)

func (v *validation) operations() {
	c, p := v.c, &v.p
	if a := c.Admin.Listen; a != "" {
		host, port, err := net.SplitHostPort(a)
		switch {
		case err != nil:
			p.add("admin.listen", "%q is not HOST:PORT: %v", a, err)
		case port == "":
			p.add("admin.listen", "%q has no port", a)
		default:
			// Any address is allowed (a management network); serve warns when it is not a
			// loopback address, since the endpoints have no authentication.
			if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
				p.add("admin.listen", "%q: the host must be an IP address or localhost", a)
			}
		}
	}
	if !oneOf(c.Log.Format, LogFormats) {
		p.add("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if !oneOf(c.Log.Level, LogLevels) {
		p.add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
}

func oneOf(s string, allowed []string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}
