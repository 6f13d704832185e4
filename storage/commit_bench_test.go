package storage

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// The storage hot paths under load (make bench). Each reports what one
// message costs; the parallel ones show what group commit buys when many
// sessions end their DATA at once.

var body4K = strings.Repeat("x", 4094) + "\r\n"

// BenchmarkEnqueue4KParallel is the intake under load: twenty sessions at
// a time (on a 2-core machine; -cpu raises it), each waiting for its
// message to be on disk.
func BenchmarkEnqueue4KParallel(b *testing.B) {
	s := openTest(b)
	b.SetParallelism(10)
	b.RunParallel(func(pb *testing.PB) {
		m := &NewMessage{Sender: "a@example.com", Recipients: []string{"b@example.net"}, ReceivedAt: time.Now()}
		for pb.Next() {
			if _, err := s.Enqueue(context.Background(), m, strings.NewReader(body4K)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkDeliveryCycle is what the scheduler asks of the store for one
// 4 KiB message: claim it, read its body, record that it was sent. The
// message's intake is outside the timing.
func BenchmarkDeliveryCycle(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	now := time.Now()
	m := &NewMessage{Sender: "a@example.com", Recipients: []string{"b@example.net"}, ReceivedAt: now}
	for b.Loop() {
		b.StopTimer()
		if _, err := s.Enqueue(ctx, m, strings.NewReader(body4K)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		due, err := s.ClaimDue(ctx, now, 1, time.Hour)
		if err != nil || len(due) != 1 {
			b.Fatalf("claimed %d: %v", len(due), err)
		}
		r, err := s.OpenBody(ctx, due[0].MessageID)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, r); err != nil || n != int64(len(body4K)) {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		r.Close()
		if err := s.SetDKIM(ctx, due[0].MessageID, ""); err != nil {
			b.Fatal(err)
		}
		err = s.RecordResults(ctx, []Result{{RecipientID: due[0].RecipientID, State: Sent, At: now, Code: 250, Text: "ok"}})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordResultsParallel is twenty delivery workers recording
// their outcomes at once.
func BenchmarkRecordResultsParallel(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	now := time.Now()
	id := enqueue(b, s, "a@example.com", body4K, "b@example.net")
	rcpts, err := s.Recipients(ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	rid := rcpts[0].ID
	b.SetParallelism(10)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			err := s.RecordResults(ctx, []Result{{RecipientID: rid, State: Deferred, NextAttempt: now, At: now, Code: 421, Text: "try later"}})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
