// Package srs rewrites envelope senders by the Sender Rewriting Scheme, so that a forwarder
// can pass mail on under its own domain (SPF, RFC 7208, then checks the forwarder's domain)
// while bounces still find their way back to the original sender.
//
// The address format is Mail::SRS's "Guarded" scheme (the one postsrsd and most MTAs use),
// byte for byte, so that addresses made here are reversed by Mail::SRS and the other way:
//
//	SRS0=HHHH=TT=orig.example=alice@fwd.example
//	SRS1=HHHH=fwd.example==HHHH=TT=orig.example=alice@second.example
//
// HHHH is the first HashLength characters of the base64 HMAC-SHA1, keyed with the secret,
// over the lower-cased fields that follow it (timestamp, domain, local part for SRS0; the
// first forwarder's domain and the rest for SRS1). TT is the day number modulo 1024 in two
// base32 characters; a stamp more than MaxAge days old is refused. Several secrets may be
// given: the first signs, every one verifies, so a secret can be rotated without bouncing
// mail already on its way.
//
// It does not store anything (no database scheme), does not decide which mail to rewrite
// (that is the forwarder's configuration), and does not check the 64-octet limit of local
// parts (RFC 5321 §4.5.3.1.1), which SRS addresses of long senders exceed as they do
// everywhere.
package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The defaults of Mail::SRS.
const (
	DefaultHashLength = 4
	DefaultMaxAge     = 21 // days
)

const (
	base32    = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	precision = 24 * 60 * 60 // one day, in seconds
	tickSlots = 32 * 32      // two base32 characters
)

// Errors of Reverse. They are wrapped with the address.
var (
	// ErrNotSRS: the local part does not start with SRS0 or SRS1 and a separator, or has
	// too few fields.
	ErrNotSRS = errors.New("not an SRS address")
	// ErrHash: the hash does not verify with any secret: a forged or damaged address.
	ErrHash = errors.New("SRS hash does not verify")
	// ErrTimestamp: the timestamp is malformed or older than MaxAge days.
	ErrTimestamp = errors.New("SRS timestamp is malformed or expired")
)

