package engine

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"postroom/storage"
)

// BenchmarkWindowQueriesAt100k measures what the window asks of the engine
// with 100,000 queued recipients (10,000 messages at 1,000 domains): the
// dashboard's destination summary and the queue view's pages. Each must
// stay far below the 300 ms in which the window gathers a burst of events.
func BenchmarkWindowQueriesAt100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), storage.FileName)
	ctx := context.Background()
	st, err := storage.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	fillQueue100k(b, path)
	e := New(Options{Store: st})
	since := time.Now().Add(-24 * time.Hour)

	b.Run("Destinations", func(b *testing.B) {
		for b.Loop() {
			d, err := e.Destinations(ctx, since, 8)
			if err != nil || len(d) != 8 {
				b.Fatalf("%d destinations, %v", len(d), err)
			}
		}
	})
	for name, f := range map[string]storage.Filter{
		"ListFirstPage":   {Limit: 100},
		"ListNotSentPage": {Limit: 100, States: []storage.State{storage.Queued, storage.Scheduled, storage.Sending, storage.Deferred, storage.Held}},
		"ListDeepPage":    {Limit: 100, BeforeID: 1000},
		"ListSearch":      {Limit: 100, Text: "newsletter 9"},
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := e.List(ctx, f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fillQueue100k writes the queue straight into the database, as the
// storage benchmarks do: enqueueing 10,000 messages one by one would take
// most of the benchmark's time.
func fillQueue100k(b *testing.B, path string) {
	b.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UnixMilli()
	if _, err := db.Exec(`WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 10000)
		INSERT INTO messages(id, sender, size, received_at, subject)
		SELECT i, 'sender' || (i % 100) || '@example.com', 4096, ?, 'Newsletter ' || i FROM seq`, now); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < 100000 - 1)
		INSERT INTO recipients(message_id, address, domain, state, next_attempt, last_error, updated_at)
		SELECT i / 10 + 1, 'user' || i || '@d' || (i % 1000) || '.example', 'd' || (i % 1000) || '.example',
			CASE WHEN i % 7 = 0 THEN 'deferred' ELSE 'queued' END, ? + (i % 86400) * 1000,
			CASE WHEN i % 7 = 0 THEN '451 4.7.1 greylisted' ELSE '' END, ? FROM seq`, now, now); err != nil {
		b.Fatal(err)
	}
}
