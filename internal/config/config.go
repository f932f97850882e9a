package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"sealgate/internal/addr"
)

// Config is sealgate's whole configuration, loaded by Load from one YAML file with
// SEALGATE_* environment overrides and checked by Open. The keys are described in
// examples/sealgate.yaml.
type Config struct {
	// undecoded holds the key paths of the values Load could not decode (see Problems).
	undecoded map[string]bool

	Hostname       string                `mapstructure:"hostname"`
	AuthservID     string                `mapstructure:"authserv_id"`
	Dir            string                `mapstructure:"dir"`
	Listeners      []ListenerConfig      `mapstructure:"listeners"`
	Limits         LimitsConfig          `mapstructure:"limits"`
	UsersFile      string                `mapstructure:"users_file"`
	ClientNetworks []ClientNetworkConfig `mapstructure:"client_networks"`
	ClientCerts    []ClientCertConfig    `mapstructure:"client_certs"`
	Domains        []DomainConfig        `mapstructure:"domains"`
	ARC            ARCConfig             `mapstructure:"arc"`
	Relay          RelayConfig           `mapstructure:"relay"`
	DNS            DNSConfig             `mapstructure:"dns"`
	Admin          AdminConfig           `mapstructure:"admin"`
	Log            LogConfig             `mapstructure:"log"`
	SRS            SRSConfig             `mapstructure:"srs"`
	TLSRPT         TLSRPTConfig          `mapstructure:"tlsrpt"` // tlsrpt.go
	// KeyRotation moves DKIM key rotations on (rotation.go).
	KeyRotation KeyRotationConfig `mapstructure:"key_rotation"`
	// DMARCReports is dmarc_reports (dmarcreports.go).
	DMARCReports DMARCReportsConfig `mapstructure:"dmarc_reports"`
}

// ListenerConfig is one entry of listeners.
type ListenerConfig struct {
	Name     string   `mapstructure:"name"`
	Address  string   `mapstructure:"address"`
	Mode     string   `mapstructure:"mode"` // submission | submissions | smarthost
	Auth     []string `mapstructure:"auth"` // sasl | client-cert | network
	TLSCert  string   `mapstructure:"tls_cert"`
	TLSKey   string   `mapstructure:"tls_key"`
	ClientCA string   `mapstructure:"client_ca"`
	// TrustedProxies are the load balancers (CIDRs) whose connections must begin
	// with a PROXY protocol header; see scaleout.go.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
}

// LimitsConfig is the limits section.
type LimitsConfig struct {
	MaxMessageBytes     int64         `mapstructure:"max_message_bytes"`
	MaxRecipients       int           `mapstructure:"max_recipients"`
	MaxConnections      int           `mapstructure:"max_connections"`
	MaxConnectionsPerIP int           `mapstructure:"max_connections_per_ip"`
	CommandTimeout      time.Duration `mapstructure:"command_timeout"`
	DataTimeout         time.Duration `mapstructure:"data_timeout"`
	PreAuthTimeout      time.Duration `mapstructure:"pre_auth_timeout"`
	MaxHeaderFields     int           `mapstructure:"max_header_fields"`
	AuthFailures        int           `mapstructure:"auth_failures"`
	AuthCooldown        time.Duration `mapstructure:"auth_cooldown"`
	// InFlowDelay is the longest a MAIL command waits while delivery is behind
	// (submit.FlowControl); 0 turns the wait off.
	InFlowDelay time.Duration `mapstructure:"in_flow_delay"`
	// Shared keeps the AUTH throttle, message rates and per-address connection
	// counts in Redis for every node behind one load balancer (scaleout.go).
	Shared SharedConfig `mapstructure:"shared"`
	// DrainTimeout is how long SIGTERM goes on delivering what is due once the
	// sessions have ended (scaleout.go).
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
}

