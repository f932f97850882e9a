package dmarcreport

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzImportBytes: whatever the bytes, unpacking and parsing never panic, and a parsed
// report is complete or an error, never both.
func FuzzImportBytes(f *testing.F) {
	for _, p := range []string{"google.xml", "google.xml.gz", "yahoo.zip", "microsoft.eml", "dmarcbis.xml", "maildir/cur/1796169700.M1P1.rua"} {
		b, err := os.ReadFile(filepath.Join("testdata", p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><feedback/>`))
	lim := Limits{MaxInputBytes: 1 << 20, MaxXMLBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := extract("fuzz", data, lim, 0)
		if err != nil {
			return
		}
		for _, d := range docs {
			rep, err := parseXML(d.data, lim, fixtureNow)
			if (err == nil) == (rep == nil) {
				t.Fatalf("parseXML: report %v, error %v: want exactly one", rep, err)
			}
			if err == nil && (rep.Org == "" || rep.ID == "" || len(rep.Records) == 0 || rep.Policy.Domain == "") {
				t.Fatalf("parseXML accepted an incomplete report: %+v", rep)
			}
		}
	})
}
