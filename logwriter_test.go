package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// callWriter records each Write it is given.
type callWriter struct {
	mu    sync.Mutex
	calls []string
}

func (c *callWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, string(p))
	return len(p), nil
}

func (c *callWriter) get() (calls int, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls), strings.Join(c.calls, "")
}

func TestLogLinesLeaveInOneWrite(t *testing.T) {
	t.Parallel()
	var out callWriter
	lw := newLogWriter(&out)
	log := slog.New(slog.NewTextHandler(lw, nil))
	for i := range 100 {
		log.Info("message queued", "id", i)
	}
	lw.Flush()
	calls, text := out.get()
	if calls != 1 {
		t.Errorf("100 lines took %d writes, want 1", calls)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 100 {
		t.Fatalf("%d lines written, want 100", len(lines))
	}
	for i, l := range lines {
		if !strings.HasSuffix(l, fmt.Sprintf("msg=\"message queued\" id=%d", i)) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
}

func TestLogLineIsWrittenWithoutAFlush(t *testing.T) {
	t.Parallel()
	var out callWriter
	log := slog.New(slog.NewTextHandler(newLogWriter(&out), nil))
	log.Info("postroom started")
	// It waits for company, not for ever.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, text := out.get(); strings.Contains(text, "postroom started") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lone line was never written")
		}
	}
}

func TestLogWarningsAndErrorsAreWrittenAtOnce(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelWarn, slog.LevelError} {
		var out callWriter
		log := slog.New(slog.NewTextHandler(newLogWriter(&out), nil))
		log.Info("message queued", "id", 1)
		if calls, _ := out.get(); calls != 0 {
			t.Fatalf("an info line was written at once (%d writes)", calls)
		}
		log.Log(context.Background(), level, "disk full: message refused for now")
		calls, text := out.get()
		if calls != 1 || !strings.Contains(text, "message queued") || !strings.Contains(text, "disk full") ||
			strings.Index(text, "message queued") > strings.Index(text, "disk full") {
			t.Errorf("%v: after the line, %d writes: %q; want both lines, in order, in one write", level, calls, text)
		}
	}
}

func TestLogBurstIsWrittenInBoundedBatches(t *testing.T) {
	t.Parallel()
	var out callWriter
	lw := newLogWriter(&out)
	line := bytes.Repeat([]byte("x"), 1000)
	line[len(line)-1] = '\n'
	for range 100 {
		lw.Write(line)
	}
	calls, _ := out.get()
	if want := 100 * 1000 / logBatch; calls < want {
		t.Errorf("100 kB of lines made %d writes before a flush, want at least %d: a burst must not pile up", calls, want)
	}
	lw.Flush()
	if _, text := out.get(); len(text) != 100*1000 {
		t.Errorf("%d bytes written, want %d", len(text), 100*1000)
	}
}

func TestLogWriterKeepsConcurrentLinesWhole(t *testing.T) {
	t.Parallel()
	var out callWriter
	lw := newLogWriter(&out)
	log := slog.New(slog.NewTextHandler(lw, nil))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				log.Info("delivery", "worker", g, "n", i)
			}
		})
	}
	wg.Wait()
	lw.Flush()
	_, text := out.get()
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("%d lines, want 1600", len(lines))
	}
	next := map[string]int{}
	for _, l := range lines {
		i := strings.Index(l, "worker=")
		var g, n int
		if i < 0 {
			t.Fatalf("broken line %q", l)
		}
		if _, err := fmt.Sscanf(l[i:], "worker=%d n=%d", &g, &n); err != nil {
			t.Fatalf("broken line %q: %v", l, err)
		}
		if w := fmt.Sprint(g); n != next[w] {
			t.Fatalf("worker %d: line %d came after %d", g, n, next[w]-1)
		}
		next[fmt.Sprint(g)] = n + 1
	}
}
