// Command fillqueue fills a Postroom data directory with a large queue, for
// measuring how `postroom serve` starts and runs on one (bench/scale.sh).
//
//	go run ./bench/fillqueue -data DIR -n 1000000
//
// It creates the database through the storage package (so the schema is
// the real one, migrations included), then inserts N recipients, ten per
// message, spread over 1,000 domains and over the next day, with SQL alone:
// a million rows take seconds instead of a million round trips. Every
// seventh recipient is deferred; none is due for at least a minute, so a
// relay started on the queue has nothing to send at once.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite"

	"postroom/storage"
)

func main() {
	data := flag.String("data", "", "data directory (created when missing)")
	n := flag.Int("n", 1_000_000, "recipients to queue")
	flag.Parse()
	if *data == "" || *n <= 0 {
		fmt.Fprintln(os.Stderr, "usage: fillqueue -data DIR [-n RECIPIENTS]")
		os.Exit(2)
	}
	if err := fill(filepath.Join(*data, storage.FileName), *n); err != nil {
		fmt.Fprintln(os.Stderr, "fillqueue:", err)
		os.Exit(1)
	}
}

func fill(path string, n int) error {
	ctx := context.Background()
	st, err := storage.Open(ctx, path)
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(ON)")
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	now := time.Now().Add(time.Minute).UnixMilli()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var first int64
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(id), 0) + 1 FROM messages").Scan(&first); err != nil {
		return err
	}
	msgs := (n + 9) / 10
	if _, err := tx.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ? - 1)
		INSERT INTO messages(id, sender, size, received_at, subject)
		SELECT ? + i, 'sender' || (i % 100) || '@example.com', 4096, ?, 'Newsletter ' || i FROM seq`,
		msgs, first, now); err != nil {
		return fmt.Errorf("messages: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ? - 1)
		INSERT INTO message_chunks(message_id, seq, data)
		SELECT ? + i, 0, zeroblob(4096) FROM seq`, msgs, first); err != nil {
		return fmt.Errorf("bodies: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ? - 1)
		INSERT INTO recipients(message_id, address, domain, state, next_attempt, updated_at)
		SELECT ? + i / 10, 'user' || i || '@d' || (i % 1000) || '.example', 'd' || (i % 1000) || '.example',
			CASE WHEN i % 7 = 0 THEN 'deferred' ELSE 'queued' END, ? + (i % 86400) * 1000, ? FROM seq`,
		n, first, now, now); err != nil {
		return fmt.Errorf("recipients: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	fmt.Printf("fillqueue: %d recipients in %d messages queued in %s (%s, %d MB)\n",
		n, msgs, time.Since(start).Round(time.Millisecond), path, fi.Size()>>20)
	return nil
}