// SenderRules are the per-identity settings shared by client networks and client
// certificates (logins carry them in the users file, see UserEntry).
type SenderRules struct {
	MaySendAs       []string `mapstructure:"may_send_as"`
	AllowNullSender bool     `mapstructure:"allow_null_sender"`
	Seal            *bool    `mapstructure:"seal"` // nil: true
	RatePerMinute   int      `mapstructure:"rate_per_minute"`
	MaxRecipients   int      `mapstructure:"max_recipients"`
	AllowUnsigned   bool     `mapstructure:"allow_unsigned"`
	// RecordChecks (record_checks, default true) records in our AAR what we can verify of
	// how the client handed a message over: SPF and iprev of its address, and the dkim=
	// result of each signature it made.
	RecordChecks *bool `mapstructure:"record_checks"`
	// ForwarderRules make the identity a mailing list or forwarder (forwarder.go).
	ForwarderRules `mapstructure:",squash"`
}

// Patterns parses MaySendAs.
func (r SenderRules) Patterns() ([]addr.Pattern, error) {
	return addr.ParsePatterns(r.MaySendAs)
}

// Sealed reports whether the identity's mail is ARC-sealed (seal, default true).
func (r SenderRules) Sealed() bool { return r.Seal == nil || *r.Seal }

// RecordsChecks reports whether the identity's checks are recorded (record_checks, default
// true).
func (r SenderRules) RecordsChecks() bool { return r.RecordChecks == nil || *r.RecordChecks }

// ClientNetworkConfig is one entry of client_networks: a client organisation's servers,
// known by source address.
type ClientNetworkConfig struct {
	Name        string   `mapstructure:"name"`
	CIDRs       []string `mapstructure:"cidrs"`
	SenderRules `mapstructure:",squash"`
}

// ClientCertConfig is one entry of client_certs: a client known by its TLS client
// certificate's subject common name or SHA-256 fingerprint.
type ClientCertConfig struct {
	Name        string `mapstructure:"name"`
	Subject     string `mapstructure:"subject"`
	SHA256      string `mapstructure:"sha256"`
	SenderRules `mapstructure:",squash"`
}

// DomainConfig is one entry of domains: a domain we sign for.
type DomainConfig struct {
	Domain   string      `mapstructure:"domain"`
	Keys     []KeyConfig `mapstructure:"keys"`
	Unsigned string      `mapstructure:"unsigned"` // refuse (default) | relay
	// SignSubdomains lets these keys sign (d=Domain) for subdomains that have no entry.
	SignSubdomains bool `mapstructure:"sign_subdomains"`
	// MinRSABits lowers the smallest RSA key accepted, down to 1024; 0 means 2048.
	MinRSABits int `mapstructure:"min_rsa_bits"`
}

// KeyConfig is one DKIM key of a domain.
type KeyConfig struct {
	Selector string `mapstructure:"selector"`
	KeyFile  string `mapstructure:"key_file"`
}

// ARCConfig is the relay's ARC sealing key (RFC 8617).
type ARCConfig struct {
	Domain              string `mapstructure:"domain"`
	Selector            string `mapstructure:"selector"`
	KeyFile             string `mapstructure:"key_file"`
	MinRSABits          int    `mapstructure:"min_rsa_bits"`
	PseudonymousAuth    bool   `mapstructure:"pseudonymous_auth"`
	PseudonymSecretFile string `mapstructure:"pseudonym_secret_file"`
}

