package submit

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"sealgate/internal/dkimcore"
	"sealgate/internal/smtpedge"
)

// session is one SMTP session. go-smtp starts it at the first EHLO and starts a new one after
// STARTTLS, so no authentication state survives a TLS upgrade (RFC 3207 §4.2). A later EHLO
// or RSET ends only the mail transaction; the login stays, as RFC 5321 §4.1.4 and clients
// that send many messages per connection expect, and the sender policy applies to each.
type session struct {
	s        *Server
	lc       Listener
	conn     *smtp.Conn
	cc       *clientConn
	ip       netip.Addr
	tls      *tls.ConnectionState
	log      *slog.Logger
	identity *Identity
	sasl     bool // identity came from SMTP AUTH

	from string
	to   []string
	dsn  dsnParams
	// requireTLS is MAIL's REQUIRETLS (RFC 8689 §3), offered only under TLS.
	requireTLS bool
	// utf8 is MAIL's SMTPUTF8 (RFC 6531 §3.4): only then may the envelope
	// addresses and the header carry UTF-8. eightBit is MAIL's BODY=8BITMIME
	// (RFC 6152), passed on to delivery. Every MAIL sets both (go-smtp takes RCPT
	// and DATA only after a MAIL that succeeded).
	utf8, eightBit bool

	// hungUp is set once Data has refused a bare CR or LF and closed the connection.
	hungUp bool
	// intake is set for a transaction of a DMARC report to our mailbox (reportintake.go).
	intake bool
}

type dsnParams struct {
	envID, ret    string
	notify, orcpt []string
	any           bool
}

