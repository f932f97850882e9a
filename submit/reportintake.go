package submit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/addr"
	"sealgate/internal/smtpedge"
)

// ReportIntake is a mailbox for DMARC aggregate reports on the smart-host listeners:
// receivers mail their reports to the rua address of a domain's record (RFC 7489
// §7.2.1.1), and when that address is ours, sealgate takes them itself.
//
// A client we do not know (no network, certificate or login identity) may then send on
// a smart-host listener, but only to the configured addresses, every recipient one of
// them: anything else is refused as before (relay_denied), so the listener is no open
// relay. Such a message is never signed, sealed, spooled or relayed; it is read up to
// MaxBytes, refused if it holds a bare CR or LF (as any message), and handed to Store,
// whose answer the reply gives. Identified clients' mail to these addresses is relayed
// as any other.
type ReportIntake struct {
	// Addresses are the report mailboxes (the mailto: addresses of rua URIs).
	Addresses []addr.Address
	// MaxBytes caps a report message (go-smtp's max_message_bytes still applies).
	MaxBytes int64
	// Store imports the reports of one message; an error refuses it (550 5.6.0,
	// report_refused) and the error's text is the reply. Nothing is stored then.
	Store func(ctx context.Context, msg []byte) error
	// Timeout bounds Store (default 30s).
	Timeout time.Duration
}

var (
	errReportTooLarge = func(max int64) *Refusal {
		return refusal(ReasonMessageTooLarge, 552, smtp.EnhancedCode{5, 3, 4}, fmt.Sprintf("Report message larger than %d bytes", max))
	}
	errReportRecipients = func(n int) *Refusal {
		return refusal(ReasonTooManyRecipients, 452, smtp.EnhancedCode{4, 5, 3}, fmt.Sprintf("too many recipients: a report goes to at most %d report mailboxes", n))
	}
	errReportRefused = func(err error) *Refusal {
		msg := strings.Join(strings.Fields(err.Error()), " ") // one reply line
		if len(msg) > 400 {
			msg = msg[:400] + "..."
		}
		return refusal(ReasonReportRefused, 550, smtp.EnhancedCode{5, 6, 0}, "Report refused: "+msg)
	}
)

// intakeOpen reports whether the session, of a client we do not know, may send reports.
func (se *session) intakeOpen() bool {
	return se.identity == nil && se.s.ReportIntake != nil && se.lc.Mode == ModeSmartHost
}

// intakeMail starts a report transaction (identity nil).
func (se *session) intakeMail(from string) error {
	p, e := se.envelopePath("MAIL", from)
	if e != nil {
		return se.refuse(e, "MAIL FROM refused", "from", from, "reply_text", e.Message)
	}
	se.resetTransaction()
	se.from, se.intake = p.String(), true
	return nil
}

// intakeRcpt takes a recipient of a report transaction: one of the report mailboxes only.
func (se *session) intakeRcpt(to string) error {
	p, e := se.envelopePath("RCPT", to)
	if e != nil {
		return se.refuse(e, "RCPT TO refused", "to", to, "reply_text", e.Message)
	}
	ok := false
	for _, a := range se.s.ReportIntake.Addresses {
		ok = ok || !p.Null && p.Addr.Equal(a)
	}
	if !ok {
		return se.refuse(errRelayDenied, "RCPT refused: not authenticated, and not a report mailbox", "to", to)
	}
	if len(se.to) >= len(se.s.ReportIntake.Addresses) {
		return se.refuse(errReportRecipients(len(se.s.ReportIntake.Addresses)), "RCPT TO refused: too many recipients", "to", to)
	}
	se.to = append(se.to, p.String())
	// A report is coming: the pre-authentication period, meant for clients that do
	// nothing, no longer bounds the session.
	se.cc.authenticated()
	return nil
}

// intakeData reads a report message and stores it; it is never spooled.
func (se *session) intakeData(r io.Reader) error {
	ri := se.s.ReportIntake
	dr, bdat, done := se.messageReader(r)
	defer done()
	var guard io.Reader = dr
	if !bdat {
		guard = &dataGuard{r: dr, cc: se.cc, inBody: true}
	}
	max := ri.MaxBytes
	if max <= 0 {
		max = 10 << 20
	}
	var msg []byte
	var check smtpedge.LineEndCheck
	buf := make([]byte, 32*1024)
	for {
		n, err := guard.Read(buf)
		if n > 0 {
			if check.Write(buf[:n]) {
				return se.intakeBareLineEnd(bdat)
			}
			if int64(len(msg)+n) > max {
				if !bdat && discardChecked(guard, buf) {
					return se.intakeBareLineEnd(bdat)
				}
				return se.refuse(errReportTooLarge(max), "report refused: too large", "max", max)
			}
			msg = append(msg, buf[:n]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, errSmuggledData) {
				return se.intakeBareLineEnd(bdat)
			}
			if errors.Is(err, smtp.ErrDataTooLarge) {
				se.s.metrics().Refused(ReasonMessageTooLarge)
			}
			return err
		}
	}
	if check.End() || !bdat && se.cc.smuggledData() {
		return se.intakeBareLineEnd(bdat)
	}
	ctx, cancel := context.WithTimeout(se.cc.context(), cmp.Or(ri.Timeout, 30*time.Second))
	defer cancel()
	to := strings.Join(se.to, ",")
	se.resetTransaction()
	if err := ri.Store(ctx, msg); err != nil {
		return se.refuse(errReportRefused(err), "DMARC report refused", "from", se.from, "to", to, "size", len(msg), "err", err)
	}
	se.log.Info("DMARC report stored", "to", to, "size", len(msg))
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK report stored"}
}

func (se *session) intakeBareLineEnd(bdat bool) error {
	se.resetTransaction()
	if bdat {
		return se.refuse(errBareLineEnd, "report refused: bare CR/LF")
	}
	return se.hangUp("report")
}
