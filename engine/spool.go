package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// errSpool marks a failure to keep incoming data (usually a full disk).
var errSpool = errors.New("spool")

// spool holds a message while it is received: in memory up to a limit,
// then in a temporary file, so that many large messages arriving at once do
// not exhaust memory. Nothing is kept after Close.
type spool struct {
	dir   string
	limit int
	mem   bytes.Buffer
	file  *os.File
}

func newSpool(dir string, limit int) *spool {
	sp := &spool{dir: dir, limit: limit}
	if b, ok := spoolBuffers.Get().(*bytes.Buffer); ok {
		sp.mem = *b
	}
	return sp
}

// spoolBuffers keeps the memory of finished spools for the next message:
// growing a buffer to a message's size, message after message, was a
// fifth of what intake allocated at 100 KiB. Only buffers up to
// spoolKeep are kept, so an idle relay holds little.
var spoolBuffers sync.Pool

const spoolKeep = 256 << 10

func (s *spool) Write(p []byte) (int, error) {
	if s.file == nil && s.mem.Len()+len(p) > s.limit {
		f, err := os.CreateTemp(s.dir, "postroom-spool-*")
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errSpool, err)
		}
		s.file = f
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			return 0, fmt.Errorf("%w: %w", errSpool, err)
		}
		s.mem = bytes.Buffer{}
	}
	if s.file != nil {
		n, err := s.file.Write(p)
		if err != nil {
			err = fmt.Errorf("%w: %w", errSpool, err)
		}
		return n, err
	}
	return s.mem.Write(p)
}

// Reader returns the spooled bytes from the start.
func (s *spool) Reader() (io.Reader, error) {
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return s.file, nil
}

// inMemory returns the spooled bytes when they are all in memory. They
// belong to the spool: valid until Close.
func (s *spool) inMemory() ([]byte, bool) {
	if s.file != nil {
		return nil, false
	}
	return s.mem.Bytes(), true
}

// Close removes the temporary file, if any. Nothing read from the spool
// may be used after it.
func (s *spool) Close() error {
	if s.file == nil {
		if c := s.mem.Cap(); c > 0 && c <= spoolKeep {
			b := s.mem
			b.Reset()
			spoolBuffers.Put(&b)
		}
		s.mem = bytes.Buffer{}
		return nil
	}
	name := s.file.Name()
	s.file.Close()
	return os.Remove(name)
}
