package dmarcreport

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each fixture shape imports: plain XML of each style, gzip, zip, a message with the
// report attached and a Maildir; the same report twice is stored once.
func TestImportFixtures(t *testing.T) {
	tests := []struct {
		path    string
		reports []string // org/id stored, in order
		dup     int
		format  string
	}{
		{"testdata/google.xml.gz", []string{"google.com/11694357851230594331"}, 0, "rfc7489"},
		{"testdata/yahoo.zip", []string{"Yahoo/1733011200.428713"}, 0, "rfc7489"},
		{"testdata/microsoft.eml", []string{"Enterprise Outlook/7cf1c0b2a4e84ab0b7d2f0b1f3a9e101"}, 0, "rfc7489"},
		// cur/ holds the DMARCbis report zipped, new/ the Google one as text/xml: a duplicate.
		{"testdata/maildir", []string{"mx.partner.example/r-42", "google.com/11694357851230594331"}, 1, "dmarcbis"},
	}
	im := testImporter(t)
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			res := im.ImportPath(tc.path)
			var got []string
			dups := 0
			for _, r := range res {
				if r.Err != nil {
					t.Fatalf("%s: %v", r.Source, r.Err)
				}
				got = append(got, r.Report.Org+"/"+r.Report.ID)
				if r.Duplicate {
					dups++
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.reports, " ") || dups != tc.dup {
				t.Errorf("imported %v (%d duplicates), want %v (%d)", got, dups, tc.reports, tc.dup)
			}
			if res[0].Report.Format != tc.format {
				t.Errorf("format %q, want %q", res[0].Report.Format, tc.format)
			}
		})
	}
	tot, err := im.Store.Totals()
	if err != nil {
		t.Fatal(err)
	}
	// 4 reports; rows: google 4 (2 fail), yahoo 2 (1 fail), microsoft 2, dmarcbis 1.
	if tot.Reports != 4 || tot.Rows["pass"] != 6 || tot.Rows["fail"] != 3 || tot.Messages["pass"] != 78 || tot.Messages["fail"] != 6 {
		t.Errorf("totals %+v; want 4 reports, rows pass 6 fail 3, messages pass 78 fail 6", tot)
	}
}

// The DMARCbis report's fields land where the RFC 7489 ones do.
func TestParseDMARCbis(t *testing.T) {
	b, err := os.ReadFile("testdata/dmarcbis.xml")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := parseXML(b, Limits{}, fixtureNow)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Records[0]
	if rep.Format != "dmarcbis" || rep.Policy.NP != "none" || rep.Policy.Testing != "n" || rep.Policy.Pct != -1 ||
		r.SourceIP != "192.0.2.10" || r.Count != 4 || r.EnvelopeTo != "partner.example" || r.EnvelopeFrom != "example.test" ||
		len(r.DKIMResults) != 1 || r.DKIMResults[0].Selector != "rsa2026" || r.SPFResults[0].Scope != "mfrom" ||
		!rep.Begin.Equal(fixtureDay) || rep.Org != "mx.partner.example" || rep.ID != "r-42" {
		t.Errorf("parsed %+v", rep)
	}
}

const okReport = `<?xml version="1.0"?>
<feedback><report_metadata><org_name>o</org_name><report_id>%ID%</report_id><date_range><begin>1796083200</begin><end>1796169599</end></date_range></report_metadata>
<policy_published><domain>%DOMAIN%</domain><p>none</p></policy_published>
%RECORDS%
</feedback>`

const okRecord = `<record><row><source_ip>192.0.2.1</source_ip><count>1</count><policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row><identifiers><header_from>example.test</header_from></identifiers></record>`

