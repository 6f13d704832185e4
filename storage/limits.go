package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// What the engine's sending limits and per-user quotas need of the store:
// claims that leave out domains the scheduler may not send to now, a way
// to hand claimed recipients back without counting an attempt, and the
// count of a user's recent messages.

// excludeDomains returns " AND r.domain NOT IN (?, ...)" and its arguments,
// or nothing for an empty list.
func excludeDomains(domains []string) (string, []any) {
	if len(domains) == 0 {
		return "", nil
	}
	args := make([]any, len(domains))
	for i, d := range domains {
		args[i] = d
	}
	return " AND r.domain NOT IN (" + strings.TrimSuffix(strings.Repeat("?,", len(domains)), ",") + ")", args
}

// NextDueExcept is NextDue leaving out recipients of the given domains.
func (s *Store) NextDueExcept(ctx context.Context, exclude []string) (time.Time, bool, error) {
	notIn, args := excludeDomains(exclude)
	var next sql.NullInt64
	err := s.queryRow(ctx, `SELECT r.next_attempt FROM recipients r
		WHERE r.next_attempt IS NOT NULL`+notIn+` ORDER BY r.next_attempt LIMIT 1`, args...).Scan(&next) // one statement per list length
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, classify(err)
	}
	return nullMS(next), next.Valid, nil
}

// Unclaim hands claimed recipients back to the queue without an attempt:
// they become queued (deferred when tried before) and due at at, with
// reason as their held_reason for the queue listing until they are claimed
// again. Recipients no longer claimed (a user acted on them meanwhile) are
// left alone. It returns how many changed.
func (s *Store) Unclaim(ctx context.Context, recipientIDs []int64, at time.Time, reason string) (int, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE recipients
			SET state = CASE WHEN attempts = 0 THEN 'queued' ELSE 'deferred' END,
				next_attempt = ?, held_reason = ?, updated_at = ?
			WHERE id = ? AND state = 'sending'`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range recipientIDs {
			res, err := stmt.ExecContext(ctx, ms(at), reason, ms(at), id)
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

// countUserMessages repeats the condition of the partial index it reads
// (a non-empty auth_user, migration 0005): SQLite uses such an index only
// when the query says so itself.
const countUserMessages = "SELECT count(*) FROM messages WHERE auth_user = ? AND auth_user <> '' AND received_at >= ?"

// CountUserMessages returns how many stored messages the authenticated
// user sent since the given time (from the index on auth_user and
// received_at, so it costs the same whatever the queue's size). Messages
// deleted from the queue no longer count.
func (s *Store) CountUserMessages(ctx context.Context, user string, since time.Time) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, countUserMessages, user, ms(since)).Scan(&n)
	return n, classify(err)
}

// SetUserQuota sets how many messages a user may send per hour and per day
// (0 = no cap); ErrNotFound (wrapped) when there is no such user.
func (s *Store) SetUserQuota(ctx context.Context, name string, perHour, perDay int) error {
	if perHour < 0 || perDay < 0 {
		return fmt.Errorf("quota of user %q: a quota is 0 (no cap) or more", name)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE users SET per_hour = ?, per_day = ? WHERE name = ?", perHour, perDay, name)
		if err != nil {
			return fmt.Errorf("setting the quota of user %q: %w", name, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("user %q: %w", name, ErrNotFound)
		}
		return nil
	})
}