var (
	errAuthRequired       = refusal(ReasonAuthRequired, 530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errEncryptionRequired = refusal(ReasonEncryptionRequired, 538, smtp.EnhancedCode{5, 7, 11},
		"Encryption required for requested authentication mechanism; use STARTTLS first")
	errAuthUnavailable  = refusal(ReasonAuthUnavailable, 504, smtp.EnhancedCode{5, 5, 4}, "AUTH is not available on this port")
	errRelayDenied      = refusal(ReasonRelayDenied, 554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied: authenticate first")
	errNullRecipient    = refusal(ReasonNullRecipient, 501, smtp.EnhancedCode{5, 1, 3}, "The null path is not a recipient")
	errRecipientLiteral = refusal(ReasonRecipientLiteral, 550, smtp.EnhancedCode{5, 7, 1},
		"Address literals are not accepted as recipients")
	errNeedMailRcpt = refusal(ReasonBadSequence, 503, smtp.EnhancedCode{5, 5, 1}, "Need MAIL and RCPT first")
	errBareLineEnd  = refusal(ReasonBareLF, 550, smtp.EnhancedCode{5, 6, 0},
		"Message contains a bare CR or LF; lines must end in CRLF (refused to prevent SMTP smuggling)")
	// errBareLineEndHangUp is errBareLineEnd for DATA, after which we close the connection.
	errBareLineEndHangUp = refusal(ReasonBareLF, errBareLineEnd.Code, errBareLineEnd.EnhancedCode,
		errBareLineEnd.Message+"; closing connection")
	errMalformed = func(err error) *Refusal {
		return refusal(ReasonMalformedMessage, 550, smtp.EnhancedCode{5, 6, 0}, "Malformed message: "+err.Error())
	}
	errUnknownClient = func(ip netip.Addr) *Refusal {
		return refusal(ReasonUnknownClient, 550, smtp.EnhancedCode{5, 7, 1},
			"Relay access denied: "+ip.String()+" is not a known client of this relay")
	}
)

// AuthMechanisms offers PLAIN and LOGIN, and only over TLS (RFC 4954 §4, RFC 8314).
func (se *session) AuthMechanisms() []string {
	if !se.lc.SASL || se.tls == nil || se.s.settings().Users == nil {
		return nil
	}
	return []string{sasl.Plain, "LOGIN"}
}

// Auth starts a SASL exchange for mech.
func (se *session) Auth(mech string) (sasl.Server, error) {
	users := se.s.settings().Users
	if !se.lc.SASL || users == nil {
		return nil, se.refuse(errAuthUnavailable, "AUTH refused: not offered on this listener")
	}
	if se.tls == nil {
		return nil, se.refuse(errEncryptionRequired, "AUTH refused: no TLS")
	}
	if e := se.cc.closing(); e != nil {
		return nil, e
	}
	ctx := se.cc.context()
	if t := se.s.AuthThrottle; t != nil {
		if err := t.Check(ctx, se.ip); err != nil {
			se.closeAfterReply()
			return nil, se.refuse(err, "AUTH refused: address is throttled")
		}
	}
	check := func(login, password string) error {
		var attempt *AuthAttempt
		if t := se.s.AuthThrottle; t != nil {
			// Count the attempt before the password check, so that attempts in
			// flight count against the limit (see AuthThrottle).
			a, blocked := t.Reserve(ctx, se.ip)
			if blocked != nil {
				if blocked.Code == 421 {
					se.closeAfterReply()
				}
				return se.refuse(blocked, "AUTH refused: address is throttled", "login", redactLogin(login))
			}
			attempt = a
		}
		id, err := users.Authenticate(login, password)
		if err != nil {
			// The login is not logged as typed: users type passwords into it.
			why := ReasonAuthFailed
			if err == errAuthBusy {
				why = ReasonAuthBusy
			}
			se.refuse(&Refusal{SMTPError: smtp.ErrAuthFailed, Reason: why}, "authentication failed", "login", redactLogin(login))
			if attempt != nil {
				if blocked := attempt.Failed(ctx); blocked != nil {
					se.closeAfterReply()
					return se.refuse(blocked, "AUTH refused: address is now throttled", "login", redactLogin(login))
				}
			}
			return smtp.ErrAuthFailed
		}
		if attempt != nil {
			attempt.Succeeded(ctx)
		}
		se.identity, se.sasl = id, true
		se.cc.authenticated()
		se.log = se.log.With("identity", id.Name)
		se.log.Info("authenticated", "mechanism", mech)
		return nil
	}
	switch mech {
	case sasl.Plain:
		return saslRefusals{NewPlainServer(check), se}, nil
	case "LOGIN":
		return saslRefusals{NewLoginServer(check), se}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// saslRefusals counts and logs the refusals the SASL servers make themselves, before any
// password check.
type saslRefusals struct {
	sasl.Server
	se *session
}

func (s saslRefusals) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := s.Server.Next(response)
	switch err {
	case ErrAuthzidNotPermitted:
		s.se.refuse(&Refusal{SMTPError: ErrAuthzidNotPermitted, Reason: ReasonAuthzidNotPermitted}, "AUTH refused: authorization identity differs from the login")
	case errLoginSequence:
		s.se.refuse(&Refusal{SMTPError: errLoginSequence, Reason: ReasonSASLSequence}, "AUTH refused: unexpected SASL response")
	}
	return challenge, done, err
}

// closeAfterReply closes the connection shortly after the reply being returned has been
// written: a 421 means the server closes the channel (RFC 5321 §3.8), and go-smtp writes our
// reply but would keep reading commands.
func (se *session) closeAfterReply() {
	time.AfterFunc(250*time.Millisecond, func() { se.conn.Close() })
}

// errRequireTLSPlain refuses REQUIRETLS outside TLS, where it is not offered (RFC 8689
// §4.1); go-smtp takes the parameter on any session.
var errRequireTLSPlain = refusal(ReasonEncryptionRequired, 530, smtp.EnhancedCode{5, 7, 10},
	"REQUIRETLS needs a TLS session; use STARTTLS first")

// Mail checks the envelope sender against the identity (RFC 6409 §4.1).
func (se *session) Mail(from string, opts *smtp.MailOptions) error {
	se.utf8 = opts != nil && opts.UTF8
	se.eightBit = opts != nil && opts.Body == smtp.Body8BitMIME
	if e := se.cc.closing(); e != nil {
		return e
	}
	if se.hungUp {
		// go-smtp may still hold pipelined bytes that followed a refused DATA in its buffer,
		// and reads them as commands if it has no read timeout to fail on the closed
		// connection. They are the smuggled commands: none may start a transaction.
		return se.refuse(errBareLineEndHangUp, "MAIL refused: the connection is closing after a bare CR/LF")
	}
	if se.intakeOpen() {
		return se.intakeMail(from) // reportintake.go: to our report mailboxes only
	}
	if se.identity == nil {
		if se.lc.SASL {
			return se.refuse(errAuthRequired, "MAIL refused: not authenticated", "from", from)
		}
		return se.refuse(errUnknownClient(se.ip), "MAIL refused: client not in a trusted network and no certificate", "from", from)
	}
	p, e := se.envelopePath("MAIL", from)
	if e == nil {
		e = CheckEnvelopePath(se.identity, p)
	}
	if e != nil {
		return se.refuse(e, "MAIL FROM refused", "from", from, "reply_text", e.Message)
	}
	if opts != nil && opts.RequireTLS && se.tls == nil {
		return se.refuse(errRequireTLSPlain, "MAIL refused: REQUIRETLS outside TLS", "from", from)
	}
	if r := se.s.Rate; r != nil {
		if err := r.Allow(se.cc.context(), se.identity); err != nil {
			return se.refuse(err, "MAIL refused: rate limit", "rate", se.identity.RatePerMinute)
		}
	}
	// While delivery is behind, the 250 waits (a bounded time; never a refusal), so
	// intake slows to what delivery achieves.
	se.s.Flow.Wait(se.cc.context())
	// What was checked is what is stored and sent on: the canonical form.
	se.from = p.String()
	se.dsn = dsnParams{}
	se.requireTLS = opts != nil && opts.RequireTLS
	if opts != nil {
		se.dsn.envID = opts.EnvelopeID
		se.dsn.ret = string(opts.Return)
	}
	se.cc.authenticated() // a transaction has started: the pre-authentication period is over
	return nil
}

// Rcpt accepts any syntactically valid recipient from an identified client: identified
// clients may relay to anyone, which is what a submission relay is for. Address literals
// are refused.
func (se *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if e := se.cc.closing(); e != nil {
		return e
	}
	if se.intake {
		return se.intakeRcpt(to)
	}
	if se.identity == nil {
		return se.refuse(errRelayDenied, "RCPT refused: not authenticated", "to", to)
	}
	p, e := se.envelopePath("RCPT", to)
	if e != nil {
		return se.refuse(e, "RCPT TO refused", "to", to, "reply_text", e.Message)
	}
	if p.Null {
		return se.refuse(errNullRecipient, "RCPT TO refused", "to", to)
	}
	if p.Addr.AddressLiteral != "" {
		return se.refuse(errRecipientLiteral, "RCPT TO refused", "to", to)
	}
	if err := CheckRecipientCount(se.identity, len(se.to)+1); err != nil {
		return se.refuse(err, "RCPT TO refused: too many recipients", "to", to)
	}
	se.to = append(se.to, p.String())
	var notify, orcpt string
	if opts != nil {
		for i, n := range opts.Notify {
			if i > 0 {
				notify += ","
			}
			notify += string(n)
		}
		if opts.OriginalRecipient != "" {
			orcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
		}
	}
	se.dsn.notify = append(se.dsn.notify, notify)
	se.dsn.orcpt = append(se.dsn.orcpt, orcpt)
	se.dsn.any = se.dsn.any || notify != "" || orcpt != ""
	return nil
}

// The first few refusals on a connection are logged one by one; the rest are
// counted, and the count is logged when the connection closes (clientConn.Close),
// so a client repeating a refused command cannot fill the log.
const refusalsLogged = 5

// refuse counts r by its reason code and logs it, within the connection's budget of log
// lines, with reason=CODE and the reply code; it returns the reply for go-smtp, which
// recognises only an *smtp.SMTPError. Every refusal of a session callback goes through here.
func (se *session) refuse(r *Refusal, msg string, args ...any) *smtp.SMTPError {
	se.s.metrics().Refused(r.Reason)
	if se.cc.countRefusal() {
		se.log.Warn(msg, append([]any{"reason", string(r.Reason), "reply", r.Code}, args...)...)
	}
	return r.SMTPError
}

// Data reads the message: the header into memory (strictly CRLF), the body streamed into
// the spool and the body hasher at once, refusing any bare CR or LF (SMTP smuggling).
//
// Under DATA, a bare CR or LF is refused as soon as it arrives, and the connection is closed
// (see hangUp). Under BDAT the chunk sizes frame the message, so the refusal is the ordinary
// reply and the session goes on.
func (se *session) Data(r io.Reader) error {
	start := time.Now()
	se.cc.enterData()
	defer se.cc.leaveData()
	if e := se.cc.closing(); e != nil {
		return e
	}
	if se.intake && len(se.to) > 0 {
		return se.intakeData(r)
	}
	if se.identity == nil || len(se.to) == 0 {
		return se.refuse(errNeedMailRcpt, "DATA refused: no transaction")
	}
	dr, bdat, done := se.messageReader(r)
	defer done()
	refuse := func(part string) error {
		if bdat {
			return se.refuse(errBareLineEnd, "message refused: bare CR/LF in "+part)
		}
		return se.hangUp(part)
	}
	bufs := dataBufPool.Get().(*dataBufs)
	defer bufs.release()
	br := bufs.br
	guard := &dataGuard{r: dr, maxFields: se.s.Limits.maxHeaderFields()}
	if !bdat {
		guard.cc = se.cc
	}
	br.Reset(guard)
	hdr, err := dkimcore.ReadHeader(br, true)
	if err != nil {
		if errors.Is(err, dkimcore.ErrBareLineEnd) || errors.Is(err, errSmuggledData) {
			return refuse("header")
		}
		if errors.Is(err, smtp.ErrDataTooLarge) {
			se.s.metrics().Refused(ReasonMessageTooLarge)
			return err
		}
		if errors.Is(err, errTooManyFields) {
			// Stop taking fields into memory; read the rest through the bare CR/LF
			// check so the connection stays in step.
			if !bdat && discardChecked(br, bufs.buf) {
				return refuse("body")
			}
			return se.refuse(errHeaderFields(guard.maxFields), "message refused: too many header fields", "max", guard.maxFields)
		}
		if !bdat && discardChecked(br, bufs.buf) {
			return refuse("body")
		}
		return se.refuse(errMalformed(err), "message refused: malformed header")
	}
	p := se.s.settings().Pipeline
	in, err := p.Spool.Create()
	if err != nil {
		se.log.Error("spool create failed", "reason", string(ReasonSpoolFailed), "err", err)
		if !bdat && discardChecked(br, bufs.buf) {
			return refuse("body")
		}
		se.s.metrics().Refused(ReasonSpoolFailed)
		return errTemporary(ReasonSpoolFailed, "could not queue the message").SMTPError
	}
	hasher := dkimcore.NewBodyHasher(p.BodyCanonicalizationsFor(se.identity, hdr)...)
	check := &smtpedge.LineEndCheck{}
	buf := bufs.buf
	for {
		n, rerr := br.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if check.Write(chunk) {
				in.Abort()
				return refuse("body")
			}
			hasher.Write(chunk)
			if _, err := in.Write(chunk); err != nil {
				in.Abort()
				se.log.Error("spool write failed", "reason", string(ReasonSpoolFailed), "err", err)
				se.s.metrics().Refused(ReasonSpoolFailed)
				return errTemporary(ReasonSpoolFailed, "could not queue the message").SMTPError
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			in.Abort()
			if errors.Is(rerr, errSmuggledData) {
				return refuse("body")
			}
			if errors.Is(rerr, smtp.ErrDataTooLarge) {
				se.s.metrics().Refused(ReasonMessageTooLarge)
			}
			return rerr // ErrDataTooLarge becomes 552 5.3.4 in go-smtp
		}
	}
	if check.End() || !bdat && se.cc.smuggledData() {
		in.Abort()
		return refuse("body")
	}
	headerUTF8 := !headerASCII(hdr)
	if headerUTF8 && !se.utf8 {
		in.Abort()
		return se.refuse(errNonASCIIHeader, "message refused: UTF-8 header without SMTPUTF8")
	}
	sub := &Submission{
		Identity: se.identity, Authenticated: se.sasl, From: se.from, To: se.to,
		ClientIP: net.IP(se.ip.AsSlice()), HELO: se.conn.Hostname(), TLS: se.tls,
		Header: hdr, Body: in, Bodies: hasher.Sum(),
		EnvID: se.dsn.envID, Ret: se.dsn.ret, RequireTLS: se.requireTLS,
		SMTPUTF8: se.utf8, EightBit: se.eightBit, UTF8: se.utf8 && (headerUTF8 || needsUTF8(se.from, se.to)),
	}
	if se.dsn.any {
		sub.Notify, sub.ORcpt = se.dsn.notify, se.dsn.orcpt
	}
	qid, err := p.Accept(se.cc.context(), sub)
	if err != nil {
		// The pipeline logged the refusal with its queue id and reason.
		var r *Refusal
		if errors.As(err, &r) {
			se.s.metrics().Refused(r.Reason)
			return r.SMTPError
		}
		return err
	}
	se.resetTransaction()
	se.s.metrics().Accepted(time.Since(start))
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + qid}
}

// dataBufs are the buffers Data reads a message through; pooled, because a busy relay
// would otherwise allocate (and zero) 64 KiB per message.
type dataBufs struct {
	br  *bufio.Reader
	buf []byte
}

var dataBufPool = sync.Pool{New: func() any {
	return &dataBufs{br: bufio.NewReaderSize(nil, 32*1024), buf: make([]byte, 32*1024)}
}}

func (b *dataBufs) release() {
	b.br.Reset(nil) // drop the connection
	dataBufPool.Put(b)
}

// discardChecked reads the rest of a DATA we are refusing anyway, through the bare CR/LF
// check and the polling smtpedge.DeadlineReader, and reports whether it held a bare CR or LF.
// Left to go-smtp's own drain, a CR CR LF . CR LF in it would hold the client until the
// DATA timeout (see hangUp). A message over the size limit stops the drain early; go-smtp
// then drains the rest itself.
func discardChecked(r io.Reader, buf []byte) bool {
	var check smtpedge.LineEndCheck
	for {
		n, err := r.Read(buf)
		if check.Write(buf[:n]) || errors.Is(err, errSmuggledData) {
			return true
		}
		if err != nil {
			return err == io.EOF && check.End()
		}
	}
}

var (
	errTooManyFields = errors.New("too many header fields")
	errSmuggledData  = errors.New(`a line "." followed by a bare CR`)
)

func errHeaderFields(max int) *Refusal {
	// RFC 3463 X.3.4: message too big for system.
	return refusal(ReasonTooManyHeaderFields, 552, smtp.EnhancedCode{5, 3, 4},
		fmt.Sprintf("Message header has more than %d header fields", max))
}

// dataGuard sits between go-smtp's DATA reader and Data's buffer. It counts the
// header fields as they arrive and fails with errTooManyFields past maxFields,
// once, then passes the rest through (to be drained through the bare CR/LF
// check). With cc set (DATA, not BDAT) it fails with errSmuggledData once
// smtpedge.WireScanner has seen a line "." followed by a bare CR, which go-smtp's DATA
// reader removes from what it passes on.
type dataGuard struct {
	r         io.Reader
	cc        *clientConn
	maxFields int

	fields    int
	inBody    bool
	lineStart bool // the next byte starts a line (valid once started)
	started   bool
	tripped   bool
}

func (g *dataGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if g.cc != nil && g.cc.smuggledData() {
		return n, errSmuggledData
	}
	if !g.inBody && !g.tripped {
		g.count(p[:n])
		if g.fields > g.maxFields {
			g.tripped = true
			return n, errTooManyFields
		}
	}
	return n, err
}

// count counts field starts in p: a line that starts with neither white space
// (a continuation) nor a line end (the blank line that ends the header).
func (g *dataGuard) count(p []byte) {
	for _, b := range p {
		if !g.started || g.lineStart {
			g.started, g.lineStart = true, false
			switch b {
			case '\r', '\n':
				g.inBody = true
				return
			case ' ', '\t':
			default:
				if g.fields++; g.fields > g.maxFields {
					return
				}
			}
		}
		if b == '\n' {
			g.lineStart = true
		}
	}
}

// How long hangUp waits for its reply to be written, and reads what the client still sends.
const (
	hangUpWriteTimeout = 2 * time.Second
	hangUpLinger       = time.Second
	hangUpDrainBytes   = 1 << 20
)

// hangUp refuses a DATA that holds a bare CR or LF and closes the connection, as Postfix
// does with smtpd_forbid_bare_newline. After a bare CR or LF, where the data ends is a
// matter of interpretation, which is what SMTP smuggling exploits; go-smtp itself misses the
// end after CR CR LF . CR LF and would wait for it until the DATA timeout.
// So we do not look for the end: we reply and hang up, which RFC 5321 §3.8 allows after a
// reply. The error returned goes to go-smtp, whose reply and reads then fail on the closed
// connection, silently.
func (se *session) hangUp(part string) error {
	se.log.Warn("message refused, closing connection: bare CR/LF in "+part, "reason", string(ReasonBareLF))
	se.s.metrics().Refused(ReasonBareLF)
	se.hungUp = true
	e := errBareLineEndHangUp
	c := se.conn.Conn() // the TLS connection after STARTTLS
	c.SetWriteDeadline(time.Now().Add(hangUpWriteTimeout))
	fmt.Fprintf(c, "%d %d.%d.%d %s\r\n", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
	// Closing a TCP socket with unread input makes the kernel send RST instead of FIN, and
	// the RST can make the client's kernel discard our reply before the client reads it.
	// So: half-close first where we can (FIN, or a TLS close_notify), so the client sees
	// the reply then the end at once; then read and discard what the client still sends,
	// for a bounded time and amount, and only then close.
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(hangUpLinger))
	io.Copy(io.Discard, io.LimitReader(c, hangUpDrainBytes))
	c.Close()
	return e.SMTPError
}

// messageReader wraps the reader of a message's content given to Data: the DATA timeout
// re-armed as it reads. go-smtp hands BDAT chunks over through an io.Pipe, which it
// fills from the connection itself; DATA comes from a reader on the connection, used
// only while Data runs. done must run when Data returns.
func (se *session) messageReader(r io.Reader) (dr *smtpedge.DeadlineReader, bdat bool, done func()) {
	_, bdat = r.(*io.PipeReader)
	dr = &smtpedge.DeadlineReader{R: r, Conn: se.conn.Conn(), Timeout: se.s.Limits.DataTimeout}
	if bdat {
		// A BDAT message keeps every CR, so the checks see them; what
		// smtpedge.WireScanner saw meanwhile is not about this message's framing.
		return dr, true, func() { se.cc.smuggledData() }
	}
	dr.Poll = dataPoll
	// After an early refusal go-smtp reads the rest of the DATA under whatever deadline
	// is set: give it the DATA timeout, not what is left of a poll interval.
	return dr, false, dr.Rearm
}

func (se *session) resetTransaction() {
	se.from, se.to, se.dsn, se.requireTLS, se.intake = "", nil, dsnParams{}, false, false
}

// Reset ends the mail transaction; the identity stays (RFC 5321 §4.1.1.5).
func (se *session) Reset() { se.resetTransaction() }

// Logout ends the session. go-smtp also ends the session when STARTTLS succeeds,
// with the TLS connection already in place: clientConn learns of it here.
func (se *session) Logout() error {
	if se.tls == nil {
		se.cc.tlsReady(se.conn.Conn())
	}
	return nil
}

// dataPoll is how often, under DATA, a silent client's bytes are taken from go-smtp for the
// bare CR/LF check (see smtpedge.DeadlineReader).
const dataPoll = time.Second