// RelayConfig says where accepted mail goes: to the recipients' MX hosts, a smart host
// (next_hop) or, in dev mode, an outbox directory; routes per identity and recipient domain;
// retries and DSNs.
type RelayConfig struct {
	// RouteConfig is the default route: next_hop (empty: MX delivery),
	// next_hop_tls, auth, helo_name, source_ip.
	RouteConfig `mapstructure:",squash"`
	// Outbox, instead of delivery, writes each message to a directory (dev mode).
	Outbox string `mapstructure:"outbox"`
	// MXPort is the port of MX hosts (25; tests use another).
	MXPort int `mapstructure:"mx_port"`
	// CAFile adds trusted roots (PEM) for servers' certificates and MTA-STS
	// policy hosts; empty means the system's roots only.
	CAFile string `mapstructure:"ca_file"`
	// MTASTS applies recipient domains' MTA-STS policies (RFC 8461) to MX delivery.
	MTASTS bool `mapstructure:"mta_sts"`
	// MaxConnections and MaxPerDestination bound the outbound sessions carrying
	// a message at once, in all and per server address.
	MaxConnections    int `mapstructure:"max_connections"`
	MaxPerDestination int `mapstructure:"max_per_destination"`
	// Workers is how many messages are delivered at once (relay.Runner.Workers).
	Workers int `mapstructure:"workers"`
	// Identities and Domains are the routes of client organisations and of
	// recipient domains (which win).
	Identities []IdentityRouteConfig `mapstructure:"identities"`
	Domains    []DomainRouteConfig   `mapstructure:"domains"`

	Retry RetryConfig `mapstructure:"retry"` // queue.go
	DSN   DSNConfig   `mapstructure:"dsn"`   // queue.go
}

// DNSConfig says where DNS answers come from (keys of existing ARC chains): the system
// resolver by default, one recursive server, or a zone file (dev mode, tests).
type DNSConfig struct {
	Server   string        `mapstructure:"server"`
	ZoneFile string        `mapstructure:"zone_file"`
	Timeout  time.Duration `mapstructure:"timeout"`
	// DNSSEC marks the server as a validating resolver (resolver.Config.DNSSEC): its AD bit
	// is believed, which DANE for MX delivery needs (RFC 7672).
	DNSSEC bool `mapstructure:"dnssec"`
}

// DefaultWorkers is relay.workers' default: relay.DefaultWorkers, the Runner's own default
// (cmd/sealgate's tests hold the two equal).
const DefaultWorkers = 32

// Defaults are applied before the file is read. Every scalar key is listed, even without a
// default, because viper consults the environment only for keys it knows.
var Defaults = map[string]any{
	"hostname":                      "",
	"authserv_id":                   "",
	"dir":                           "",
	"users_file":                    "",
	"limits.max_message_bytes":      25 << 20,
	"limits.max_recipients":         100,
	"limits.max_connections":        200,
	"limits.max_connections_per_ip": 20,
	"limits.command_timeout":        "5m",
	"limits.data_timeout":           "10m",
	"limits.pre_auth_timeout":       "30s",
	"limits.max_header_fields":      1000,
	"limits.auth_failures":          5,
	"limits.auth_cooldown":          "5m",
	"limits.in_flow_delay":          "1s",
	"limits.drain_timeout":          "15s",
	"arc.domain":                    "",
	"arc.selector":                  "",
	"arc.key_file":                  "",
	"arc.min_rsa_bits":              0,
	"arc.pseudonymous_auth":         false,
	"arc.pseudonym_secret_file":     "",
	"relay.next_hop":                "",
	"relay.outbox":                  "",
	"relay.next_hop_tls":            "",
	"relay.auth.mechanism":          "",
	"relay.auth.username":           "",
	"relay.auth.password":           "",
	"relay.auth.password_env":       "",
	"relay.auth.password_file":      "",
	"relay.helo_name":               "",
	"relay.source_ip":               "",
	"relay.mx_port":                 25,
	"relay.ca_file":                 "",
	"relay.mta_sts":                 true,
	"relay.max_connections":         100,
	"relay.max_per_destination":     10,
	"relay.workers":                 DefaultWorkers,
	"relay.retry.every":             "2h",
	"relay.retry.give_up_after":     "120h",
	"relay.dsn.domain":              "",
	"relay.dsn.from":                "",
	"relay.dsn.delay_warning":       "0s",
	"dns.server":                    "",
	"dns.zone_file":                 "",
	"dns.timeout":                   "5s",
	"dns.dnssec":                    false,
	"admin.listen":                  "",
	"log.format":                    "text",
	"log.level":                     "info",
	"srs.max_age_days":              21,
}

