package resolver

import (
	"context"
	"errors"
	"net"
)

// Error is a failed lookup. Exactly one of NotFound and Temporary is set for the outcomes DNS
// defines; neither is set for a malformed name or answer, which is a permanent failure.
type Error struct {
	Name string // the name looked up, as an FQDN
	Type string // the record type, such as "TXT"
	// NotFound is set for NXDOMAIN and NODATA: the name or the record does not exist. It is
	// permanent (RFC 2308).
	NotFound bool
	// Temporary is set for SERVFAIL, REFUSED, timeouts and network errors: asking again later
	// may succeed.
	Temporary bool
	Err       error // what went wrong; never nil
}

// Error reads "lookup TXT s1._domainkey.example.com.: no such domain (NXDOMAIN)".
func (e *Error) Error() string {
	return "lookup " + e.Type + " " + e.Name + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// The underlying errors of NotFound lookups, usable with errors.Is.
var (
	ErrNXDOMAIN = errors.New("no such domain (NXDOMAIN)")
	ErrNODATA   = errors.New("no record of that type (NODATA)")
)

// IsNotFound reports whether err says the name or record does not exist (NXDOMAIN or NODATA).
// That is a permanent answer, not a failure to get one. A *net.DNSError with IsNotFound set is
// also recognised.
func IsNotFound(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.NotFound
	}
	var ne *net.DNSError
	return errors.As(err, &ne) && ne.IsNotFound
}

// IsTemporary reports whether err is a temporary failure (SERVFAIL, REFUSED, timeout, network
// error) after which asking again may succeed. A *net.DNSError with IsTemporary or IsTimeout set
// is also recognised.
func IsTemporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary
	}
	var ne *net.DNSError
	return errors.As(err, &ne) && (ne.IsTemporary || ne.IsTimeout)
}

// AsNetError converts an error from this package to a *net.DNSError with IsNotFound,
// IsTemporary and IsTimeout set from it, for libraries that inspect the standard library's type
// (SPF and DMARC checkers). The original error stays reachable with errors.As. nil stays nil;
// errors of other kinds are returned unchanged.
func AsNetError(err error) error {
	var e *Error
	if err == nil || !errors.As(err, &e) {
		return err
	}
	timeout := errors.Is(e.Err, context.DeadlineExceeded)
	var ne net.Error
	if errors.As(e.Err, &ne) && ne.Timeout() {
		timeout = true
	}
	return &net.DNSError{
		Err:         e.Err.Error(),
		Name:        e.Name,
		IsNotFound:  e.NotFound,
		IsTemporary: e.Temporary,
		IsTimeout:   timeout,
		UnwrapErr:   e,
	}
}

func notFound(name string, qtype uint16, nxdomain bool) *Error {
	err := ErrNODATA
	if nxdomain {
		err = ErrNXDOMAIN
	}
	return &Error{Name: name, Type: typeString(qtype), NotFound: true, Err: err}
}

func temporary(name string, qtype uint16, err error) *Error {
	return &Error{Name: name, Type: typeString(qtype), Temporary: true, Err: err}
}

func permanent(name string, qtype uint16, err error) *Error {
	return &Error{Name: name, Type: typeString(qtype), Err: err}
}
