package config

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"sealgate/internal/addr"
	"sealgate/internal/secretfile"
)

// The users file has one user per line; blank lines and lines starting with '#' are
// ignored. Fields are separated by white space:
//
//	LOGIN HASH MAY_SEND_AS... [OPTION=VALUE...]
//
//	alice@client.example $argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$... *@client.example
//	relay-bot $2b$12$... *@*.client.example bounces@client.example null_sender=yes rate=600
//
// LOGIN is matched ASCII case-insensitively and may not contain white space. HASH is an
// argon2id PHC string (written by `sealgate users add`) or a bcrypt hash ($2a$, $2b$, $2y$)
// imported from elsewhere (ParsePasswordHash). Every field containing '@' is a may_send_as
// pattern (addr.ParsePattern); the others are options: null_sender=yes|no, seal=yes|no,
// unsigned=yes|no, rate=N (messages per minute, 0 = no cap), max_recipients=N, and those of
// a forwarder (ForwarderRules): role=forwarder, sign_as=DOMAIN, list_address=ADDRESS,
// list_name=NAME ('_' for a space), from_rewrite=off|auto|always, srs=yes|no,
// trusted_authserv_ids=ID[,ID...]; an option is known by its name even when its value holds
// '@'. A line
// format (not YAML) so that a new user is one appended line and a file can be edited,
// grepped and diffed safely.
//
// The file holds password hashes, so it is held to the rule of private keys: neither group
// nor other users may read or change it (internal/secretfile).

// UserEntry is one line of a users file.
type UserEntry struct {
	// Line is the line number, for messages.
	Line  int
	Login string
	// Hash is the password hash as written; ParsePasswordHash has accepted it.
	Hash      string
	MaySendAs []addr.Pattern
	// The options; Seal defaults to true, the others to false and 0.
	AllowNullSender bool
	Seal            bool
	AllowUnsigned   bool
	RatePerMinute   int
	MaxRecipients   int
	// Forwarder holds the forwarder options (role=forwarder sign_as=... and the others of
	// ForwarderRules; list_name writes a space as '_'); Open checks them.
	Forwarder ForwarderRules
}

// Bounds on hashes accepted from a users file, so that a bad line cannot make each AUTH
// cost gigabytes or minutes.
const (
	MaxArgon2idMemoryKiB = 256 * 1024
	MaxArgon2idTime      = 16
	MaxArgon2idThreads   = 16
	MaxBcryptCost        = 15
)

// PasswordHash is a parsed users-file hash: bcrypt, or argon2id with its parameters.
type PasswordHash struct {
	// Encoded is the hash as written.
	Encoded string
	// Argon2id is set for an argon2id hash, nil for bcrypt.
	Argon2id *Argon2idHash
}

// Argon2idHash is the content of an argon2id PHC string (RFC 9106).
type Argon2idHash struct {
	MemoryKiB, Time uint32
	Threads         uint8
	Salt, Key       []byte
}

// IsBcrypt reports whether the hash is a bcrypt hash.
func (h PasswordHash) IsBcrypt() bool { return h.Argon2id == nil }

// ParsePasswordHash checks and parses a hash from a users file: an argon2id PHC string
// ($argon2id$v=19$m=KiB,t=passes,p=lanes$salt$hash, unpadded base64) or a bcrypt hash, with
// costs inside the Max* bounds.
func ParsePasswordHash(s string) (PasswordHash, error) {
	if strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$") {
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil {
			return PasswordHash{}, fmt.Errorf("bad bcrypt hash: %w", err)
		}
		if cost > MaxBcryptCost {
			return PasswordHash{}, fmt.Errorf("bcrypt cost %d above %d", cost, MaxBcryptCost)
		}
		return PasswordHash{Encoded: s}, nil
	}
	h, err := parseArgon2id(s)
	if err != nil {
		return PasswordHash{}, err
	}
	return PasswordHash{Encoded: s, Argon2id: h}, nil
}

func parseArgon2id(s string) (*Argon2idHash, error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return nil, errors.New("not an argon2id PHC string")
	}
	if parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return nil, fmt.Errorf("argon2id version %q, want v=%d", parts[2], argon2.Version)
	}
	var h Argon2idHash
	var m, t, p uint64
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil ||
		fmt.Sprintf("m=%d,t=%d,p=%d", m, t, p) != parts[3] {
		return nil, fmt.Errorf("argon2id parameters %q, want m=N,t=N,p=N", parts[3])
	}
	if m < 8*p || m > MaxArgon2idMemoryKiB || t < 1 || t > MaxArgon2idTime || p < 1 || p > MaxArgon2idThreads {
		return nil, fmt.Errorf("argon2id parameters %q out of range (m<=%d, t<=%d, p<=%d)", parts[3], MaxArgon2idMemoryKiB, MaxArgon2idTime, MaxArgon2idThreads)
	}
	h.MemoryKiB, h.Time, h.Threads = uint32(m), uint32(t), uint8(p)
	var err error
	if h.Salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.Salt) < 8 {
		return nil, errors.New("argon2id salt is not base64 of at least 8 bytes")
	}
	if h.Key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.Key) < 16 || len(h.Key) > 64 {
		return nil, errors.New("argon2id hash is not base64 of 16 to 64 bytes")
	}
	return &h, nil
}

