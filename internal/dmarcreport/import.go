package dmarcreport

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"sealgate/internal/addr"
)

// Importer reads reports from files, messages and Maildirs into a Store.
type Importer struct {
	Store *Store
	// Domains are the domains we serve: a report about another domain (not one of them
	// nor under one) is refused.
	Domains []addr.Domain
	Limits  Limits
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Result is what became of one report, or of one input that held none.
type Result struct {
	// Source names the file, and the part of it, the report came from.
	Source string
	// Report is the report stored (or the duplicate found); nil when Err is set.
	Report *Report
	// Duplicate is set when the report was already stored: nothing changed.
	Duplicate bool
	// Err says why the input or report was refused; nothing of it was stored.
	Err error
}

// ImportPath imports the report(s) of a file, or of every message of a Maildir (cur/ and
// new/). Each refused input or report has its Result with Err; the others are stored.
func (im *Importer) ImportPath(path string) []Result {
	fi, err := os.Stat(path)
	if err != nil {
		return []Result{{Source: path, Err: err}}
	}
	if !fi.IsDir() {
		return im.importFile(path)
	}
	var files []string
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(path, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return []Result{{Source: path, Err: err}}
		}
		for _, e := range ents {
			// Maildir readers ignore names starting with a dot.
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(path, sub, e.Name()))
			}
		}
		if files == nil {
			files = []string{} // a Maildir, empty so far
		}
	}
	if files == nil {
		return []Result{{Source: path, Err: errNotMaildir}}
	}
	sort.Strings(files)
	var out []Result
	for _, f := range files {
		out = append(out, im.importFile(f)...)
	}
	return out
}

func (im *Importer) importFile(path string) []Result {
	f, err := os.Open(path)
	if err != nil {
		return []Result{{Source: path, Err: err}}
	}
	defer f.Close()
	data, err := readCapped(f, im.Limits.maxInput(), path)
	if err != nil {
		return []Result{{Source: path, Err: err}}
	}
	return im.ImportBytes(path, data)
}

// ImportBytes imports the report(s) in data (XML, gzip, zip or a message with them
// attached), source naming it in results.
func (im *Importer) ImportBytes(source string, data []byte) []Result {
	docs, err := extract(source, data, im.Limits, 0)
	if err != nil {
		return []Result{{Source: source, Err: err}}
	}
	now := time.Now()
	if im.Now != nil {
		now = im.Now()
	}
	var out []Result
	for _, d := range docs {
		res := Result{Source: d.source}
		rep, err := parseXML(d.data, im.Limits, now)
		if err == nil {
			err = im.served(rep)
		}
		if err != nil {
			res.Err = fmt.Errorf("%s: %w", d.source, err)
			out = append(out, res)
			continue
		}
		rep.Source = d.source
		res.Report = rep
		switch err := im.Store.Add(rep); {
		case errors.Is(err, ErrDuplicate):
			res.Duplicate = true
		case err != nil:
			res.Err, res.Report = err, nil
		}
		out = append(out, res)
	}
	return out
}

// served refuses a report about a domain we do not serve.
func (im *Importer) served(r *Report) error {
	pd := addr.Domain(r.Policy.Domain)
	for _, d := range im.Domains {
		if pd == d || pd.IsSubdomainOf(d) {
			return nil
		}
	}
	return fmt.Errorf("the report is about %s, a domain this relay does not serve (not in domains)", pd)
}
