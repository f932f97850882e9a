package dkimcore

import (
	"errors"
	"fmt"
)

// Error is a verification or lookup failure. Temporary errors (DNS timeouts, SERVFAIL) map to
// temperror; the others to permerror or fail, as the caller decides (RFC 6376 §6.1, RFC 8601).
type Error struct {
	Temporary bool
	// Fail is set when the signature was checked and did not match (body hash or signature),
	// as opposed to a malformed signature or key (permerror).
	Fail bool
	// Policy is set when the signature was not verified because it uses something sealgate
	// does not accept (l=, rsa-sha1, an RSA key under the configured minimum) rather than
	// because it is malformed (RFC 8601 §2.7.1 "policy").
	Policy bool
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func permErr(format string, a ...any) error {
	return &Error{Msg: fmt.Sprintf(format, a...)}
}

func policyErr(format string, a ...any) error {
	return &Error{Policy: true, Msg: fmt.Sprintf(format, a...)}
}

func failErr(format string, a ...any) error {
	return &Error{Fail: true, Msg: fmt.Sprintf(format, a...)}
}

// IsTemporary reports whether err is a temporary failure (temperror).
func IsTemporary(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Temporary
}

// IsFail reports whether err says the signature did not verify (fail), as opposed to a
// malformed signature or key (permerror) or a temporary failure.
func IsFail(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Fail
}

// IsPolicy reports whether err says the signature was not accepted by local policy (l=,
// rsa-sha1, a key under the configured minimum size), as opposed to malformed or failing.
func IsPolicy(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Policy
}
