// Package config is sealgate's configuration schema and its validation: one Config struct
// loaded from a YAML file with SEALGATE_* environment overrides (through viper), and one
// Open that checks what the configuration says and the files it names, reporting every
// problem at once with its key path ("listeners[1].tls_key: ...").
//
// Open checks the TLS certificates and keys (and that they match), the client
// CA, the users file, the pseudonym and SRS secrets (mode 0600 or stricter, the rule of
// internal/secretfile), the DNS zone file, the relay routes (routes.go: smart hosts, their
// TLS and AUTH credentials from the file, the environment or a 0600 file, source addresses
// this host has; none means MX delivery), the names and selectors of the domains and arc
// sections and that their key files exist (domains.go). Open returns what serve needs from
// those files, through the same code, in config's own types (Resources, Routes).
//
// It imports no top-level package (internal/ does not), so it does not build sealgate's
// parts: cmd/sealgate loads the DKIM and ARC keys (parseable, RSA of at least the configured
// minimum, RFC 8301), builds the key ring, checks that every may_send_as pattern and every
// forwarder's sign_as has keys to sign with, and makes relay's routes. Its problems are
// reported the same way (Config.Problems), so that "sealgate config check" passing still
// means serve starts and can sign for every identity.
//
// The package also owns the users file's format (users.go): its lines and the password-hash
// syntax it accepts. Building identities and checking passwords are
// the submission side's job (package submit); so is everything that happens per message.
//
// It deliberately does not: reload a running configuration, watch files, merge several
// files, let lists be set from the environment, or know anything about how a message is
// processed. The keys are described in examples/sealgate.yaml.
package config
