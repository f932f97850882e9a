package submit

import (
	"bufio"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// The users file has one user per line; blank lines and lines starting with '#'
// are ignored. Fields are separated by white space:
//
//	LOGIN HASH MAY_SEND_AS... [OPTION=VALUE...]
//
//	alice@client.example $argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$... *@client.example
//	relay-bot $2b$12$... *@*.client.example bounces@client.example null_sender=yes rate=600
//
// LOGIN is matched ASCII case-insensitively and may not contain white space.
// HASH is an argon2id PHC string (written by HashPassword and `sealgate users
// add`) or a bcrypt hash ($2a$, $2b$, $2y$) imported from elsewhere. Every field
// containing '@' is a may_send_as pattern (see ParsePattern); the others are
// options: null_sender=yes|no, seal=yes|no, unsigned=yes|no, rate=N (messages per
// minute, 0 = no cap), max_recipients=N. A line format (not YAML) so that a new
// user is one appended line and a file can be edited, grepped and diffed safely.
//
// The file is read once; to reload, load a new *Users and swap it in. A Users is
// immutable and safe for concurrent use.

// Argon2id parameters of HashPassword: the OWASP minimum for argon2id (19 MiB,
// 2 passes, 1 lane), about 30 ms on one core.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16
)

// Bounds on hashes accepted from a users file, so that a bad line cannot make each
// AUTH cost gigabytes or minutes.
const (
	maxArgonMemoryKiB = 256 * 1024
	maxArgonTime      = 16
	maxArgonThreads   = 16
	maxBcryptCost     = 15
)

// UsersOptions tune verification.
type UsersOptions struct {
	// MaxConcurrent bounds password verifications running at once (each argon2id
	// verification holds its memory cost, 19 MiB by default). Default: the
	// number of CPUs, at least 2.
	MaxConcurrent int
	// Wait is how long an AUTH waits for a verification slot before it is
	// answered 454 4.7.0. Default 5s.
	Wait time.Duration
}

// Users is a loaded users file.
type Users struct {
	byLogin map[string]*userEntry // key: ASCII-lower-cased login
	dummy   string                // hash checked for unknown logins
	sem     chan struct{}
	wait    time.Duration
}

type userEntry struct {
	hash     string
	identity *Identity
}

// errAuthBusy answers an AUTH that found no free verification slot.
var errAuthBusy = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
	Message: "too many authentications in progress; try again later"}

// LoadUsers reads and checks a users file, reporting every bad line.
func LoadUsers(path string, opts UsersOptions) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	defer f.Close()
	return ParseUsers(f, path, opts)
}

// ParseUsers reads a users file from r; source names it in errors.
func ParseUsers(r io.Reader, source string, opts UsersOptions) (*Users, error) {
	u := &Users{byLogin: make(map[string]*userEntry)}
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
		key := foldLogin(e.identity.Name)
		if _, dup := u.byLogin[key]; dup {
			errs = append(errs, fmt.Errorf("users: %s:%d: login %q listed twice", source, n, e.identity.Name))
			continue
		}
		u.byLogin[key] = e
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("users: %s: %w", source, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	dummyPW := make([]byte, 32)
	rand.Read(dummyPW)
	var err error
	if u.dummy, err = HashPassword(base64.RawStdEncoding.EncodeToString(dummyPW)); err != nil {
		return nil, err
	}
	conc := opts.MaxConcurrent
	if conc <= 0 {
		conc = max(2, runtime.NumCPU())
	}
	u.sem = make(chan struct{}, conc)
	u.wait = opts.Wait
	if u.wait <= 0 {
		u.wait = 5 * time.Second
	}
	return u, nil
}

func foldLogin(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerASCIIByte(c)
	}
	return string(b)
}

func lowerASCIIByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
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

func parseUserLine(line string) (*userEntry, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return nil, errors.New("want LOGIN HASH MAY_SEND_AS...")
	}
	if err := ValidateLogin(f[0]); err != nil {
		return nil, err
	}
	if err := checkHash(f[1]); err != nil {
		return nil, fmt.Errorf("login %q: %w", f[0], err)
	}
	id := NewIdentity(f[0], KindLogin, nil)
	var errs []error
	for _, tok := range f[2:] {
		if strings.Contains(tok, "@") || tok == "*" {
			p, err := ParsePattern(tok)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			id.MaySendAs = append(id.MaySendAs, p)
			continue
		}
		if err := setUserOption(id, tok); err != nil {
			errs = append(errs, err)
		}
	}
	if len(id.MaySendAs) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no may_send_as pattern"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("login %q: %w", f[0], errors.Join(errs...))
	}
	return &userEntry{hash: f[1], identity: id}, nil
}

