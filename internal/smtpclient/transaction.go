package smtpclient

import (
	"errors"
	"fmt"
	"io"
	"sealgate/internal/addr"
	"strconv"
	"strings"
)

// Transaction is one mail transaction (RFC 5321 §3.3): the envelope and what
// to ask of the server's extensions. Each optional field is sent only when the
// server offers its extension; otherwise it is left out, except where that
// would change the message's meaning (SMTPUTF8), which fails the transaction.
type Transaction struct {
	// From is the reverse-path's mailbox; "" is the null reverse-path <>.
	From string
	// Rcpts are the recipients, each reported on separately.
	Rcpts []Recipient

	// Size is the message size in bytes, declared with SIZE (RFC 1870 §6);
	// beyond the server's limit the transaction is not started. 0: not declared.
	Size int64
	// UTF8 asks for SMTPUTF8 (RFC 6531 §3.4), for a message whose header
	// carries UTF-8; an envelope address that is not ASCII asks for it too. A
	// server without SMTPUTF8 cannot take such a message: UnsendableError.
	UTF8 bool
	// EightBit says the body holds 8-bit data: BODY=8BITMIME (RFC 6152 §3) to a
	// server that offers 8BITMIME. To one that does not, the message goes without
	// the parameter and unconverted: its content is signed.
	EightBit bool
	// Ret and EnvID are the DSN parameters RET (FULL or HDRS) and ENVID
	// (decoded; sent xtext-encoded) of RFC 3461 §4.3 and §4.4.
	Ret   string
	EnvID string
	// Submitter is the purported responsible address (RFC 4405 §4, computed
	// by RFC 4407's algorithm), sent as SUBMITTER=<xtext>.
	Submitter string
	// RequireTLS asks the server to pass the message on only over verified TLS
	// (RFC 8689 §3). Such a transaction is never sent on a session without TLS
	// whose certificate verified, nor to a server that does not offer
	// REQUIRETLS: the error is ErrRequireTLS, before anything is written. A
	// certificate authenticated by DANE counts as verified (Client.SetDANEVerified).
	RequireTLS bool
	// MailParams are further MAIL parameters, sent whatever the server offered:
	// the caller knows what it asks for.
	MailParams []Param
}

// Recipient is one forward-path with its DSN parameters (RFC 3461 §4.1, §4.2).
type Recipient struct {
	Addr string
	// Notify is the NOTIFY value: "NEVER", or some of SUCCESS, FAILURE, DELAY
	// joined by commas; "" sends none.
	Notify string
	// ORcpt is the original recipient as "addr-type;address", the address
	// decoded (sent xtext-encoded); "" sends none.
	ORcpt string
	// Params are further RCPT parameters, sent as given.
	Params []Param
}

// Result is the outcome of a transaction that ran to its end.
type Result struct {
	// Rcpts holds, parallel to Transaction.Rcpts, nil for each recipient the
	// server accepted and the *ReplyError of each it refused.
	Rcpts []error
	// Data is the server's reply to the message (250 and usually a queue id),
	// when at least one recipient was accepted and so the message was sent.
	Data *Reply
}

// Accepted returns how many recipients the server accepted.
func (r *Result) Accepted() int {
	n := 0
	for _, err := range r.Rcpts {
		if err == nil {
			n++
		}
	}
	return n
}

// UnsendableError reports a transaction the client will not send as asked, and
// that no retry can change: an address it cannot write faithfully, a message
// over the server's SIZE, SMTPUTF8 needed but not offered, or a bare CR or LF in
// the message.
type UnsendableError struct {
	Err error
}

func (e *UnsendableError) Error() string { return e.Err.Error() }
func (e *UnsendableError) Unwrap() error { return e.Err }

// ErrNoSMTPUTF8 is the Err of the UnsendableError for a transaction that needs
// SMTPUTF8 (Transaction.UTF8, or a non-ASCII address) on a server that does not
// offer it: RFC 6531 §3.5 allows no downgrade here, and the status is 5.6.7.
var ErrNoSMTPUTF8 = errors.New("non-ASCII address or header but the server does not offer SMTPUTF8 (RFC 6531 §3.5)")

// ErrRequireTLS reports a transaction with RequireTLS that the session cannot
// carry (RFC 8689 §4.1): no TLS, a certificate that did not verify, or no
// REQUIRETLS in the server's EHLO reply. Another server may take it; the session
// stays usable.
var ErrRequireTLS = errors.New("REQUIRETLS: the message needs verified TLS to a server that offers REQUIRETLS")

// ErrInDoubt reports that the whole message was sent but no reply to it came
// (the connection failed): the server may have taken it (RFC 5321 §6.1 accepts
// the duplicate a retry may cause).
var ErrInDoubt = errors.New("no reply after the end of the message")

// ErrStaleSession reports that a session which had carried a transaction did
// not answer the RSET opening the next one: the server dropped it meanwhile.
// Nothing of the new transaction was taken; the session is closed, and the
// transaction may go on a new one at once.
var ErrStaleSession = errors.New("reused SMTP session did not answer RSET")

