package storage

import (
	"context"
	"database/sql"
	"time"
)

// purgeBatch bounds one purge transaction, so that intake never waits
// long behind it.
const purgeBatch = 500

// finishedBefore is true of a message none of whose recipients is still
// to be delivered or owed a DSN, and whose last one ended before the
// cutoff.
const finishedBefore = `NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id
	AND (r.state NOT IN ('sent', 'bounced', 'expired') OR r.notify = 1 OR r.updated_at >= ?))`

// PurgeFinished removes messages whose every recipient was delivered,
// bounced or expired before the cutoff (and whose DSN, if owed, is
// queued), with their recipients, attempts and body. Per-minute counters
// older than the cutoff go too. It returns how many messages it removed.
//
// Candidates are found outside any write transaction, oldest first, and
// each batch is deleted in a short one that checks again, so intake is
// never held up for long however large the queue.
func (s *Store) PurgeFinished(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	after := int64(0)
	for {
		ids, last, err := s.finishedIDs(ctx, cutoff, after)
		if err != nil {
			return total, err
		}
		if len(ids) > 0 {
			n, err := s.deleteFinished(ctx, ids, cutoff)
			total += n
			if err != nil {
				return total, err
			}
		}
		if last == 0 {
			break
		}
		after = last
	}
	_, err := s.db.ExecContext(ctx, "DELETE FROM counters WHERE bucket < ?", cutoff.Unix()/60)
	return total, classify(err)
}

// finishedIDs scans messages received before the cutoff from ID after on,
// one batch at a time; last is the last ID scanned, 0 at the end.
func (s *Store) finishedIDs(ctx context.Context, cutoff time.Time, after int64) (ids []int64, last int64, err error) {
	rows, err := s.db.QueryContext(ctx, `SELECT m.id, `+finishedBefore+` FROM messages m
		WHERE m.id > ? AND m.received_at < ? ORDER BY m.id LIMIT ?`,
		ms(cutoff), after, ms(cutoff), purgeBatch)
	if err != nil {
		return nil, 0, classify(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int64
		var done bool
		if err := rows.Scan(&id, &done); err != nil {
			return nil, 0, classify(err)
		}
		n++
		last = id
		if done {
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, classify(err)
	}
	if n < purgeBatch {
		last = 0
	}
	return ids, last, nil
}

func (s *Store) deleteFinished(ctx context.Context, ids []int64, cutoff time.Time) (int, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, "DELETE FROM messages AS m WHERE m.id = ? AND "+finishedBefore)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range ids {
			res, err := stmt.ExecContext(ctx, id, ms(cutoff))
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += k
		}
		return nil
	})
	return int(n), err
}
