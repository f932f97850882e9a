package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"sealgate/internal/config"
	"sealgate/internal/dmarcreport"
	"sealgate/internal/metrics"
	"sealgate/relay"
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