// Send runs tx and, if the server accepts at least one recipient, sends msg
// (the whole message, CRLF line endings) as its content. msg is read only then.
//
// A nil error means the transaction ran to its end; Result says per recipient
// what the server answered, and the session can carry another transaction. An
// error means the transaction failed as a whole: a *UnsendableError, refused
// before anything was written (the session stays usable), or after a bare CR
// or LF in msg (the connection is closed before the end of data, so the server
// discards the transaction, RFC 5321 §4.1.1.4); ErrStaleSession; a *ReplyError
// to MAIL, DATA or the end of data; or the connection's error. After any but
// the first kind, Reusable reports false and the session is to be closed.
func (c *Client) Send(tx *Transaction, msg io.Reader) (*Result, error) {
	return c.run(tx, msg, true)
}

// Verify asks the server whether it would take mail from from ("" for the null
// reverse-path, as callback verification uses) to each of rcpts: MAIL and the
// RCPTs, never DATA, so no message can result. It returns, parallel to rcpts, nil
// for each recipient accepted and the *ReplyError of each refused. Then Quit, or
// run another transaction (it starts with RSET). An error means the probe failed
// as a whole, as for Send.
func (c *Client) Verify(from string, rcpts ...string) ([]error, error) {
	tx := &Transaction{From: from, Rcpts: make([]Recipient, len(rcpts))}
	for i, r := range rcpts {
		tx.Rcpts[i].Addr = r
	}
	res, err := c.run(tx, nil, false)
	if err != nil {
		return nil, err
	}
	return res.Rcpts, nil
}

// run carries out tx, with DATA and msg when data is set. A failure after the
// first command was written leaves the session unusable.
func (c *Client) run(tx *Transaction, msg io.Reader, data bool) (_ *Result, err error) {
	if c.broken.Load() {
		return nil, errors.New("smtpclient: the session is closed or failed")
	}
	if len(tx.Rcpts) == 0 {
		return nil, &UnsendableError{Err: errors.New("no recipients")}
	}
	// Every line is built before the first is written, so a refusal writes nothing.
	_, dsn := c.Extension("DSN")
	rcpts := make([]string, len(tx.Rcpts))
	utf8 := tx.UTF8
	for i, r := range tx.Rcpts {
		line, err := rcptCommand(r, dsn)
		if err != nil {
			return nil, err
		}
		rcpts[i] = line
		utf8 = utf8 || !addr.IsASCII(line) // only the address can be non-ASCII: parameters are xtext
	}
	mail, err := c.mailCommand(tx, utf8)
	if err != nil {
		return nil, err
	}
	reused := c.used
	cmds := make([]string, 0, len(tx.Rcpts)+3)
	if reused {
		cmds = append(cmds, "RSET")
	}
	cmds = append(cmds, mail)
	cmds = append(cmds, rcpts...)
	if data {
		cmds = append(cmds, "DATA")
	}
	c.used = true
	defer func() {
		if err != nil {
			c.broken.Store(true)
		}
	}()

	g := c.group(cmds)
	if err := g.start(); err != nil {
		return nil, staleIf(reused, err)
	}
	if reused {
		if _, err := g.reply(250); err != nil {
			return nil, staleIf(true, err)
		}
	}
	if _, err := g.reply(2); err != nil {
		return nil, err // MAIL refused; with pipelining the rest is moot
	}
	res := &Result{Rcpts: make([]error, len(tx.Rcpts))}
	var re *ReplyError
	for i := range tx.Rcpts {
		if _, err := g.reply(2); err != nil {
			if !errors.As(err, &re) {
				return nil, err // connection trouble
			}
			res.Rcpts[i] = err
		}
	}
	if !data {
		return res, nil
	}
	if res.Accepted() == 0 {
		if g.pipelining {
			// DATA was sent too. A server that accepts it anyway (RFC 2920 §3.1)
			// gets an empty message ended at once, which it must refuse.
			if _, err := g.reply(354); err == nil {
				if err := c.send("."); err != nil {
					return nil, err
				}
				if _, err := c.read("end of data", 2); err != nil && !errors.As(err, &re) {
					return nil, err
				}
			} else if !errors.As(err, &re) {
				return nil, err
			}
		}
		return res, nil
	}
	if _, err := g.reply(354); err != nil {
		return nil, err
	}
	if err := c.body(msg); err != nil {
		return nil, err
	}
	c.deadline()
	r, err := c.read("end of data", 250)
	var rerr *ReplyError
	if err != nil && !errors.As(err, &rerr) {
		return nil, fmt.Errorf("%w: %w", ErrInDoubt, err)
	}
	if err != nil {
		return nil, err
	}
	res.Data = &r
	return res, nil
}

func staleIf(reused bool, err error) error {
	if reused {
		return fmt.Errorf("%w: %w", ErrStaleSession, err)
	}
	return err
}

// group hands out a transaction's commands and reads their replies: all
// commands in one write when the server offers PIPELINING (RFC 2920 §3.1), else
// each just before its reply is read.
type group struct {
	c          *Client
	cmds       []string
	next       int
	pipelining bool
}