func setUserOption(id *Identity, tok string) error {
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
		return boolean(&id.AllowNullSender)
	case "seal":
		return boolean(&id.Seal)
	case "unsigned":
		return boolean(&id.AllowUnsigned)
	case "rate":
		return number(&id.RatePerMinute)
	case "max_recipients":
		return number(&id.MaxRecipients)
	}
	return fmt.Errorf("unknown option %q (known: null_sender, seal, unsigned, rate, max_recipients)", k)
}

// Len returns the number of users.
func (u *Users) Len() int { return len(u.byLogin) }

// Authenticate checks a login and password. It returns the user's Identity, or
// smtp.ErrAuthFailed (535 5.7.8) for an unknown login or a wrong password, or
// 454 4.7.0 when too many verifications are already running. An unknown login
// costs one argon2id verification with the default parameters, like a known
// one, so timing does not reveal which logins exist.
func (u *Users) Authenticate(login, password string) (*Identity, error) {
	t := time.NewTimer(u.wait)
	select {
	case u.sem <- struct{}{}:
		t.Stop()
	case <-t.C:
		return nil, errAuthBusy
	}
	defer func() { <-u.sem }()

	e := u.byLogin[foldLogin(login)]
	if e == nil {
		verifyPassword(u.dummy, password)
		return nil, smtp.ErrAuthFailed
	}
	if !verifyPassword(e.hash, password) {
		return nil, smtp.ErrAuthFailed
	}
	return e.identity, nil
}

// HashPassword returns an argon2id PHC string for pw (RFC 9106; format
// $argon2id$v=19$m=KiB,t=passes,p=lanes$salt$hash, unpadded base64) with a
// random 16-byte salt.
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("users: empty password")
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("users: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

type argonHash struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

func parseArgon2id(s string) (*argonHash, error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return nil, errors.New("not an argon2id PHC string")
	}
	if parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return nil, fmt.Errorf("argon2id version %q, want v=%d", parts[2], argon2.Version)
	}
	var h argonHash
	var m, t, p uint64
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil ||
		fmt.Sprintf("m=%d,t=%d,p=%d", m, t, p) != parts[3] {
		return nil, fmt.Errorf("argon2id parameters %q, want m=N,t=N,p=N", parts[3])
	}
	if m < 8*p || m > maxArgonMemoryKiB || t < 1 || t > maxArgonTime || p < 1 || p > maxArgonThreads {
		return nil, fmt.Errorf("argon2id parameters %q out of range (m<=%d, t<=%d, p<=%d)", parts[3], maxArgonMemoryKiB, maxArgonTime, maxArgonThreads)
	}
	h.memory, h.time, h.threads = uint32(m), uint32(t), uint8(p)
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return nil, errors.New("argon2id salt is not base64 of at least 8 bytes")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return nil, errors.New("argon2id hash is not base64 of 16 to 64 bytes")
	}
	return &h, nil
}

func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// checkHash validates a hash from a users file.
func checkHash(s string) error {
	if isBcrypt(s) {
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil {
			return fmt.Errorf("bad bcrypt hash: %w", err)
		}
		if cost > maxBcryptCost {
			return fmt.Errorf("bcrypt cost %d above %d", cost, maxBcryptCost)
		}
		return nil
	}
	_, err := parseArgon2id(s)
	return err
}

// verifyPassword compares pw with a hash checked by checkHash, in constant time
// with respect to the password.
func verifyPassword(hash, pw string) bool {
	if isBcrypt(hash) {
		// CompareHashAndPassword compares in constant time.
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
	}
	h, err := parseArgon2id(hash)
	if err != nil {
		return false
	}
	key := argon2.IDKey([]byte(pw), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}

// CheckUsersFilePatterns checks may_send_as patterns for a users-file line:
// valid (ParsePattern), and written with '@' and without white space so that the
// line format can hold them.
func CheckUsersFilePatterns(patterns []string) error {
	if len(patterns) == 0 {
		return errors.New("no may_send_as pattern")
	}
	if _, err := ParsePatterns(patterns); err != nil {
		return err
	}
	for _, p := range patterns {
		if strings.IndexFunc(p, unicode.IsSpace) >= 0 || !strings.Contains(p, "@") {
			return fmt.Errorf("may_send_as pattern %q: a users file cannot hold patterns with white space", p)
		}
	}
	return nil
}

// FormatUserLine returns a users-file line for login with hash and patterns,
// checking all three, for `sealgate users add`.
func FormatUserLine(login, hash string, patterns []string) (string, error) {
	if err := ValidateLogin(login); err != nil {
		return "", err
	}
	if err := checkHash(hash); err != nil {
		return "", err
	}
	if err := CheckUsersFilePatterns(patterns); err != nil {
		return "", err
	}
	return login + " " + hash + " " + strings.Join(patterns, " "), nil
}
