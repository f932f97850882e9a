package relay

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSpoolRemove measures Remove, the end of a delivered message's life in
// the spool, called as the Runner calls it: from DefaultWorkers goroutines at
// once. "durable" is Remove; "nosync" is what Remove did before it waited for a
// sync (the done record appended, or the files unlinked, and nothing synced),
// for comparison. "alone": nothing else happens, so each batch of removals pays
// for its own sync; "intake": four committers run meanwhile, as under load, and
// the removals share their syncs. Alone only (under intake the commits' costs
// dominate): syncs/op counts the fdatasyncs and directory fsyncs per removal,
// cpu-us/op the process's user and system CPU time per removal.
//
//	go test ./relay -run '^$' -bench SpoolRemove -benchtime 200x
func BenchmarkSpoolRemove(b *testing.B) {
	body := strings.Repeat("a line of a typical message body, about sixty bytes long\r\n", 40)
	for _, store := range []struct {
		name       string
		journalMax int64
	}{{"journal", DefaultJournalMaxBody}, {"file", -1}} {
		for _, mode := range []string{"durable", "nosync"} {
			for _, intake := range []bool{false, true} {
				name := store.name + "/" + mode + "/alone"
				if intake {
					name = store.name + "/" + mode + "/intake"
				}
				b.Run(name, func(b *testing.B) {
					s, err := openSpool(b.TempDir(), SpoolOptions{Logger: quietLogger(), JournalMaxBody: store.journalMax})
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					commitOne := func() (string, error) {
						in, err := s.Create()
						if err != nil {
							return "", err
						}
						defer in.Abort()
						if _, err := in.Write([]byte(body)); err != nil {
							return "", err
						}
						return in.Commit(&Envelope{From: "a@x.test", To: []string{"b@y.test"}}, []byte(testHeader))
					}
					work := make(chan string, b.N)
					for range b.N {
						id, err := commitOne()
						if err != nil {
							b.Fatal(err)
						}
						work <- id
					}
					close(work)

					stop := make(chan struct{})
					var committers sync.WaitGroup
					if intake {
						for range 4 {
							committers.Add(1)
							go func() {
								defer committers.Done()
								for {
									select {
									case <-stop:
										return
									default:
									}
									if _, err := commitOne(); err != nil {
										b.Error(err)
										return
									}
								}
							}()
						}
					}
					remove := s.Remove
					if mode == "nosync" {
						remove = s.removeWithoutSync
					}
					syncs, cpu := s.syncsStarted(), cpuTime()
					b.ResetTimer()
					var workers sync.WaitGroup
					for range DefaultWorkers {
						workers.Add(1)
						go func() {
							defer workers.Done()
							for id := range work {
								if err := remove(id); err != nil {
									b.Error(err)
								}
							}
						}()
					}
					workers.Wait()
					b.StopTimer()
					syncs, cpu = s.syncsStarted()-syncs, cpuTime()-cpu
					close(stop)
					committers.Wait()
					if !intake {
						b.ReportMetric(float64(syncs)/float64(b.N), "syncs/op")
						b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
					}
				})
			}
		}
	}
}

// removeWithoutSync is Remove as it was before removal was made durable.
func (s *Spool) removeWithoutSync(id string) error {
	if _, ok := s.journal.lookup(id); ok {
		return s.journal.done(id)
	}
	for _, ext := range []string{extMsg, extEnv} {
		if err := os.Remove(s.path(dirMsg, id, ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// cpuTime returns the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// syncsStarted counts the syncs started so far by the spool's group syncs (the
// journal's live segments and the msg/ and failed/ directories).
func (s *Spool) syncsStarted() uint64 {
	n := uint64(0)
	count := func(g *groupSync) {
		g.mu.Lock()
		n += g.started
		g.mu.Unlock()
	}
	count(s.msgDir)
	count(s.fail)
	s.journal.mu.Lock()
	segs := s.journal.segs
	s.journal.mu.Unlock()
	for _, seg := range segs {
		count(&seg.sync)
	}
	return n
}