// ReadUsersFile reads and checks the users file at path, reporting the file's mode and
// every bad line. Errors start "users: ".
func ReadUsersFile(path string) ([]UserEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	if err := secretfile.CheckMode(path, fi, "the password hashes"); err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	return ParseUsersFile(f, path)
}

// ParseUsersFile reads a users file from r; source names it in errors, which are one per
// bad line ("users: FILE:3: login "bob": ...") joined.
func ParseUsersFile(r io.Reader, source string) ([]UserEntry, error) {
	var entries []UserEntry
	seen := map[string]bool{}
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		e, err := parseUserLine(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("users: %s:%d: %w", source, n, err))
			continue
		}
		key := FoldLogin(e.Login)
		if seen[key] {
			errs = append(errs, fmt.Errorf("users: %s:%d: login %q listed twice", source, n, e.Login))
			continue
		}
		seen[key] = true
		e.Line = n
		entries = append(entries, *e)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("users: %s: %w", source, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return entries, nil
}

// FoldLogin returns login in the form logins are compared in: ASCII letters in lower case.
func FoldLogin(login string) string {
	b := []byte(login)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ValidateLogin checks that a login can be written to a users file.
func ValidateLogin(login string) error {
	if login == "" {
		return errors.New("empty login")
	}
	if len(login) > 255 {
		return errors.New("login longer than 255 octets")
	}
	if strings.HasPrefix(login, "#") {
		return errors.New("login may not start with '#'")
	}
	for _, r := range login {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("login %q contains white space or a control character", login)
		}
	}
	return nil
}

func parseUserLine(line string) (*UserEntry, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return nil, errors.New("want LOGIN HASH MAY_SEND_AS...")
	}
	if err := ValidateLogin(f[0]); err != nil {
		return nil, err
	}
	if _, err := ParsePasswordHash(f[1]); err != nil {
		return nil, fmt.Errorf("login %q: %w", f[0], err)
	}
	e := &UserEntry{Login: f[0], Hash: f[1], Seal: true}
	var errs []error
	for _, tok := range f[2:] {
		if !isForwarderOption(tok) && (strings.Contains(tok, "@") || tok == "*") {
			p, err := addr.ParsePattern(tok)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.MaySendAs = append(e.MaySendAs, p)
			continue
		}
		if err := e.setOption(tok); err != nil {
			errs = append(errs, err)
		}
	}
	if len(e.MaySendAs) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no may_send_as pattern"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("login %q: %w", f[0], errors.Join(errs...))
	}
	return e, nil
}

func (e *UserEntry) setOption(tok string) error {
	k, v, ok := strings.Cut(tok, "=")
	if !ok {
		return fmt.Errorf("%q is neither a pattern (no '@') nor an option (no '=')", tok)
	}
	boolean := func(dst *bool) error {
		switch v {
		case "yes", "true":
			*dst = true
		case "no", "false":
			*dst = false
		default:
			return fmt.Errorf("option %s=%q: want yes or no", k, v)
		}
		return nil
	}
	number := func(dst *int) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("option %s=%q: want a number >= 0", k, v)
		}
		*dst = n
		return nil
	}
	switch k {
	case "null_sender":
		return boolean(&e.AllowNullSender)
	case "seal":
		return boolean(&e.Seal)
	case "unsigned":
		return boolean(&e.AllowUnsigned)
	case "rate":
		return number(&e.RatePerMinute)
	case "max_recipients":
		return number(&e.MaxRecipients)
	}
	if ok, err := e.Forwarder.setForwarderOption(k, v); ok {
		return err
	}
	return fmt.Errorf("unknown option %q (known: null_sender, seal, unsigned, rate, max_recipients, %s)", k, strings.Join(forwarderOptions, ", "))
}

// CheckUsersFilePatterns checks may_send_as patterns for a users-file line: valid
// (addr.ParsePattern), and written with '@' and without white space so that the line format
// can hold them.
func CheckUsersFilePatterns(patterns []string) error {
	if len(patterns) == 0 {
		return errors.New("no may_send_as pattern")
	}
	if _, err := addr.ParsePatterns(patterns); err != nil {
		return err
	}
	for _, p := range patterns {
		if strings.IndexFunc(p, unicode.IsSpace) >= 0 || !strings.Contains(p, "@") {
			return fmt.Errorf("may_send_as pattern %q: a users file cannot hold patterns with white space", p)
		}
	}
	return nil
}

// FormatUserLine returns a users-file line for login with hash and patterns, checking all
// three, for `sealgate users add`.
func FormatUserLine(login, hash string, patterns []string) (string, error) {
	if err := ValidateLogin(login); err != nil {
		return "", err
	}
	if _, err := ParsePasswordHash(hash); err != nil {
		return "", err
	}
	if err := CheckUsersFilePatterns(patterns); err != nil {
		return "", err
	}
	return login + " " + hash + " " + strings.Join(patterns, " "), nil
}
