package storage

import (
	"context"
	"time"
)

// Checkpoints.
//
// In WAL mode a commit appends pages to the WAL; a checkpoint copies them
// back into the database file and syncs it. SQLite's automatic checkpoint
// runs inside the commit that crosses 1,000 WAL pages, so every fiftieth
// group commit or so took several times as long as the others, and every
// session waiting on it waited that long for its 250. The writer's
// connection therefore never checkpoints (wal_autocheckpoint=0); this
// goroutine does, on a reading connection, in PASSIVE mode, which never
// blocks the writer or a reader. It runs only after commits, at most every
// checkpointGap: an idle relay does nothing.

// checkpointGap is the least time between two checkpoints. Under full load
// the WAL grows by a few megabytes in that time.
const checkpointGap = 250 * time.Millisecond

func (s *Store) checkpointer() {
	defer close(s.checkpointDone)
	for {
		select {
		case <-s.w.quit:
			return
		case <-s.w.checkpoint:
		}
		// A failed checkpoint is tried again after the next commit; the
		// WAL keeps every page safe meanwhile.
		s.db.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)")
		t := time.NewTimer(checkpointGap)
		select {
		case <-s.w.quit:
			t.Stop()
			return
		case <-t.C:
		}
	}
}
