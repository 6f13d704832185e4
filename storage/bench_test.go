package storage

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
)

var queueSize = flag.Int("queue-size", 1_000_000, "recipients in the queue for BenchmarkLargeQueue")

// fillQueue inserts n recipients (10 per message, spread over 1,000
// domains and over the next day) with SQL alone, so that filling a million
// takes seconds rather than a million round trips. Sizes, arrival times,
// attempts and errors vary so that every sorted listing has real work.
func fillQueue(b *testing.B, s *Store, n int, now time.Time) {
	b.Helper()
	ctx := context.Background()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		msgs := (n + 9) / 10
		if _, err := tx.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
			INSERT INTO messages(id, sender, size, received_at, subject)
			SELECT i, 'sender' || (i % 100) || '@example.com', 1024 + (i * 7919) % 65536, ? - (? - i) * 1000,
				'Newsletter ' || ((i * 7919) % 1000) FROM seq`, msgs, ms(now), msgs); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ? - 1)
			INSERT INTO recipients(message_id, address, domain, state, next_attempt, updated_at, attempts, last_error)
			SELECT i / 10 + 1, 'user' || i || '@d' || (i % 1000) || '.example', 'd' || (i % 1000) || '.example',
				CASE WHEN i % 7 = 0 THEN 'deferred' ELSE 'queued' END, ? + (i % 86400) * 1000, ?,
				CASE WHEN i % 7 = 0 THEN 1 + i % 5 ELSE 0 END,
				CASE WHEN i % 7 = 0 THEN '451 4.7.1 try again later (' || (i % 300) || ')' ELSE '' END FROM seq`,
			n, ms(now), ms(now))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLargeQueue shows the scheduler's and the queue view's questions
