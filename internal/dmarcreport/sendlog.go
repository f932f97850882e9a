package dmarcreport

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"sealgate/internal/atomicfile"
)

// Send is one delivered message to one recipient domain, as the relay reports it.
type Send struct {
	Time time.Time
	// SourceIP is our address on the delivering connection: what the receiver reports
	// as source_ip.
	SourceIP string
	// HeaderFrom is the domain of the message's From.
	HeaderFrom string
	// DKIM lists our signatures as "d=DOMAIN s=SELECTOR".
	DKIM       []string
	RcptDomain string
}

// SendEntry is one line of a day's send log: how many messages went out with one
// combination of source IP, header From domain, signatures and recipient domain.
type SendEntry struct {
	SourceIP   string   `json:"source_ip"`
	HeaderFrom string   `json:"header_from"`
	DKIM       []string `json:"dkim,omitempty"`
	RcptDomain string   `json:"rcpt_domain"`
	Count      int64    `json:"count"`
}

// sendDay is the file of one UTC day: DIR/YYYY-MM-DD.json.
type sendDay struct {
	Day     string      `json:"day"`
	Entries []SendEntry `json:"entries"`
}

func (e SendEntry) key() string {
	return e.SourceIP + "|" + e.HeaderFrom + "|" + strings.Join(e.DKIM, ",") + "|" + e.RcptDomain
}

// SendLog counts deliveries in memory and adds them to the day files at each Flush. One
// process writes a directory (the relay's, whose spool lock it holds); readers see whole
// files only (atomicfile).
type SendLog struct {
	dir     string
	mu      sync.Mutex
	pending map[string]map[string]*SendEntry // day -> key -> entry
}

// NewSendLog returns a send log writing to dir (created at the first Flush).
func NewSendLog(dir string) *SendLog {
	return &SendLog{dir: dir, pending: map[string]map[string]*SendEntry{}}
}

// Record counts s.
func (l *SendLog) Record(s Send) {
	dkim := slices.Clone(s.DKIM)
	slices.Sort(dkim)
	ip := s.SourceIP
	if a, err := netip.ParseAddr(ip); err == nil {
		ip = a.Unmap().String() // the form report rows are compared in
	}
	e := SendEntry{SourceIP: ip, HeaderFrom: strings.ToLower(s.HeaderFrom), DKIM: dkim,
		RcptDomain: strings.ToLower(s.RcptDomain), Count: 1}
	day := s.Time.UTC().Format(time.DateOnly)
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.pending[day]
	if m == nil {
		m = map[string]*SendEntry{}
		l.pending[day] = m
	}
	if old := m[e.key()]; old != nil {
		old.Count++
		return
	}
	m[e.key()] = &e
}

// Flush adds the counts recorded since the last Flush to their day files. Counts of a
// day whose file cannot be written stay pending for the next Flush.
func (l *SendLog) Flush() error {
	l.mu.Lock()
	pending := l.pending
	l.pending = map[string]map[string]*SendEntry{}
	l.mu.Unlock()
	var errs []error
	for day, m := range pending {
		if err := l.flushDay(day, m); err != nil {
			errs = append(errs, err)
			l.mu.Lock()
			for k, e := range m {
				if cur := l.pending[day]; cur == nil {
					l.pending[day] = map[string]*SendEntry{k: e}
				} else if old := cur[k]; old != nil {
					old.Count += e.Count
				} else {
					cur[k] = e
				}
			}
			l.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

func (l *SendLog) flushDay(day string, m map[string]*SendEntry) error {
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return fmt.Errorf("dmarcreport: send log: %w", err)
	}
	p := filepath.Join(l.dir, day+".json")
	d, err := readDay(p)
	if err != nil {
		return err
	}
	index := map[string]int{}
	for i, e := range d.Entries {
		index[e.key()] = i
	}
	for k, e := range m {
		if i, ok := index[k]; ok {
			d.Entries[i].Count += e.Count
		} else {
			d.Entries = append(d.Entries, *e)
		}
	}
	slices.SortFunc(d.Entries, func(a, b SendEntry) int { return cmp.Compare(a.key(), b.key()) })
	d.Day = day
	js, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(p, append(js, '\n'), 0o600); err != nil {
		return fmt.Errorf("dmarcreport: send log: %w", err)
	}
	return nil
}

func readDay(p string) (sendDay, error) {
	var d sendDay
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("dmarcreport: send log: %w", err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("dmarcreport: send log %s: %w", p, err)
	}
	return d, nil
}

// ReadSendLog returns the entries of the UTC days from from to to (inclusive), as a map
// from day (YYYY-MM-DD) to entries. Missing days are empty.
func ReadSendLog(dir string, from, to time.Time) (map[string][]SendEntry, error) {
	out := map[string][]SendEntry{}
	first := from.UTC().Truncate(24 * time.Hour)
	for day := first; !day.After(to.UTC()); day = day.Add(24 * time.Hour) {
		name := day.Format(time.DateOnly)
		d, err := readDay(filepath.Join(dir, name+".json"))
		if err != nil {
			return nil, err
		}
		if len(d.Entries) > 0 {
			out[name] = d.Entries
		}
	}
	return out, nil
}

// PruneSendLog removes the day files of dir older than before's day, and returns how many
// it removed.
func PruneSendLog(dir string, before time.Time) (int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("dmarcreport: send log: %w", err)
	}
	cut := before.UTC().Format(time.DateOnly)
	n := 0
	for _, e := range ents {
		day, ok := strings.CutSuffix(e.Name(), ".json")
		if _, err := time.Parse(time.DateOnly, day); !ok || err != nil || day >= cut {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return n, fmt.Errorf("dmarcreport: send log: %w", err)
		}
		n++
	}
	return n, nil
}
