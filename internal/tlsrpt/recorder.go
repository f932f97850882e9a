package tlsrpt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"sealgate/internal/atomicfile"
)

// Limits of one day's counts.
const (
	MaxPoliciesPerDay    = 10000
	MaxFailuresPerPolicy = 100
)

// DayFormat is how days are named: the file DIR/YYYY-MM-DD.json, and the report command's --day.
const DayFormat = "2006-01-02"

// Day is the counts of one UTC day, as kept in its file.
type Day struct {
	Date     string          `json:"date"` // YYYY-MM-DD
	Policies []*PolicyCounts `json:"policies"`
}

// PolicyCounts is what one policy of one domain met in a day.
type PolicyCounts struct {
	Policy    Policy `json:"policy"`
	Successes int64  `json:"successes"`
	// Failed counts every failed session; Failures breaks them down (at most
	// MaxFailuresPerPolicy details: the rest only in Failed).
	Failed   int64           `json:"failed"`
	Failures []*FailureCount `json:"failures,omitempty"`
}

// FailureCount is how many sessions failed with one Failure.
type FailureCount struct {
	Failure
	Count int64 `json:"count"`
}

func (d *Day) policy(p Policy) *PolicyCounts {
	k := p.key()
	for _, pc := range d.Policies {
		if pc.Policy.key() == k {
			return pc
		}
	}
	if len(d.Policies) >= MaxPoliciesPerDay {
		return nil
	}
	pc := &PolicyCounts{Policy: p}
	d.Policies = append(d.Policies, pc)
	return pc
}

// add adds the counts of o to d.
func (d *Day) add(o *Day) {
	for _, opc := range o.Policies {
		pc := d.policy(opc.Policy)
		if pc == nil {
			continue
		}
		pc.Successes += opc.Successes
		pc.Failed += opc.Failed
		for _, of := range opc.Failures {
			pc.addFailure(of.Failure, of.Count)
		}
	}
}

func (pc *PolicyCounts) addFailure(f Failure, n int64) {
	k := f.key()
	for _, fc := range pc.Failures {
		if fc.key() == k {
			fc.Count += n
			return
		}
	}
	if len(pc.Failures) < MaxFailuresPerPolicy {
		pc.Failures = append(pc.Failures, &FailureCount{Failure: f, Count: n})
	}
}

// Recorder counts Sessions per day and adds them to the day files in its directory at Flush.
// Safe for concurrent use; one Recorder per directory (several would each add their counts,
// but a Flush of one can be lost to another's).
type Recorder struct {
	dir    string
	logger *slog.Logger

	mu      sync.Mutex
	pending map[string]*Day // by date, since the last Flush
	index   map[string]map[string]*PolicyCounts
}

// Open returns a Recorder keeping its files in dir (created with mode 0700 if missing).
func Open(dir string, logger *slog.Logger) (*Recorder, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsrpt: state directory: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Recorder{dir: dir, logger: logger, pending: map[string]*Day{}, index: map[string]map[string]*PolicyCounts{}}, nil
}

// Record counts s.
func (r *Recorder) Record(s Session) {
	if r == nil {
		return
	}
	t := s.Time
	if t.IsZero() {
		t = time.Now()
	}
	date := t.UTC().Format(DayFormat)
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.pending[date]
	if d == nil {
		d = &Day{Date: date}
		r.pending[date] = d
		r.index[date] = map[string]*PolicyCounts{}
	}
	k := s.Policy.key()
	pc := r.index[date][k]
	if pc == nil {
		if pc = d.policy(s.Policy); pc == nil {
			return
		}
		r.index[date][k] = pc
	}
	if s.Failure == nil {
		pc.Successes++
		return
	}
	f := *s.Failure
	if len(f.AdditionalInfo) > MaxAdditionalInfo {
		f.AdditionalInfo = f.AdditionalInfo[:MaxAdditionalInfo]
	}
	pc.Failed++
	pc.addFailure(f, 1)
}

// Flush adds what was recorded since the last Flush to the day files. What could not be
// written stays pending for the next Flush; the error names the file.
func (r *Recorder) Flush() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	pending := r.pending
	r.pending, r.index = map[string]*Day{}, map[string]map[string]*PolicyCounts{}
	r.mu.Unlock()
	var errs []error
	dates := make([]string, 0, len(pending))
	for date := range pending {
		dates = append(dates, date)
	}
	sort.Strings(dates)
	for _, date := range dates {
		if err := r.flushDay(pending[date]); err != nil {
			errs = append(errs, err)
			r.requeue(pending[date])
		}
	}
	return errors.Join(errs...)
}

// requeue puts d back into the pending counts after a failed Flush.
func (r *Recorder) requeue(d *Day) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.pending[d.Date]
	if cur == nil {
		cur = &Day{Date: d.Date}
		r.pending[d.Date] = cur
		r.index[d.Date] = map[string]*PolicyCounts{}
	}
	cur.add(d)
	for _, pc := range cur.Policies {
		r.index[d.Date][pc.Policy.key()] = pc
	}
}

func (r *Recorder) flushDay(d *Day) error {
	path := dayPath(r.dir, d.Date)
	total, err := readDayFile(path, d.Date)
	if err != nil {
		return err
	}
	total.add(d)
	data, err := json.MarshalIndent(total, "", " ")
	if err != nil {
		return fmt.Errorf("tlsrpt: %s: %w", path, err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("tlsrpt: %w", err)
	}
	return nil
}

// Run flushes every interval until ctx ends, then once more. Failures are logged.
func (r *Recorder) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := r.Flush(); err != nil {
				r.logger.Error("TLS reporting: counts not saved", "error", err)
			}
			return
		case <-t.C:
			if err := r.Flush(); err != nil {
				r.logger.Warn("TLS reporting: counts not saved (kept for the next try)", "error", err)
			}
		}
	}
}

func dayPath(dir, date string) string { return filepath.Join(dir, date+".json") }

// ReadDay reads the counts of day (YYYY-MM-DD) from dir; a day without a file has none.
func ReadDay(dir, day string) (*Day, error) {
	if _, err := time.Parse(DayFormat, day); err != nil {
		return nil, fmt.Errorf("tlsrpt: day %q: want YYYY-MM-DD", day)
	}
	return readDayFile(dayPath(dir, day), day)
}

func readDayFile(path, date string) (*Day, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Day{Date: date}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	var d Day
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("tlsrpt: %s is not a day's counts: %w", path, err)
	}
	if d.Date != date {
		return nil, fmt.Errorf("tlsrpt: %s holds the counts of %q, not %s", path, d.Date, date)
	}
	return &d, nil
}