// SRS holds the secrets and limits. The zero value has no secret and refuses to work.
type SRS struct {
	// Secrets are the HMAC keys: the first signs, all verify.
	Secrets [][]byte
	// HashLength is how many base64 characters of the HMAC are kept; 0 means
	// DefaultHashLength. Shorter hashes are refused by Reverse.
	HashLength int
	// MaxAge is how many days a stamp is valid; 0 means DefaultMaxAge.
	MaxAge int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (s *SRS) hashLength() int {
	if s.HashLength > 0 {
		return s.HashLength
	}
	return DefaultHashLength
}

func (s *SRS) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Forward returns sender rewritten for a forwarder at domain alias: an SRS0 address for a
// plain sender, SRS1 for a sender that is another forwarder's SRS0 or SRS1 address. A
// sender already in alias's domain is returned as it is, as Mail::SRS does.
func (s *SRS) Forward(sender, alias string) (string, error) {
	if len(s.Secrets) == 0 {
		return "", errors.New("srs: no secret")
	}
	at := strings.LastIndexByte(sender, '@')
	if at <= 0 || at == len(sender)-1 {
		return "", fmt.Errorf("srs: sender %q is not local@domain", sender)
	}
	user, host := sender[:at], sender[at+1:]
	if strings.ContainsAny(user, "@\"") || strings.ContainsAny(user+host, " \t\r\n") {
		return "", fmt.Errorf("srs: sender %q: a local part with '@', quotes or white space cannot be rewritten", sender)
	}
	if strings.EqualFold(host, alias) {
		return sender, nil
	}
	return s.compile(host, user) + "@" + alias, nil
}

// compile is Mail::SRS::Guarded::compile with '=' as the separator.
func (s *SRS) compile(host, user string) string {
	if _, rest, ok := cutTag(user, "SRS1"); ok {
		// Another forwarder's SRS1: keep its first forwarder and original, re-hash.
		f := strings.SplitN(rest, "=", 3)
		if len(f) == 3 {
			return "SRS1=" + strings.Join([]string{s.hash(f[1], f[2]), f[1], f[2]}, "=")
		}
	}
	if sep, rest, ok := cutTag(user, "SRS0"); ok {
		// Another forwarder's SRS0: point back to it; its own hash stays opaque.
		rest = sep + rest
		return "SRS1=" + strings.Join([]string{s.hash(host, rest), host, rest}, "=")
	}
	ts := s.timestamp(s.now())
	return "SRS0=" + strings.Join([]string{s.hash(ts, host, user), ts, host, user}, "=")
}

// cutTag reports whether user starts with tag (any case) and a separator (-, + or =),
// returning the separator and the rest.
func cutTag(user, tag string) (sep, rest string, ok bool) {
	if len(user) <= len(tag) || !strings.EqualFold(user[:len(tag)], tag) {
		return "", "", false
	}
	switch c := user[len(tag)]; c {
	case '=', '-', '+':
		return string(c), user[len(tag)+1:], true
	}
	return "", "", false
}

// Reverse maps an SRS address back: an SRS0 address to the original sender, after checking
// its hash and timestamp; an SRS1 address to the SRS0 address of the first forwarder, after
// checking its hash. Errors wrap ErrNotSRS, ErrHash or ErrTimestamp.
func (s *SRS) Reverse(address string) (string, error) {
	if len(s.Secrets) == 0 {
		return "", errors.New("srs: no secret")
	}
	at := strings.LastIndexByte(address, '@')
	if at <= 0 {
		return "", fmt.Errorf("srs: %q: %w", address, ErrNotSRS)
	}
	user := address[:at]
	if _, rest, ok := cutTag(user, "SRS1"); ok {
		f := strings.SplitN(rest, "=", 3)
		if len(f) != 3 || f[1] == "" || f[2] == "" {
			return "", fmt.Errorf("srs: %q: %w", address, ErrNotSRS)
		}
		if !s.verify(f[0], f[1], f[2]) {
			return "", fmt.Errorf("srs: %q: %w", address, ErrHash)
		}
		return "SRS0" + f[2] + "@" + f[1], nil
	}
	_, rest, ok := cutTag(user, "SRS0")
	if !ok {
		return "", fmt.Errorf("srs: %q: %w", address, ErrNotSRS)
	}
	f := strings.SplitN(rest, "=", 4)
	if len(f) != 4 || f[2] == "" || f[3] == "" {
		return "", fmt.Errorf("srs: %q: %w", address, ErrNotSRS)
	}
	if !s.verify(f[0], f[1], f[2], f[3]) {
		return "", fmt.Errorf("srs: %q: %w", address, ErrHash)
	}
	if !s.timestampValid(f[1]) {
		return "", fmt.Errorf("srs: %q: %w", address, ErrTimestamp)
	}
	return f[3] + "@" + f[2], nil
}

// mac is the full base64 HMAC-SHA1 of the lower-cased fields with key.
func mac(key []byte, fields ...string) string {
	m := hmac.New(sha1.New, key)
	for _, f := range fields {
		m.Write([]byte(strings.ToLower(f)))
	}
	return base64.RawStdEncoding.EncodeToString(m.Sum(nil))
}

func (s *SRS) hash(fields ...string) string {
	return mac(s.Secrets[0], fields...)[:s.hashLength()]
}

// verify checks hash against every secret: exactly first, then ignoring case, since some
// MTAs lower-case local parts (Mail::SRS does the same, with a warning).
func (s *SRS) verify(hash string, fields ...string) bool {
	if len(hash) < s.hashLength() || len(hash) > 27 {
		return false
	}
	var valid []string
	for _, k := range s.Secrets {
		v := mac(k, fields...)[:len(hash)]
		if hmac.Equal([]byte(v), []byte(hash)) {
			return true
		}
		valid = append(valid, v)
	}
	for _, v := range valid {
		if hmac.Equal([]byte(strings.ToLower(v)), []byte(strings.ToLower(hash))) {
			return true
		}
	}
	return false
}

// timestamp is the day number modulo 1024 in two base32 characters.
func (s *SRS) timestamp(t time.Time) string {
	days := t.Unix() / precision
	return string([]byte{base32[(days>>5)&31], base32[days&31]})
}

// timestampValid is Mail::SRS's timestamp_check: the stamp's day, moved into the current
// 1024-day cycle, is at most MaxAge days ago.
func (s *SRS) timestampValid(ts string) bool {
	ts = strings.ToUpper(ts)
	if len(ts) != 2 {
		return false
	}
	var then int64
	for i := range len(ts) {
		v := strings.IndexByte(base32, ts[i])
		if v < 0 {
			return false
		}
		then = then*32 + int64(v)
	}
	now := (s.now().Unix() / precision) % tickSlots
	for now < then {
		now += tickSlots
	}
	maxAge := s.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	return now <= then+int64(maxAge)
}
