package storage

import (
	"errors"
	"fmt"
	"os"
)

// ErrInUse is LockRun's answer when another process serves the queue.
var ErrInUse = errors.New("another running Postroom serves this queue")

// LockRun takes the queue's run lock, held by the one process that
// accepts and delivers its mail (`postroom serve` or the desktop app).
// A second one would take over the first one's deliveries in flight and
// send them twice. Commands that only read or change the queue (`postroom
// queue ...`) need no lock. The operating system drops the lock when the
// process ends, however it ends.
func (s *Store) LockRun() (unlock func(), err error) {
	path := s.path + ".run"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the run lock %s: %w", path, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w (stop it first; two relays on one queue would send mail twice)", s.path, ErrInUse)
	}
	return func() {
		unlockFile(f)
		f.Close()
	}, nil
}
