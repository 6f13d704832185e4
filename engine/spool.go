package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
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

func newSpool(dir string, limit int) *spool { return &spool{dir: dir, limit: limit} }

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

// Close removes the temporary file, if any.
func (s *spool) Close() error {
	if s.file == nil {
		return nil
	}
	name := s.file.Name()
	s.file.Close()
	return os.Remove(name)
}
