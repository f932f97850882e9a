// Package config is sealgate's whole configuration: one Config struct loaded from a YAML
// file with SEALGATE_* environment overrides (through viper), and one Open that checks
// everything `sealgate serve` uses by loading it for real, reporting every problem at once
// with its key path ("listeners[1].tls_key: ..."). LoadAndOpen loads the file and opens it
// once, so serve reads each key file and loads each key (into libcrypto where built with
// it) once at start and once per reload.
//
// "sealgate config check" passing means serve starts and can sign for every identity:
// Open reads and parses the DKIM and ARC keys (mode 0600 or stricter, RSA of at least
// the configured minimum bits, RFC 8301), the TLS certificates and keys (and that they
// match), the client CA, the users file, the pseudonym secret and the DNS zone file, checks the
// relay routes (routes.go: smart hosts, their TLS and AUTH credentials from the file, the
// environment or a 0600 file, source addresses this host has; none means MX delivery),
// and checks that every may_send_as pattern of every identity (client
// networks, client certificates, users) has DKIM keys to sign with, or is explicitly allowed
// to relay unsigned, and returns what serve needs from those files (Resources).
//
// The package also owns the users file's format (users.go): its lines, the password-hash
// syntax it accepts and the file-mode rule. Building identities and checking passwords are
// the submission side's job (package submit); so is everything that happens per message.
//
// It deliberately does not: reload a running configuration, watch files, merge several
// files, let lists be set from the environment, or know anything about how a message is
// processed. The keys are described in examples/sealgate.yaml.
package config
