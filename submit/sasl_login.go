package submit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// LoginMechanism is the SASL mechanism name of LOGIN.
const LoginMechanism = "LOGIN"

// ErrAuthzidNotPermitted answers a SASL PLAIN authorization identity that differs
// from the authentication identity (RFC 4616 §2): acting as another user is
// exactly the credential upgrade sealgate exists to block.
var ErrAuthzidNotPermitted = &smtp.SMTPError{
	Code:         535,
	EnhancedCode: smtp.EnhancedCode{5, 7, 8},
	Message:      "authorization identity must be empty or equal to the authentication identity",
}

// errLoginSequence answers a LOGIN exchange that continues after it has finished.
var errLoginSequence = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "unexpected SASL response"}

type loginState int

const (
	loginStart loginState = iota
	loginWantUser
	loginWantPassword
	loginDone
)

type loginServer struct {
	state    loginState
	username string
	auth     func(username, password string) error
}

// NewLoginServer returns a server for the SASL LOGIN mechanism
// (draft-murchison-sasl-login-00 §2), which go-sasl lacks. The server sends the
// challenges "Username:" and "Password:"; a client may send its user name as the
// initial response, in which case only "Password:" is asked. auth is called once
// with both. Any error that is not an *smtp.SMTPError is replaced by
// smtp.ErrAuthFailed (535 5.7.8), so that internal error text never reaches the
// client (go-smtp would otherwise send it as 454).
func NewLoginServer(auth func(username, password string) error) sasl.Server {
	return &loginServer{auth: auth}
}

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.state {
	case loginStart:
		if response == nil {
			s.state = loginWantUser
			return []byte("Username:"), false, nil
		}
		// draft-murchison-sasl-login §2: the initial response, if any, is the
		// user name.
		s.username, s.state = string(response), loginWantPassword
		return []byte("Password:"), false, nil
	case loginWantUser:
		s.username, s.state = string(response), loginWantPassword
		return []byte("Password:"), false, nil
	case loginWantPassword:
		s.state = loginDone
		return nil, true, clientAuthError(s.auth(s.username, string(response)))
	}
	return nil, false, errLoginSequence
}

// NewPlainServer returns a SASL PLAIN server (RFC 4616) that refuses a non-empty
// authorization identity different from the authentication identity with
// ErrAuthzidNotPermitted, before any password check, and otherwise calls
// auth(username, password). Errors are mapped as in NewLoginServer.
func NewPlainServer(auth func(username, password string) error) sasl.Server {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return ErrAuthzidNotPermitted
		}
		return clientAuthError(auth(username, password))
	})
}

// clientAuthError keeps SMTP replies chosen by the authenticator and turns
// everything else into 535 5.7.8.
func clientAuthError(err error) error {
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return smtp.ErrAuthFailed
}

// loginTagKey keys the tags of redactLogin; random per process, so a tag cannot
// be looked up in a table of common passwords.
var loginTagKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}()

// redactLogin is how a login that did not authenticate is logged: its first
// three characters, its length and a keyed hash tag, never the whole text,
// because users type their password into the login field. The tag lets an
// operator see that failures repeat one login within a process's lifetime.
func redactLogin(login string) string {
	mac := hmac.New(sha256.New, loginTagKey)
	mac.Write([]byte(login))
	r := []rune(login)
	return fmt.Sprintf("%q... (%d chars, tag %s)", string(r[:min(3, len(r))]), len(r), hex.EncodeToString(mac.Sum(nil)[:6]))
}
