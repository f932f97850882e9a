package dmarcreport

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"sealgate/internal/addr"
)

// Store is the reports database: one bbolt file (DIR/dmarc/reports.db). bbolt locks its
// file for one process at a time, so a Store opens it for each operation only, waiting up
// to Timeout for the lock: `sealgate dmarc import` and a scrape of the running relay's
// metrics take turns instead of failing.
type Store struct {
	// Path is the database file.
	Path string
	// Timeout is how long an operation waits for another process's lock (default 5s).
	Timeout time.Duration
	// Limits.MaxReports caps what is stored.
	Limits Limits
}

// Buckets of the database.
var (
	bucketReports = []byte("reports") // org \x00 report id -> Report as JSON
	bucketTotals  = []byte("totals")  // counter name -> uint64, big-endian
)

// Totals are the store's counters since it was created, for the metrics.
type Totals struct {
	Reports int64
	// Rows and Messages count records and their messages by DMARC result (pass, fail).
	Rows     map[string]int64
	Messages map[string]int64
}

// ErrDuplicate is returned by Add for a report already stored: same org_name and
// report_id (RFC 7489 §7.2.1.1).
var ErrDuplicate = errors.New("already imported (same org_name and report_id)")

func (s *Store) open(readOnly bool) (*bolt.DB, error) {
	if !readOnly {
		if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
			return nil, fmt.Errorf("dmarcreport: create %s: %w", filepath.Dir(s.Path), err)
		}
	}
	t := s.Timeout
	if t <= 0 {
		t = 5 * time.Second
	}
	db, err := bolt.Open(s.Path, 0o600, &bolt.Options{Timeout: t, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("dmarcreport: open %s: %w", s.Path, err)
	}
	return db, nil
}

func reportKey(org, id string) []byte { return []byte(org + "\x00" + id) }

// Add stores r unless a report with its org and id is there (ErrDuplicate) or the store
// is full; the totals count it.
func (s *Store) Add(r *Report) error {
	js, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("dmarcreport: encode report: %w", err)
	}
	db, err := s.open(false)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketReports)
		if err != nil {
			return err
		}
		tb, err := tx.CreateBucketIfNotExists(bucketTotals)
		if err != nil {
			return err
		}
		k := reportKey(r.Org, r.ID)
		if b.Get(k) != nil {
			return ErrDuplicate
		}
		if n := b.Stats().KeyN; n >= s.Limits.maxReports() {
			return fmt.Errorf("the store holds %d reports, its limit (max_reports): prune old ones first", n)
		}
		if err := b.Put(k, js); err != nil {
			return err
		}
		add(tb, "reports", 1)
		for _, rec := range r.Records {
			res := resultOf(rec)
			add(tb, "rows:"+res, 1)
			add(tb, "messages:"+res, rec.Count)
		}
		return nil
	})
}

func resultOf(r Record) string {
	if r.Pass() {
		return "pass"
	}
	return "fail"
}

func add(b *bolt.Bucket, name string, n int64) {
	var v uint64
	if old := b.Get([]byte(name)); len(old) == 8 {
		v = binary.BigEndian.Uint64(old)
	}
	b.Put([]byte(name), binary.BigEndian.AppendUint64(nil, v+uint64(n)))
}

// view runs fn on the database read-only; a database not yet created is empty (fn is
// not called).
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if _, err := os.Stat(s.Path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	db, err := s.open(true)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(fn)
}

// Reports returns the reports whose policy domain is d or under it and whose date range
// ends at or after since.
func (s *Store) Reports(d addr.Domain, since time.Time) ([]Report, error) {
	var out []Report
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReports)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r Report
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("report %q: %w", k, err)
			}
			pd := addr.Domain(r.Policy.Domain)
			if (pd == d || pd.IsSubdomainOf(d)) && !r.End.Before(since) {
				out = append(out, r)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("dmarcreport: read %s: %w", s.Path, err)
	}
	return out, nil
}

// Totals reads the counters.
func (s *Store) Totals() (Totals, error) {
	t := Totals{Rows: map[string]int64{"pass": 0, "fail": 0}, Messages: map[string]int64{"pass": 0, "fail": 0}}
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTotals)
		if b == nil {
			return nil
		}
		get := func(name string) int64 {
			if v := b.Get([]byte(name)); len(v) == 8 {
				return int64(binary.BigEndian.Uint64(v))
			}
			return 0
		}
		t.Reports = get("reports")
		for _, res := range []string{"pass", "fail"} {
			t.Rows[res], t.Messages[res] = get("rows:"+res), get("messages:"+res)
		}
		return nil
	})
	if err != nil {
		return t, fmt.Errorf("dmarcreport: read %s: %w", s.Path, err)
	}
	return t, nil
}

// Prune removes the reports whose date range ended before before, and returns how many
// it removed. The totals keep counting them: they are what was ingested.
func (s *Store) Prune(before time.Time) (int, error) {
	if _, err := os.Stat(s.Path); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	db, err := s.open(false)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	n := 0
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReports)
		if b == nil {
			return nil
		}
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var r struct {
				End time.Time `json:"end"`
			}
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("report %q: %w", k, err)
			}
			if r.End.Before(before) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("dmarcreport: prune %s: %w", s.Path, err)
	}
	return n, nil
}
