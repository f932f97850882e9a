package submit

import (
	"errors"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

type authCall struct{ user, pass string }

func recorder(calls *[]authCall, err error) func(string, string) error {
	return func(u, p string) error {
		*calls = append(*calls, authCall{u, p})
		return err
	}
}

func TestLoginServer(t *testing.T) {
	t.Run("without initial response", func(t *testing.T) {
		var calls []authCall
		s := NewLoginServer(recorder(&calls, nil))
		ch, done, err := s.Next(nil)
		if string(ch) != "Username:" || done || err != nil {
			t.Fatalf("step 1: %q %v %v", ch, done, err)
		}
		ch, done, err = s.Next([]byte("alice@client.example"))
		if string(ch) != "Password:" || done || err != nil {
			t.Fatalf("step 2: %q %v %v", ch, done, err)
		}
		_, done, err = s.Next([]byte("secret"))
		if !done || err != nil {
			t.Fatalf("step 3: %v %v", done, err)
		}
		if len(calls) != 1 || calls[0] != (authCall{"alice@client.example", "secret"}) {
			t.Fatalf("calls = %v", calls)
		}
		if _, _, err := s.Next([]byte("more")); err == nil {
			t.Fatal("response after done accepted")
		}
	})
	t.Run("with initial response", func(t *testing.T) {
		var calls []authCall
		s := NewLoginServer(recorder(&calls, nil))
		ch, done, err := s.Next([]byte("alice"))
		if string(ch) != "Password:" || done || err != nil {
			t.Fatalf("step 1: %q %v %v", ch, done, err)
		}
		if _, done, err = s.Next([]byte("pw")); !done || err != nil || len(calls) != 1 || calls[0] != (authCall{"alice", "pw"}) {
			t.Fatalf("step 2: %v %v %v", done, err, calls)
		}
	})
	t.Run("empty initial response is an empty user name", func(t *testing.T) {
		var calls []authCall
		s := NewLoginServer(recorder(&calls, nil))
		if ch, _, _ := s.Next([]byte{}); string(ch) != "Password:" {
			t.Fatalf("challenge %q", ch)
		}
		s.Next([]byte("pw"))
		if len(calls) != 1 || calls[0].user != "" {
			t.Fatalf("calls = %v", calls)
		}
	})
	t.Run("internal errors become 535", func(t *testing.T) {
		var calls []authCall
		s := NewLoginServer(recorder(&calls, errors.New("users: database on fire")))
		s.Next(nil)
		s.Next([]byte("u"))
		_, _, err := s.Next([]byte("p"))
		if err != smtp.ErrAuthFailed {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("smtp errors kept", func(t *testing.T) {
		busy := &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "busy"}
		var calls []authCall
		s := NewLoginServer(recorder(&calls, busy))
		s.Next([]byte("u"))
		if _, _, err := s.Next([]byte("p")); err != busy {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestPlainServer(t *testing.T) {
	tests := []struct {
		name    string
		ir      string
		authErr error
		call    *authCall
		err     error
	}{
		{name: "no authzid", ir: "\x00alice\x00pw", call: &authCall{"alice", "pw"}},
		{name: "same authzid", ir: "alice\x00alice\x00pw", call: &authCall{"alice", "pw"}},
		{name: "other authzid", ir: "ceo\x00alice\x00pw", err: ErrAuthzidNotPermitted},
		{name: "bad password", ir: "\x00alice\x00bad", authErr: errors.New("x"), call: &authCall{"alice", "bad"}, err: smtp.ErrAuthFailed},
	}
	for _, tt := range tests {
		var calls []authCall
		s := NewPlainServer(recorder(&calls, tt.authErr))
		_, done, err := s.Next([]byte(tt.ir))
		if !done || err != tt.err {
			t.Errorf("%s: done=%v err=%v, want %v", tt.name, done, err, tt.err)
		}
		if tt.call == nil && len(calls) != 0 || tt.call != nil && (len(calls) != 1 || calls[0] != *tt.call) {
			t.Errorf("%s: calls = %v", tt.name, calls)
		}
	}
	// Without initial response the server asks with an empty challenge.
	var calls []authCall
	s := NewPlainServer(recorder(&calls, nil))
	if ch, done, err := s.Next(nil); len(ch) != 0 || done || err != nil {
		t.Fatalf("empty challenge: %q %v %v", ch, done, err)
	}
	var _ sasl.Server = s
}

// The go-sasl LOGIN client sends the user name as initial response and answers
// "Password:"; our server must complete with it.
func TestLoginServerWithGoSASLClient(t *testing.T) {
	var calls []authCall
	s := NewLoginServer(recorder(&calls, nil))
	c := sasl.NewLoginClient("alice", "pw")
	mech, ir, err := c.Start()
	if mech != LoginMechanism || err != nil {
		t.Fatal(mech, err)
	}
	ch, done, err := s.Next(ir)
	for !done && err == nil {
		var resp []byte
		if resp, err = c.Next(ch); err != nil {
			t.Fatal(err)
		}
		ch, done, err = s.Next(resp)
	}
	if err != nil || len(calls) != 1 || calls[0] != (authCall{"alice", "pw"}) {
		t.Fatalf("err=%v calls=%v", err, calls)
	}
}