func report(id, domain, records string) string {
	return strings.NewReplacer("%ID%", id, "%DOMAIN%", domain, "%RECORDS%", records).Replace(okReport)
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// Hostile and broken inputs are refused with an error that says why, and nothing of
// them is stored; the good report of the same import is.
func TestImportRefusesHostileInput(t *testing.T) {
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	w, _ := zw.Create("bomb.xml")
	w.Write([]byte(report("zbomb", "example.test", okRecord+strings.Repeat(" ", 64<<20))))
	zw.Close()
	latin1 := strings.Replace(report("latin1", "example.test", okRecord), `<?xml version="1.0"?>`, `<?xml version="1.0" encoding="ISO-8859-1"?>`, 1)
	latin1 = strings.Replace(latin1, "<org_name>o</org_name>", "<org_name>M\xfcnchen</org_name>", 1)
	if res := testImporter(t).ImportBytes("latin1", []byte(latin1)); res[0].Err != nil || res[0].Report.Org != "München" {
		t.Errorf("ISO-8859-1 report: %+v; want org München", res[0])
	}
	// A zip bomb: 64 MiB of white space inside a valid report compresses to ~64 KiB.
	bomb := gz(t, []byte(report("bomb", "example.test", okRecord+strings.Repeat(" ", 64<<20))))
	xxe := `<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` +
		strings.TrimPrefix(report("xxe", "example.test", okRecord), `<?xml version="1.0"?>`)
	xxe = strings.Replace(xxe, "<org_name>o</org_name>", "<org_name>&xxe;</org_name>", 1)
	entityOnly := strings.Replace(report("ent", "example.test", okRecord), "<org_name>o</org_name>", "<org_name>&xxe;</org_name>", 1)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"zip bomb", bomb, "decompressed is larger than 33554432 bytes"},
		{"zip bomb (zip)", zb.Bytes(), "decompressed is larger than 33554432 bytes"},
		{"unknown encoding", []byte(strings.Replace(report("enc", "example.test", okRecord), `version="1.0"`, `version="1.0" encoding="x-klingon"`, 1)), "unsupported encoding"},
		{"XXE", []byte(xxe), "DOCTYPE"},
		{"undeclared entity", []byte(entityOnly), "invalid character entity &xxe;"},
		{"domain not served", []byte(report("other", "other.example", strings.ReplaceAll(okRecord, "example.test", "other.example"))), "does not serve"},
		{"forged header_from", []byte(report("forged", "example.test", strings.Replace(okRecord, "<header_from>example.test", "<header_from>bank.example", 1))), "neither the policy domain"},
		{"date range backwards", []byte(strings.Replace(report("back", "example.test", okRecord), "<end>1796169599", "<end>1796000000", 1)), "before it begins"},
		{"future report", []byte(strings.NewReplacer("1796083200", "1900000000", "1796169599", "1900086399").Replace(report("future", "example.test", okRecord))), "future"},
		{"bad source_ip", []byte(report("ip", "example.test", strings.Replace(okRecord, "192.0.2.1", "not-an-ip", 1))), "not an IP address"},
		{"bad count", []byte(report("count", "example.test", strings.Replace(okRecord, "<count>1", "<count>-5", 1))), "count"},
		{"no records", []byte(report("empty", "example.test", "")), "no <record>"},
		{"not a report", []byte("<html><body>hi</body></html>"), "want <feedback>"},
		{"truncated", []byte(report("trunc", "example.test", okRecord))[:200], "XML"},
		{"garbage", []byte{0, 1, 2, 3}, "neither XML, gzip, zip"},
		{"message without report", []byte("From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n"), "no report attached"},
		{"too many records", []byte(report("rows", "example.test", strings.Repeat(okRecord, 11))), "more than 10 records"},
	}
	im := testImporter(t)
	im.Limits.MaxRecords = 10
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := im.ImportBytes(tc.name, tc.data)
			if len(res) != 1 || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), tc.want) {
				t.Fatalf("results %+v; want one error containing %q", res, tc.want)
			}
			if res[0].Report != nil {
				t.Errorf("a refused input has a report: %+v", res[0].Report)
			}
		})
	}
	if tot, err := im.Store.Totals(); err != nil || tot.Reports != 0 {
		t.Fatalf("after the refusals the store holds %d reports (%v); want none", tot.Reports, err)
	}
	// The store still takes a good report.
	if res := im.ImportBytes("good", []byte(report("good", "example.test", okRecord))); res[0].Err != nil || res[0].Duplicate {
		t.Fatalf("good report: %+v", res)
	}
	if tot, _ := im.Store.Totals(); tot.Reports != 1 {
		t.Errorf("store holds %d reports, want 1", tot.Reports)
	}
}

// A 100 MB report file is refused while reading, before it is parsed or decompressed:
// only the first MaxInputBytes+1 bytes are read.
func TestImportRefuses100MBFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.xml")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(report("huge", "example.test", okRecord)[:300])
	chunk := bytes.Repeat([]byte(okRecord+"\n"), 1<<10)
	for written := int64(0); written < 100<<20; written += int64(len(chunk)) {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	im := testImporter(t)
	res := im.ImportPath(p)
	var tl *errTooLarge
	if len(res) != 1 || !errors.As(res[0].Err, &tl) || !strings.Contains(res[0].Err.Error(), "larger than 10485760 bytes") {
		t.Fatalf("results %+v; want larger than 10485760 bytes", res)
	}
	if _, err := os.Stat(im.Store.Path); !os.IsNotExist(err) {
		t.Errorf("the database was created for a refused file: %v", err)
	}
}

// One bad file does not stop the others of an import.
func TestImportContinuesAfterBadFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.xml")
	os.WriteFile(bad, []byte("<feedback><oops"), 0o600)
	im := testImporter(t)
	var errs, ok int
	for _, p := range []string{bad, "testdata/yahoo.zip", filepath.Join(dir, "missing.xml")} {
		for _, r := range im.ImportPath(p) {
			if r.Err != nil {
				errs++
			} else {
				ok++
			}
		}
	}
	if errs != 2 || ok != 1 {
		t.Errorf("%d errors, %d imported; want 2, 1", errs, ok)
	}
	if res := im.ImportPath(dir); len(res) != 1 || !errors.Is(res[0].Err, errNotMaildir) {
		t.Errorf("plain directory: %+v; want errNotMaildir", res)
	}
}
