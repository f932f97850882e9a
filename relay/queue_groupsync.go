package relay

// Grouped syncs: concurrent committers share one fsync of a directory (or one
// fdatasync of a journal segment) instead of paying one each. This is what
// makes the spool's commit cheap under load; the directory fsync itself is
// internal/atomicfile's.

import (
	"fmt"
	"sync"

	"sealgate/internal/atomicfile"
)

// groupSync group-commits a sync (of a directory or a journal segment): a caller
// needs a sync that started after its own write (one already running may have
// begun before it), so if one is running it waits for the next, and one sync
// serves every caller waiting when it starts.
type groupSync struct {
	do func() error

	mu        sync.Mutex
	cond      *sync.Cond
	running   bool
	started   uint64 // number of syncs started
	completed uint64 // number of syncs finished
	failedGen uint64 // number of the last sync that failed
	failedErr error
}

func newDirSync(path string) *groupSync {
	return &groupSync{do: func() error { return syncDir(path) }}
}

func (g *groupSync) sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	target := g.started + 1 // the first sync to start from now on covers our writes
	for g.completed < target {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := g.do()
		g.mu.Lock()
		g.running = false
		g.completed = gen
		if err != nil {
			g.failedGen, g.failedErr = gen, err
		}
		g.cond.Broadcast()
	}
	// Conservative: a failure in any sync since ours started may have lost our write.
	if g.failedGen >= target {
		return g.failedErr
	}
	return nil
}

func syncDir(p string) error {
	if err := atomicfile.SyncDir(p); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}