// at a million queued recipients (override with -queue-size). Each must stay
// well under 50 ms an operation.
func BenchmarkLargeQueue(b *testing.B) {
	s := openTest(b)
	now := time.Now()
	start := time.Now()
	fillQueue(b, s, *queueSize, now)
	b.Logf("filled %d recipients in %s", *queueSize, time.Since(start).Round(time.Millisecond))
	ctx := context.Background()

	b.Run("ClaimDue100", func(b *testing.B) {
		for b.Loop() {
			due, err := s.ClaimDue(ctx, now.Add(time.Hour), 100, time.Hour)
			if err != nil || len(due) != 100 {
				b.Fatalf("claimed %d: %v", len(due), err)
			}
			b.StopTimer()
			if _, err := s.ReleaseClaims(ctx, now); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("NextDue", func(b *testing.B) {
		for b.Loop() {
			if _, ok, err := s.NextDue(ctx); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("ListPage", func(b *testing.B) {
		for b.Loop() {
			if rows, err := s.List(ctx, Filter{Limit: 100}); err != nil || len(rows) != 100 {
				b.Fatal(len(rows), err)
			}
		}
	})
	b.Run("ListPageDeferred", func(b *testing.B) {
		for b.Loop() {
			if rows, err := s.List(ctx, Filter{States: []State{Deferred}, Limit: 100, BeforeID: int64(*queueSize / 2)}); err != nil || len(rows) != 100 {
				b.Fatal(len(rows), err)
			}
		}
	})
	b.Run("ListPageWaiting", func(b *testing.B) {
		// What the GUI's "waiting" filter asks: several states at once.
		f := Filter{States: []State{Queued, Deferred, Held, Scheduled}, Limit: 100, BeforeID: int64(*queueSize / 2)}
		for b.Loop() {
			if rows, err := s.List(ctx, f); err != nil || len(rows) != 100 {
				b.Fatal(len(rows), err)
			}
		}
	})
	b.Run("ListPageBySender", func(b *testing.B) {
		for b.Loop() {
			if rows, err := s.List(ctx, Filter{Sender: "sender7@example.com", Limit: 100}); err != nil || len(rows) != 100 {
				b.Fatal(len(rows), err)
			}
		}
	})
	b.Run("ListPageByRecipient", func(b *testing.B) {
		for b.Loop() {
			if rows, err := s.List(ctx, Filter{Recipient: "user12345@d345.example", Limit: 100}); err != nil || len(rows) != 1 {
				b.Fatal(len(rows), err)
			}
		}
	})
	b.Run("ListPageText", func(b *testing.B) {
		for b.Loop() {
			if rows, err := s.List(ctx, Filter{Text: "newsletter", Limit: 100}); err != nil || len(rows) != 100 {
				b.Fatal(len(rows), err)
			}
		}
	})
	benchmarkSortedPages(b, s)
	benchmarkApplyMatching(b, s)
	b.Run("CountByState", func(b *testing.B) {
		for b.Loop() {
			if counts, err := s.CountByState(ctx); err != nil || counts[Queued]+counts[Deferred]+counts[Held] != *queueSize {
				b.Fatal(counts, err)
			}
		}
	})
}

// benchmarkSortedPages reads a page of the queue sorted by each column,
// both ways, with and without state filters, from the middle of the
// listing (a cursor taken from the row in the middle of the queue), the
// way the window pages. A few recipients are held first so that "Held" is
// the rare state whose few rows are sorted whole (fewMatching).
func benchmarkSortedPages(b *testing.B, s *Store) {
	ctx := context.Background()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE recipients SET state = 'held', next_attempt = NULL WHERE id % 500 = 3")
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	middle := *queueSize / 2
	address := fmt.Sprintf("user%d@d%d.example", middle, middle%1000)
	filters := []struct {
		name   string
		states []State
	}{
		{"All", nil},
		{"Deferred", []State{Deferred}},
		{"Waiting", []State{Queued, Deferred, Held, Scheduled}},
		{"Held", []State{Held}},
	}
	for _, sort := range append([]Sort{SortNewest}, Sorts...) {
		// The middle row's cursor in this order.
		at, err := s.List(ctx, Filter{Recipient: address, Sort: sort, Limit: 1})
		if err != nil || len(at) != 1 {
			b.Fatalf("the middle row %s: %d rows, %v", address, len(at), err)
		}
		name := string(sort)
		if sort == SortNewest {
			name = "newest"
		}
		for _, fl := range filters {
			for _, reverse := range []bool{false, true} {
				f := Filter{Sort: sort, Reverse: reverse, States: fl.states, After: at[0].Cursor, Limit: 100}
				dir := "Asc"
				if reverse {
					dir = "Desc"
				}
				b.Run("Sorted/"+name+"/"+fl.name+"/"+dir, func(b *testing.B) {
					// A page past the end is empty (no held mail after the
					// middle row in state order); it still walks its index.
					for b.Loop() {
						if _, err := s.List(ctx, f); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// benchmarkApplyMatching is "select all matching" in the window: hold all
// deferred mail (a seventh of the queue), and hold then release one
// sender's mail found by the search text. Batch500 is one of its
// transactions, which is how long intake and delivery may wait for the
// queue while it runs.
func benchmarkApplyMatching(b *testing.B, s *Store) {
	ctx := context.Background()
	deferred := Filter{States: []State{Deferred}}
	b.Run("HoldAllDeferred", func(b *testing.B) {
		var held int
		for b.Loop() {
			var err error
			held, _, err = s.ApplyMatching(ctx, deferred, Hold, time.Now(), "held by the user")
			if err != nil || held == 0 {
				b.Fatal(held, err)
			}
			b.StopTimer()
			err = s.tx(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "UPDATE recipients SET state = 'deferred', next_attempt = ? WHERE held_reason = 'held by the user'", ms(time.Now()))
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(held), "recipients/op")
	})
	b.Run("HoldAndReleaseSearchText", func(b *testing.B) {
		f := Filter{States: []State{Queued, Deferred}, Text: "sender7@"}
		var held int
		for b.Loop() {
			var err error
			held, _, err = s.ApplyMatching(ctx, f, Hold, time.Now(), "held by the user")
			if err != nil || held == 0 {
				b.Fatal(held, err)
			}
			released, _, err := s.ApplyMatching(ctx, Filter{States: []State{Held}, Text: f.Text}, Release, time.Now(), "")
			if err != nil || released < held {
				b.Fatal(released, held, err)
			}
		}
		b.ReportMetric(float64(held), "recipients/op")
	})
	b.Run("Batch500", func(b *testing.B) {
		rows, err := s.List(ctx, Filter{States: []State{Queued}, Limit: applyBatch})
		if err != nil || len(rows) != applyBatch {
			b.Fatal(len(rows), err)
		}
		actions := []Action{Hold, Release}
		i := 0
		for b.Loop() {
			if n, _, err := s.applyBatch(ctx, rows, nil, actions[i%2], time.Now(), "held by the user"); err != nil || n != applyBatch {
				b.Fatal(n, err)
			}
			i++
		}
	})
}

// BenchmarkEnqueue4K is the intake's write: one 4 KiB message, one
// recipient, committed to disk.
func BenchmarkEnqueue4K(b *testing.B) {
	s := openTest(b)
	body := strings.Repeat("x", 4094) + "\r\n"
	m := &NewMessage{Sender: "a@example.com", Recipients: []string{"b@example.net"}, ReceivedAt: time.Now()}
	for b.Loop() {
		if _, err := s.Enqueue(context.Background(), m, strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClaimPastHeldBacklog is the scheduler's question during a big
// newsletter: 100,000 overdue recipients at one destination that its
// limit holds back, and other mail due behind them.
func BenchmarkClaimPastHeldBacklog(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	now := time.Now()
	fillQueue(b, s, 100_000, now)
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < 100000 - 1)
			INSERT INTO recipients(message_id, address, domain, state, next_attempt, updated_at)
			SELECT i / 10 + 1, 'user' || i || '@big.example', 'big.example', 'queued', ? - i, ? FROM seq`,
			ms(now.Add(-time.Hour)), ms(now))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	exclude := []string{"big.example"}
	for b.Loop() {
		due, err := s.ClaimDueExcept(ctx, now.Add(time.Hour), 100, time.Hour, exclude)
		if err != nil || len(due) != 100 {
			b.Fatalf("claimed %d: %v", len(due), err)
		}
		b.StopTimer()
		if _, err := s.ReleaseClaims(ctx, now); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
