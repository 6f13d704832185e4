package main

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// A logWriter passes the relay's log to w in batches. Every message it
// takes in and every delivery is a line, and at hundreds of messages a
// second a system call per line was a measurable part of the relay's CPU.
// A line waits at most logDelay for others to join it; a warning or an
// error is written at once, with whatever waits before it, so the lines
// that explain a failure are out before anything else can go wrong. Flush
// writes what waits; the commands call it on their way out.
//
// Lines stay whole and in order. A write to w that fails is not retried:
// the log is not mail, and it must never hold the relay up.
type logWriter struct {
	mu      sync.Mutex
	w       io.Writer
	buf     []byte
	timer   *time.Timer
	waiting bool // the timer will flush
}

const (
	logDelay = 50 * time.Millisecond
	logBatch = 32 << 10 // a batch this large is written without waiting
)

func newLogWriter(w io.Writer) *logWriter { return &logWriter{w: w} }

// Write takes one record (slog's handlers write each in one call).
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if len(l.buf) >= logBatch || urgent(p) {
		l.flushLocked()
		return len(p), nil
	}
	if !l.waiting {
		l.waiting = true
		if l.timer == nil {
			l.timer = time.AfterFunc(logDelay, l.Flush)
		} else {
			l.timer.Reset(logDelay)
		}
	}
	return len(p), nil
}

// Flush writes every line taken so far.
func (l *logWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

func (l *logWriter) flushLocked() {
	if l.waiting {
		l.timer.Stop()
		l.waiting = false
	}
	if len(l.buf) == 0 {
		return
	}
	l.w.Write(l.buf)
	if cap(l.buf) > 4*logBatch {
		l.buf = nil // after a burst, give the memory back
	} else {
		l.buf = l.buf[:0]
	}
}

// urgent reports whether a record from slog's text or JSON handler is a
// warning or an error. Both put the level after the time, at the start.
func urgent(p []byte) bool {
	p = p[:min(len(p), 80)]
	for _, lv := range urgentLevels {
		if bytes.Contains(p, lv) {
			return true
		}
	}
	return false
}

var urgentLevels = [][]byte{[]byte(" level=WARN"), []byte(" level=ERROR"), []byte(`"level":"WARN"`), []byte(`"level":"ERROR"`)}
