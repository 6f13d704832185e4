//go:build unix

package storage

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkClaimAndRecord20 is the scheduler's side of a busy relay: a
// claim of 20 due messages, then their results recorded together. Besides
// the time, it reports the process's CPU per message (cpu-µs/msg), which
// is what the statements cost: the time is mostly the two fsyncs.
func BenchmarkClaimAndRecord20(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	now := time.Now()
	m := &NewMessage{Sender: "a@example.com", Recipients: []string{"b@example.net"}, ReceivedAt: now}
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		var wg sync.WaitGroup // together, as twenty sessions do: a few commits
		for range 20 {
			wg.Go(func() {
				if _, err := s.Enqueue(ctx, m, strings.NewReader(body4K)); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		c0 := cpuTime()
		b.StartTimer()
		due, err := s.ClaimDue(ctx, now, 20, time.Hour)
		if err != nil || len(due) != 20 {
			b.Fatalf("claimed %d: %v", len(due), err)
		}
		results := make([]Result, len(due))
		for i, d := range due {
			results[i] = Result{RecipientID: d.RecipientID, State: Sent, At: now, Host: "mx.example.net", Code: 250, Text: "2.0.0 ok"}
		}
		if err := s.RecordResults(ctx, results); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += cpuTime() - c0
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*20), "cpu-µs/msg")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