// EnvVar returns the environment variable that overrides a scalar key:
// "limits.max_recipients" is SEALGATE_LIMITS_MAX_RECIPIENTS.
func EnvVar(key string) string {
	return "SEALGATE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Load reads the YAML file at path, applies SEALGATE_* environment overrides (EnvVar; lists
// cannot be overridden this way), resolves relative file names against the file's
// directory, and validates the result. On error it returns every problem found (unknown
// keys, values that do not parse and Open's findings) joined, one per problem with its
// key path, or with the environment variable's name when the variable's value is the
// problem; the *Config is returned too if the file could be read.
//
// Validating opens everything the configuration names (keys loaded, into libcrypto where
// built with it); a caller that goes on to use those uses LoadAndOpen instead, so that the
// files are read and the keys loaded once.
func Load(path string) (*Config, error) {
	c, _, err := LoadAndOpen(path)
	return c, err
}

// LoadAndOpen is Load that also returns what its validation opened (Open's Resources), for
// the callers that use them: serve at start and at reload, config check, dns records,
// selftest. When there is an error the Resources are what could be opened, for cmd's
// checks of the keys (signing.go there), which add their problems to it.
func LoadAndOpen(path string) (*Config, *Resources, error) {
	v := viper.New()
	for k, d := range Defaults {
		v.SetDefault(k, d)
	}
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	v.SetEnvPrefix("SEALGATE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if err := v.ReadInConfig(); err != nil {
		return nil, nil, fmt.Errorf("config: %s: %w", path, err)
	}
	var c Config
	// UnmarshalExact reports keys the struct does not know: a misspelt key must not
	// silently fall back to a default.
	decodeErr, undecoded := decodeProblems(v.UnmarshalExact(&c, viper.DecodeHook(decodeHook)))
	c.resolvePaths(filepath.Dir(path))
	if c.AuthservID == "" {
		c.AuthservID = c.Hostname
	}
	c.undecoded = undecoded
	res, openErr := c.Open()
	return &c, res, errors.Join(decodeErr, noteEnvironment(openErr, undecoded))
}

// decodeHook converts the strings of YAML and of the environment to numbers, booleans and
// durations, with errors that say what was expected. It also refuses a bare number as a
// duration, which would otherwise be taken as nanoseconds.
func decodeHook(from, to reflect.Type, data any) (any, error) {
	s, isString := data.(string)
	if to == reflect.TypeFor[time.Duration]() {
		const use = "use a number with a unit: 30s, 5m, 1h"
		if isString {
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if n, isDays := strings.CutSuffix(strings.TrimSpace(s), "d"); err != nil && isDays {
				if _, nerr := strconv.ParseFloat(n, 64); nerr == nil {
					return nil, fmt.Errorf("%q is not a duration; there is no day unit: write days as hours (5 days: 120h)", s)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%q is not a duration; %s", s, use)
			}
			return d, nil
		}
		switch from.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
			return nil, fmt.Errorf("%v is not a duration; %s", data, use)
		}
		return data, nil
	}
	switch to.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if isString {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, to.Bits())
			if err != nil {
				return nil, fmt.Errorf("not a number: %q", s)
			}
			return n, nil
		}
		if from.Kind() == reflect.Float32 || from.Kind() == reflect.Float64 {
			return nil, fmt.Errorf("not a whole number: %v", data)
		}
	case reflect.Bool:
		if isString {
			b, err := strconv.ParseBool(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("not true or false: %q", s)
			}
			return b, nil
		}
	}
	return data, nil
}

