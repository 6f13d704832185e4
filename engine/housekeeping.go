package engine

import (
	"context"
	"os"
	"path/filepath"
	"time"
)

// housekeepEvery is how often finished mail past delivery.keep_finished is
// removed.
const housekeepEvery = time.Hour

// housekeep removes, now and then, what the queue no longer needs: mail
// that ended longer ago than delivery.keep_finished (with its attempts and
// the old per-minute counters), so that the database does not grow for
// ever on an office PC's disk.
func (e *Engine) housekeep(ctx context.Context) {
	t := time.NewTimer(time.Minute) // not in the rush of a start
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.purgeFinished(ctx)
		t.Reset(housekeepEvery)
	}
}

func (e *Engine) purgeFinished(ctx context.Context) {
	keep := e.Settings().Delivery.KeepFinished.Std()
	if keep <= 0 {
		return
	}
	n, err := e.store.PurgeFinished(ctx, e.now().Add(-keep))
	switch {
	case err != nil && ctx.Err() == nil:
		e.log.Error("removing finished mail", "err", err)
	case n > 0:
		e.log.Info("finished mail removed from the queue", "messages", n, "ended_before", keep.String()+" ago")
	}
}

// removeStaleSpool removes spool files that a killed process left behind
// (a live session's file is never older than the idle and DATA limits
// allow).
func (e *Engine) removeStaleSpool() {
	files, _ := filepath.Glob(filepath.Join(e.opts.SpoolDir, "postroom-spool-*"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && time.Since(fi.ModTime()) > time.Hour {
			if os.Remove(f) == nil {
				e.log.Info("removed a spool file left by an earlier crash", "file", f)
			}
		}
	}
}
