package verify

import (
	"fmt"
	"io"
	"strings"

	"sealgate/internal/authres"
	"sealgate/internal/dkimcore"
)

// authResults builds the Authentication-Results field (RFC 8601) of the report: spf for
// MAIL FROM and HELO, one dkim per signature, dmarc (RFC 9989, with RFC 7489 in a comment
// when it differs), arc and iprev, each resinfo on its own folded line.
func (v *verification) authResults() dkimcore.Field {
	rep := v.rep
	var infos []string
	add := func(r authres.Result, comment string) {
		s := r.String()
		if comment != "" {
			s += " (" + commentText(comment) + ")"
		}
		infos = append(infos, s)
	}
	if s := rep.SPF; s != nil {
		add(authres.Result{Method: "spf", Value: s.Result, Props: []authres.Prop{{Type: "smtp", Property: "mailfrom", Value: s.Sender}}}, spfComment(s))
	}
	if s := rep.SPFHELO; s != nil {
		add(authres.Result{Method: "spf", Value: s.Result, Props: []authres.Prop{{Type: "smtp", Property: "helo", Value: s.Domain}}}, spfComment(s))
	}
	if len(rep.DKIM) == 0 {
		add(authres.Result{Method: "dkim", Value: "none"}, "")
	}
	for _, d := range rep.DKIM {
		comment := ""
		if d.KeyBits > 0 {
			comment = fmt.Sprintf("%d-bit key", d.KeyBits)
			if d.Testing {
				comment += ", t=y: testing"
			}
		}
		add(d.res.AuthResult(), comment)
	}
	d := rep.DMARC9989
	dm := authres.Result{Method: "dmarc", Value: d.Result}
	if d.AuthorDomain != "" {
		dm.Props = append(dm.Props, authres.Prop{Type: "header", Property: "from", Value: d.AuthorDomain})
	}
	if d.Record != nil {
		dm.Props = append(dm.Props, authres.Prop{Type: "policy", Property: "dmarc", Value: d.Disposition})
	}
	comment := ""
	if o := rep.DMARC7489; o.Result != d.Result || o.Disposition != d.Disposition {
		comment = fmt.Sprintf("RFC 7489: %s, disposition %s", o.Result, o.Disposition)
	} else if d.Result != "pass" && d.Reason != "" {
		comment = d.Reason
	}
	add(dm, comment)
	a := authres.Result{Method: "arc", Value: rep.ARC.Result}
	comment = ""
	switch rep.ARC.Result {
	case "pass":
		comment = fmt.Sprintf("i=%d", rep.ARC.Instances)
		a.Props = append(a.Props, authres.Prop{Type: "header", Property: "oldest-pass", Value: fmt.Sprint(rep.ARC.OldestPass)})
	case "fail":
		comment = rep.ARC.Reason
	}
	if rep.IP != "" {
		a.Props = append(a.Props, authres.Prop{Type: "smtp", Property: "remote-ip", Value: rep.IP})
	}
	add(a, comment)
	if r := rep.IPRev; r != nil {
		comment := r.Confirmed
		if r.Result != "pass" {
			comment = r.Reason
		}
		add(authres.Result{Method: "iprev", Value: r.Result, Props: []authres.Prop{{Type: "policy", Property: "iprev", Value: rep.IP}}}, comment)
	}
	return authres.FormatField(authres.FieldName, quoteAuthServID(rep.AuthServID), infos)
}

// quoteAuthServID writes an authserv-id as a value (RFC 8601 §2.2): a token, or else a
// quoted-string.
func quoteAuthServID(id string) string {
	if id != "" && !strings.ContainsFunc(id, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?=`, r)
	}) {
		return id
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", " ", "\n", " ").Replace(id) + `"`
}

func spfComment(s *SPFResult) string {
	if s.Result == "pass" {
		return ""
	}
	return s.Reason
}

// commentText makes s safe inside an RFC 5322 comment.
func commentText(s string) string {
	return strings.NewReplacer("(", "[", ")", "]", "\\", "/", "\r", " ", "\n", " ").Replace(s)
}

// WriteText writes the report for a person: the Authentication-Results field, a blank
// line, one line per check ("stage check result: detail"), and the verdict.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	b.WriteString(strings.ReplaceAll(r.AuthenticationResults, "\r\n", "\n"))
	b.WriteString("\n")
	for _, c := range r.Checks {
		line := fmt.Sprintf("%-7s  %-11s  %-14s", c.Stage, c.Name, c.Result)
		if c.Detail != "" {
			line += "  " + c.Detail
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	v := r.Verdict
	fmt.Fprintf(&b, "\nverdict: %s at %s", v.Action, v.Stage)
	if v.Reply != "" {
		fmt.Fprintf(&b, ": %s", v.Reply)
	}
	fmt.Fprintf(&b, "\n  because %s\n", v.Reason)
	_, err := io.WriteString(w, b.String())
	return err
}
