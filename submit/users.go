package submit

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"sealgate/internal/config"
)

// Argon2id parameters of HashPassword: the OWASP minimum for argon2id (19 MiB,
// 2 passes, 1 lane), about 30 ms on one core.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16
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

// Users checks the passwords of the logins of a users file, whose format (its lines, the
// hash syntax and the file-mode rule) package config defines; this side verifies argon2id
// and bcrypt hashes and makes each login's Identity. The file is read once; to reload, load
// a new *Users and swap it in. A Users is immutable and safe for concurrent use.
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

// LoadUsers reads and checks a users file (config.ReadUsersFile), reporting the file's mode
// and every bad line.
func LoadUsers(path string, opts UsersOptions) (*Users, error) {
	entries, err := config.ReadUsersFile(path)
	if err != nil {
		return nil, err
	}
	return NewUsers(entries, opts)
}

// ParseUsers reads a users file from r (config.ParseUsersFile); source names it in errors.
func ParseUsers(r io.Reader, source string, opts UsersOptions) (*Users, error) {
	entries, err := config.ParseUsersFile(r, source)
	if err != nil {
		return nil, err
	}
	return NewUsers(entries, opts)
}

// NewUsers builds the logins of a users file's entries.
func NewUsers(entries []config.UserEntry, opts UsersOptions) (*Users, error) {
	u := &Users{byLogin: make(map[string]*userEntry, len(entries))}
	for _, e := range entries {
		key := config.FoldLogin(e.Login)
		if _, dup := u.byLogin[key]; dup {
			return nil, fmt.Errorf("users: login %q listed twice", e.Login)
		}
		id := NewIdentity(e.Login, KindLogin, e.MaySendAs)
		id.AllowNullSender = e.AllowNullSender
		id.Seal = e.Seal
		id.AllowUnsigned = e.AllowUnsigned
		id.RatePerMinute = e.RatePerMinute
		id.MaxRecipients = e.MaxRecipients
		var err error
		if id.Forwarder, err = NewForwarder(e.Forwarder); err != nil {
			return nil, fmt.Errorf("users: login %q: %w", e.Login, err)
		}
		u.byLogin[key] = &userEntry{hash: e.Hash, identity: id}
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

	e := u.byLogin[config.FoldLogin(login)]
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

// verifyPassword compares pw with a users-file hash (config.ParsePasswordHash), in constant
// time with respect to the password.
func verifyPassword(hash, pw string) bool {
	h, err := config.ParsePasswordHash(hash)
	if err != nil {
		return false
	}
	if h.IsBcrypt() {
		// CompareHashAndPassword compares in constant time.
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
	}
	a := h.Argon2id
	key := argon2.IDKey([]byte(pw), a.Salt, a.Time, a.MemoryKiB, a.Threads, uint32(len(a.Key)))
	return subtle.ConstantTimeCompare(key, a.Key) == 1
}
