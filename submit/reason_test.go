package submit

import (
	"errors"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Each rule's constructor carries its own reason code; the code travels with the reply
// (errors.As), and what go-smtp gets is the reply itself.
func TestRefusalReasons(t *testing.T) {
	id := alice()
	id.MaxRecipients = 1
	tests := []struct {
		got  *Refusal
		want Reason
	}{
		{CheckEnvelopeSender(nil, "a@client.example"), ReasonAuthRequired},
		{CheckEnvelopeSender(id, "not an address"), ReasonSenderSyntax},
		{CheckEnvelopeSender(id, ""), ReasonNullSender},
		{CheckEnvelopeSender(id, "ceo@bank.example"), ReasonSenderNotPermitted},
		{CheckEnvelopeSender(id, "a@[192.0.2.1]"), ReasonAddressLiteral},
		{CheckHeaderSenders(id, header("Subject: x")), ReasonNoFrom},
		{CheckHeaderSenders(id, header("From: a@client.example", "From: b@client.example")), ReasonHeaderFieldCount},
		{CheckHeaderSenders(id, header("From: <<<")), ReasonUnparsableHeader},
		{CheckHeaderSenders(id, header("From: undisclosed:;")), ReasonEmptyGroup},
		{CheckHeaderSenders(id, header("From: a@client.example, b@client.example")), ReasonSenderFieldRequired},
		{CheckHeaderSenders(id, header("From: a@client.example", "Sender: a@client.example, b@client.example")), ReasonNotOneMailbox},
		{CheckHeaderSenders(id, header(`From: "ceo@bank.example" <a@client.example>`)), ReasonDisplayNameAddress},
		{CheckRecipientCount(id, 2), ReasonTooManyRecipients},
		{errAuthBlocked(time.Minute), ReasonAuthThrottled},
		{errAuthSourceBusy, ReasonAuthThrottled},
		{errRateLimited(id), ReasonRateLimited},
		{errNotConfigured("x.example"), ReasonNoDKIMKeys},
		{errTemporary(ReasonSpoolFailed, "could not queue the message"), ReasonSpoolFailed},
		{errBareLineEndHangUp, ReasonBareLF},
		{errSmuggling, ReasonSmuggling},
		{errPreAuthTimeout("h", time.Second, false), ReasonPreAuthTimeout},
		{errIdleTimeout("h"), ReasonIdleTimeout},
		{errHeaderFields(10), ReasonTooManyHeaderFields},
		{errNonASCIIAddress("MAIL FROM", "ü@x"), ReasonNonASCIIAddress},
		{errNonASCIIHeader, ReasonNonASCIIHeader},
		{CheckHeaderSenders(id, header("From: a@client\uff0eexample")), ReasonLookalikeDomain},
	}
	for _, tt := range tests {
		if tt.got == nil {
			t.Errorf("%s: no refusal", tt.want)
			continue
		}
		if tt.got.Reason != tt.want {
			t.Errorf("%q: reason %q, want %q", tt.got.Message, tt.got.Reason, tt.want)
		}
		var r *Refusal
		var err error = tt.got
		if !errors.As(err, &r) || r.Reason != tt.want {
			t.Errorf("%s: errors.As lost the reason", tt.want)
		}
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se != tt.got.SMTPError {
			t.Errorf("%s: errors.As does not give the reply", tt.want)
		}
	}
}

// docs/reason-codes.md documents exactly the codes of AllReasons, each once.
func TestReasonCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/reason-codes.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]int{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\|").FindAllSubmatch(doc, -1) {
		documented[string(m[1])]++
	}
	seen := map[Reason]bool{}
	valid := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	for _, r := range AllReasons {
		if seen[r] {
			t.Errorf("%s listed twice in AllReasons", r)
		}
		seen[r] = true
		if !valid.MatchString(string(r)) {
			t.Errorf("%q is not a lower-case code", r)
		}
		if documented[string(r)] != 1 {
			t.Errorf("%s documented %d times in docs/reason-codes.md, want once", r, documented[string(r)])
		}
	}
	for code := range documented {
		if !seen[Reason(code)] {
			t.Errorf("docs/reason-codes.md documents %s, which is not in AllReasons", code)
		}
	}
}
