package addr

import (
	"strings"
	"testing"
)

func TestCheckSelector(t *testing.T) {
	for _, good := range []string{"s1", "S2026", "2026-01.rsa", "google_2023", "a_b-c", strings.Repeat("a", 63), "x.y.z"} {
		if err := CheckSelector(good); err != nil {
			t.Errorf("CheckSelector(%q): %v", good, err)
		}
	}
	for bad, want := range map[string]string{
		"":                              "empty selector",
		"a..b":                          "empty label",
		"-s":                            `label "-s" must start and end with a letter or digit`,
		"s-":                            "must start and end",
		"_bad":                          `"_bad": label "_bad" must start and end`,
		"bad_":                          "must start and end",
		"s 1":                           `' ' is not allowed`,
		"s;x":                           `';' is not allowed`,
		"s/1":                           `'/' is not allowed`,
		"séléctor":                      "is not allowed",
		strings.Repeat("a", 64):         "longer than 63",
		strings.Repeat("a.", 127) + "a": "longer than 253",
	} {
		err := CheckSelector(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckSelector(%q) = %v, want an error containing %q", bad, err, want)
		}
	}
}