func (c *Client) group(cmds []string) *group {
	_, pipelining := c.Extension("PIPELINING")
	return &group{c: c, cmds: cmds, pipelining: pipelining}
}

func (g *group) start() error {
	if g.pipelining {
		return g.c.send(g.cmds...)
	}
	return nil
}

// reply reads the reply to the next command, sending it first when not pipelining.
func (g *group) reply(expect int) (Reply, error) {
	line := g.cmds[g.next]
	g.next++
	if !g.pipelining {
		if err := g.c.send(line); err != nil {
			return Reply{}, err
		}
	}
	return g.c.read(line, expect)
}

// mailCommand builds the MAIL command for tx, with the parameters the server's
// extensions call for; utf8 says a recipient needs SMTPUTF8.
func (c *Client) mailCommand(tx *Transaction, utf8 bool) (string, error) {
	from, err := ReversePath(tx.From)
	if err != nil {
		return "", err
	}
	var params []string
	if v, ok := c.Extension("SIZE"); ok && tx.Size > 0 {
		// RFC 1870 §6: declare the size; a known limit lets us fail before sending.
		if max, err := strconv.ParseInt(v, 10, 64); err == nil && max > 0 && tx.Size > max {
			return "", &UnsendableError{Err: fmt.Errorf("message of %d bytes exceeds the server's SIZE %d", tx.Size, max)}
		}
		params = append(params, "SIZE="+strconv.FormatInt(tx.Size, 10))
	}
	if _, ok := c.Extension("8BITMIME"); ok && tx.EightBit {
		params = append(params, "BODY=8BITMIME")
	}
	if utf8 || !addr.IsASCII(from) {
		if _, ok := c.Extension("SMTPUTF8"); !ok {
			return "", &UnsendableError{Err: ErrNoSMTPUTF8}
		}
		params = append(params, "SMTPUTF8")
	}
	if _, ok := c.Extension("DSN"); ok { // RFC 3461 §4.3, §4.4
		switch strings.ToUpper(tx.Ret) {
		case "":
		case "FULL", "HDRS":
			params = append(params, "RET="+strings.ToUpper(tx.Ret))
		default:
			return "", &UnsendableError{Err: fmt.Errorf("RET=%q: want FULL or HDRS (RFC 3461 §4.3)", tx.Ret)}
		}
		if tx.EnvID != "" {
			params = append(params, "ENVID="+XText(tx.EnvID))
		}
	}
	if tx.Submitter != "" {
		if _, ok := c.Extension("SUBMITTER"); ok { // RFC 4405 §4
			mbox, err := Mailbox(tx.Submitter)
			if err != nil {
				return "", err
			}
			params = append(params, "SUBMITTER="+XText(mbox))
		}
	}
	if tx.RequireTLS {
		_, offered := c.Extension("REQUIRETLS")
		if c.tls == nil || !(c.tls.Verified || c.tls.DANEVerified) || !offered {
			return "", ErrRequireTLS
		}
		params = append(params, "REQUIRETLS") // RFC 8689 §3
	}
	extra, err := formatParams(tx.MailParams)
	if err != nil {
		return "", err
	}
	return "MAIL FROM:" + from + joinParams(append(params, extra...)), nil
}

// rcptCommand builds the RCPT command for r; dsn says the server offers DSN.
func rcptCommand(r Recipient, dsn bool) (string, error) {
	to, err := ForwardPath(r.Addr)
	if err != nil {
		return "", err
	}
	var params []string
	if dsn { // RFC 3461 §4.1, §4.2
		if r.Notify != "" {
			if !validNotify(r.Notify) {
				return "", &UnsendableError{Err: fmt.Errorf("NOTIFY=%q: want NEVER or a list of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1)", r.Notify)}
			}
			params = append(params, "NOTIFY="+strings.ToUpper(r.Notify))
		}
		if r.ORcpt != "" {
			params = append(params, "ORCPT="+orcptParam(r.ORcpt))
		}
	}
	extra, err := formatParams(r.Params)
	if err != nil {
		return "", err
	}
	return "RCPT TO:" + to + joinParams(append(params, extra...)), nil
}

func validNotify(v string) bool {
	if strings.EqualFold(v, "NEVER") {
		return true
	}
	for _, p := range strings.Split(v, ",") {
		switch strings.ToUpper(p) {
		case "SUCCESS", "FAILURE", "DELAY":
		default:
			return false
		}
	}
	return true
}

// orcptParam encodes a stored "addr-type;address" as the ORCPT value (RFC 3461
// §4.2); without a type it is rfc822. An address of type utf-8 is sent as
// utf-8-addr-xtext (RFC 6533 §3), which any server can take.
func orcptParam(s string) string {
	typ, addr, ok := strings.Cut(s, ";")
	if !ok {
		typ, addr = "rfc822", s
	}
	if strings.EqualFold(typ, "utf-8") {
		return "utf-8;" + UTF8AddrXText(addr)
	}
	return XText(typ) + ";" + XText(addr)
}

func joinParams(params []string) string {
	if len(params) == 0 {
		return ""
	}
	return " " + strings.Join(params, " ")
}