// decodeProblems rewrites mapstructure's errors into Validate's form, one per problem with
// its key path: `limits.max_recipients: not a number: "lots"`, "listeners[0].colour: unknown
// key"; or with the environment variable when one set the value. undecoded holds the key
// paths of the values that did not decode.
func decodeProblems(err error) (_ error, undecoded map[string]bool) {
	undecoded = map[string]bool{}
	if err == nil {
		return nil, undecoded
	}
	var p problems
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		de, ok := err.(*mapstructure.DecodeError)
		if !ok {
			if u := errors.Unwrap(err); u != nil {
				walk(u)
				return
			}
			p = append(p, &problem{msg: err.Error()})
			return
		}
		inner := de.Unwrap().Error()
		if keys, ok := strings.CutPrefix(inner, "has invalid keys: "); ok {
			for _, k := range strings.Split(keys, ", ") {
				if de.Name() != "" {
					k = de.Name() + "." + k
				}
				p.add(k, "unknown key")
			}
			return
		}
		key := de.Name()
		undecoded[key] = true
		if env := EnvVar(key); !strings.Contains(key, "[") {
			if _, set := os.LookupEnv(env); set {
				p = append(p, &problem{key: env, msg: fmt.Sprintf("%s (overrides %s)", inner, key)})
				return
			}
		}
		p.add(key, "%s", inner)
	}
	walk(err)
	return p.join(), undecoded
}

// noteEnvironment drops Open's problems with keys that did not decode (their value was
// reported already; what Open saw is a zero), and adds "(set by SEALGATE_X)" to those
// with keys an environment variable overrode, so the admin does not look for the value in
// the file.
func noteEnvironment(err error, undecoded map[string]bool) error {
	if err == nil {
		return nil
	}
	var out problems
	for _, e := range leaves(err) {
		pr, ok := e.(*problem)
		switch {
		case !ok:
		case undecoded[pr.key]:
			continue
		case pr.key != "" && !strings.Contains(pr.key, "["):
			if _, set := os.LookupEnv(EnvVar(pr.key)); set {
				pr.msg += " (set by " + EnvVar(pr.key) + ")"
			}
		}
		out = append(out, e)
	}
	return out.join()
}

func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.Dir)
	abs(&c.UsersFile)
	for i := range c.Listeners {
		abs(&c.Listeners[i].TLSCert)
		abs(&c.Listeners[i].TLSKey)
		abs(&c.Listeners[i].ClientCA)
	}
	for i := range c.Domains {
		for j := range c.Domains[i].Keys {
			abs(&c.Domains[i].Keys[j].KeyFile)
		}
	}
	abs(&c.ARC.KeyFile)
	abs(&c.ARC.PseudonymSecretFile)
	abs(&c.Limits.Shared.PasswordFile)
	abs(&c.Relay.Outbox)
	abs(&c.Relay.CAFile)
	abs(&c.Relay.Auth.PasswordFile)
	for i := range c.Relay.Identities {
		abs(&c.Relay.Identities[i].Auth.PasswordFile)
	}
	for i := range c.Relay.Domains {
		abs(&c.Relay.Domains[i].Auth.PasswordFile)
	}
	abs(&c.DNS.ZoneFile)
	for i := range c.SRS.SecretFiles {
		abs(&c.SRS.SecretFiles[i])
	}
}

// problem is one configuration problem and its key path (or environment variable).
type problem struct {
	key, msg string
}

func (p *problem) Error() string {
	if p.key == "" {
		return p.msg
	}
	return p.key + ": " + p.msg
}

// Problems collects the problems that checks outside this package find in a configuration
// (cmd/sealgate loads the keys and builds the key ring), so that they are reported like
// Validate's: each with its key path, with the environment variable that set the value
// named, and none for a value that did not decode (Load reported it already).
type Problems struct {
	c *Config
	p problems
}

// Problems starts a collection of problems of c.
func (c *Config) Problems() *Problems { return &Problems{c: c} }

// Add adds a problem with the value at key path key.
func (p *Problems) Add(key, format string, a ...any) { p.p.add(key, format, a...) }

// Err returns the problems joined, one per line with its key path; nil if there is none.
func (p *Problems) Err() error { return noteEnvironment(p.p.join(), p.c.undecoded) }

// problems collects configuration problems with their key paths.
type problems []error

func (p *problems) add(key, format string, a ...any) {
	*p = append(*p, &problem{key: key, msg: fmt.Sprintf(format, a...)})
}

func (p problems) join() error { return errors.Join(p...) }
