package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"

	"sealgate/internal/smtpclient"
)

// Credentials log in to a smart host with AUTH (RFC 4954), only under TLS.
// Neither String nor any error shows the password.
type Credentials struct {
	Mechanism string // "PLAIN" (default) or "LOGIN"
	Username  string
	Password  string
}

func (c *Credentials) String() string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%s as %q", c.mechanism(), c.Username)
}

func (c *Credentials) mechanism() string {
	if c.Mechanism == "" {
		return "PLAIN"
	}
	return strings.ToUpper(c.Mechanism)
}

func (c *Credentials) client() (sasl.Client, error) {
	switch c.mechanism() {
	case "PLAIN":
		return sasl.NewPlainClient("", c.Username, c.Password), nil
	case "LOGIN":
		return &loginClient{user: c.Username, password: c.Password}, nil
	}
	return nil, fmt.Errorf("AUTH mechanism %q: want PLAIN or LOGIN", c.Mechanism)
}

// loginClient is the LOGIN mechanism (draft-murchison-sasl-login) as servers
// use it: no initial response, then the user name and the password, each when
// asked. go-sasl's sends the user name as an initial response and accepts only
// a "Password:" challenge, which servers that ask "Username:" first refuse.
type loginClient struct {
	user, password string
	step           int
}

func (l *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

func (l *loginClient) Next(challenge []byte) ([]byte, error) {
	l.step++
	switch ch := strings.ToLower(strings.TrimSpace(string(challenge))); {
	case strings.HasPrefix(ch, "user"):
		return []byte(l.user), nil
	case strings.HasPrefix(ch, "pass"):
		return []byte(l.password), nil
	case l.step == 1:
		return []byte(l.user), nil
	case l.step == 2:
		return []byte(l.password), nil
	}
	return nil, errors.New("LOGIN: unexpected third challenge")
}

// auth logs in, only over TLS whose certificate verified; a refusal is
// temporary for the message (the credentials are the admin's to fix, RFC 4954
// §6), never logged with what was sent.
func (t *Transport) auth(ctx context.Context, c *smtpclient.Client, cred *Credentials) error {
	info, ok := c.TLS()
	switch {
	case !ok:
		return errors.New("AUTH not attempted: the session has no TLS (the next hop did not offer STARTTLS)")
	case !info.Verified:
		// Credentials go only to a server proven to be the one named.
		return fmt.Errorf("AUTH not attempted: the certificate does not verify for %s: %v", info.ServerName, info.VerifyError)
	}
	sc, err := cred.client()
	if err != nil {
		return err
	}
	stop := c.CloseOnDone(ctx)
	defer stop()
	if err := c.Auth(sc); err != nil {
		return fmt.Errorf("AUTH %s: %w", cred, err)
	}
	return nil
}
