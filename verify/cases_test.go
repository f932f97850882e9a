package verify

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCases runs the cases of testdata/cases: each file gives the envelope ("ip:", "helo:",
// "mail-from:", "submitter:", and "sign:" to DKIM-sign the message with the test key for a
// domain, whose key record is then published), the zone after "-- zone --", the message
// after "-- message --", and after "-- expect --" lines the report must show:
// "ar: TEXT" in the unfolded Authentication-Results field, "check: STAGE NAME RESULT" for
// one of its checks, and "verdict: ACTION at STAGE[: REPLY]" exactly.
func TestCases(t *testing.T) {
	files, err := filepath.Glob("testdata/cases/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c := parseCase(t, string(b))
			zone := c.zone
			if c.sign != "" {
				zone += dkimRecord(c.sign)
			}
			o := testOptions(t, zone)
			msg := c.message
			if c.sign != "" {
				msg = signed(t, msg, c.sign)
			}
			rep := run(t, c.env, msg, o)
			ar := strings.ReplaceAll(rep.AuthenticationResults, "\r\n ", " ")
			for _, e := range c.expect {
				kind, want, _ := strings.Cut(e, ": ")
				switch kind {
				case "ar":
					if !strings.Contains(ar, want) {
						t.Errorf("Authentication-Results lacks %q:\n%s", want, rep.AuthenticationResults)
					}
				case "check":
					f := strings.SplitN(want, " ", 3)
					if !slices.ContainsFunc(rep.Checks, func(c Check) bool {
						return c.Stage == Stage(f[0]) && c.Name == f[1] && c.Result == f[2]
					}) {
						t.Errorf("no check %q in %+v", want, rep.Checks)
					}
				case "verdict":
					v := rep.Verdict
					got := fmt.Sprintf("%s at %s", v.Action, v.Stage)
					if v.Reply != "" {
						got += ": " + v.Reply
					}
					if got != want {
						t.Errorf("verdict %q, want %q (%s)", got, want, v.Reason)
					}
				default:
					t.Fatalf("unknown expectation %q", e)
				}
			}
		})
	}
}

type testCase struct {
	env           Envelope
	sign          string
	zone, message string
	expect        []string
}

func parseCase(t *testing.T, s string) testCase {
	t.Helper()
	var c testCase
	head, rest, ok := strings.Cut(s, "-- zone --\n")
	zone, rest, ok2 := strings.Cut(rest, "-- message --\n")
	msg, expect, ok3 := strings.Cut(rest, "-- expect --\n")
	if !ok || !ok2 || !ok3 {
		t.Fatal("a case needs -- zone --, -- message -- and -- expect -- in that order")
	}
	for line := range strings.SplitSeq(head, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "ip":
			c.env.IP = netip.MustParseAddr(v)
		case "helo":
			c.env.HELO = v
		case "mail-from":
			c.env.MailFrom = v
		case "submitter":
			c.env.Submitter = v
		case "sign":
			c.sign = v
		default:
			t.Fatalf("unknown case field %q", k)
		}
	}
	c.zone, c.message = zone, msg
	for line := range strings.SplitSeq(expect, "\n") {
		if line != "" && line[0] != '#' {
			c.expect = append(c.expect, line)
		}
	}
	if len(c.expect) == 0 {
		t.Fatal("a case must expect something")
	}
	return c
}
