package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"sealgate/internal/config"
	"sealgate/internal/dmarcreport"
	"sealgate/internal/metrics"
	"sealgate/relay"
	"sealgate/submit"
)

// What serve does for DMARC reports: keep the send log of what it delivered, and export
// the report store's totals on the admin listener.

func dmarcStorePath(dir string) string { return filepath.Join(dir, "dmarc", "reports.db") }
func sendLogDir(dir string) string     { return filepath.Join(dir, "sendlog") }

// startSendLog returns the send log of cfg.Dir, flushed every dmarc_reports.send_log_flush;
// stop flushes it a last time (call it once deliveries have ended).
func startSendLog(cfg *config.Config, log *slog.Logger) (l *dmarcreport.SendLog, stop func()) {
	l = dmarcreport.NewSendLog(sendLogDir(cfg.Dir))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.DMARCReports.SendLogFlush)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := l.Flush(); err != nil {
					log.Error("send log flush failed; counts kept for the next one", "err", err)
				}
			case <-done:
				return
			}
		}
	}()
	return l, func() {
		close(done)
		wg.Wait()
		if err := l.Flush(); err != nil {
			log.Error("send log flush at shutdown failed", "err", err)
		}
	}
}

// recordSends returns a relay.Runner.OnAttempt that counts each delivered message in l,
// then calls next (when not nil).
func recordSends(l *dmarcreport.SendLog, next func(relay.AttemptEvent)) func(relay.AttemptEvent) {
	return func(ev relay.AttemptEvent) {
		// Without a source address nothing went over the network (the outbox).
		if ev.Status == relay.StatusSent && ev.SourceIP != "" {
			sigs := make([]string, len(ev.DKIM))
			for i, s := range ev.DKIM {
				sigs[i] = fmt.Sprintf("d=%s s=%s", s.Domain, s.Selector)
			}
			l.Record(dmarcreport.Send{Time: time.Now(), SourceIP: ev.SourceIP, HeaderFrom: ev.HeaderFrom, DKIM: sigs, RcptDomain: ev.Domain})
		}
		if next != nil {
			next(ev)
		}
	}
}

// dmarcTotals reads the report store's totals for a scrape. The store is opened for the
// read only, waiting briefly if `dmarc import` holds it.
func dmarcTotals(cfg *config.Config) func() (metrics.DMARCTotals, error) {
	st := &dmarcreport.Store{Path: dmarcStorePath(cfg.Dir), Timeout: 500 * time.Millisecond}
	return func() (metrics.DMARCTotals, error) {
		t, err := st.Totals()
		return metrics.DMARCTotals{Reports: t.Reports, Rows: t.Rows, Messages: t.Messages}, err
	}
}

// reportIntake is the smart-host listeners' mailbox for DMARC reports
// (dmarc_reports.intake_addresses), nil when none is configured: what a receiver mails
// there goes through the same import as `sealgate dmarc import`.
func reportIntake(cfg *config.Config, log *slog.Logger) *submit.ReportIntake {
	boxes := cfg.DMARCReports.IntakeMailboxes()
	if len(boxes) == 0 {
		return nil
	}
	im := &dmarcreport.Importer{Store: dmarcStore(cfg), Domains: servedDomains(cfg), Limits: dmarcLimits(cfg)}
	var mu sync.Mutex // one import at a time: the store's lock is per open, even in one process
	return &submit.ReportIntake{Addresses: boxes, MaxBytes: cfg.DMARCReports.MaxInputBytes,
		Store: func(_ context.Context, msg []byte) error {
			mu.Lock()
			defer mu.Unlock()
			var refused []error
			taken := 0
			for _, r := range im.ImportBytes("message", msg) {
				switch {
				case r.Err != nil:
					refused = append(refused, r.Err)
					log.Warn("DMARC report refused", "err", r.Err)
				case r.Duplicate:
					taken++
					log.Info("DMARC report already stored", "org", r.Report.Org, "report_id", r.Report.ID)
				default:
					taken++
					log.Info("DMARC report imported", "org", r.Report.Org, "report_id", r.Report.ID,
						"domain", r.Report.Policy.Domain, "records", len(r.Report.Records))
				}
			}
			if taken == 0 {
				return errors.Join(refused...)
			}
			return nil // what was taken is stored; the refusals are logged
		}}
}
