package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Message is a stored message's envelope and facts.
type Message struct {
	ID         int64
	Sender     string
	ClientAddr string
	ClientHelo string
	AuthUser   string
	Size       int64
	ReceivedAt time.Time
	NotBefore  time.Time
	Subject    string
	MessageID  string
	EightBit   bool
	SMTPUTF8   bool
	IsDSN      bool
	DKIM       string
}

const messageColumns = `id, sender, client_addr, client_helo, auth_user, size, received_at, not_before,
	subject, message_id, eight_bit, smtputf8, is_dsn, dkim`

func scanMessage(row interface{ Scan(...any) error }) (*Message, error) {
	var m Message
	var recv, notBefore int64
	if err := row.Scan(&m.ID, &m.Sender, &m.ClientAddr, &m.ClientHelo, &m.AuthUser, &m.Size, &recv, &notBefore,
		&m.Subject, &m.MessageID, &m.EightBit, &m.SMTPUTF8, &m.IsDSN, &m.DKIM); err != nil {
		return nil, classify(err)
	}
	m.ReceivedAt, m.NotBefore = fromMS(recv), fromMS(notBefore)
	return &m, nil
}

// Message returns one message, or an error wrapping ErrNotFound.
func (s *Store) Message(ctx context.Context, id int64) (*Message, error) {
	m, err := scanMessage(s.db.QueryRowContext(ctx, "SELECT "+messageColumns+" FROM messages WHERE id = ?", id))
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", id, err)
	}
	return m, nil
}

// Recipient is one recipient's delivery state.
type Recipient struct {
	ID          int64
	MessageID   int64
	Address     string
	Domain      string
	State       State
	Attempts    int
	NextAttempt time.Time // zero when not waiting
	LastCode    int
	LastError   string
	NextHop     string
	HeldReason  string
	UpdatedAt   time.Time
}

const recipientColumns = `r.id, r.message_id, r.address, r.domain, r.state, r.attempts, r.next_attempt,
	r.last_code, r.last_error, r.next_hop, r.held_reason, r.updated_at`

func scanRecipient(row interface{ Scan(...any) error }, extra ...any) (Recipient, error) {
	var r Recipient
	var next sql.NullInt64
	var updated int64
	dest := append([]any{&r.ID, &r.MessageID, &r.Address, &r.Domain, &r.State, &r.Attempts, &next,
		&r.LastCode, &r.LastError, &r.NextHop, &r.HeldReason, &updated}, extra...)
	if err := row.Scan(dest...); err != nil {
		return r, err
	}
	r.NextAttempt, r.UpdatedAt = nullMS(next), fromMS(updated)
	return r, nil
}

// Recipients returns a message's recipients.
func (s *Store) Recipients(ctx context.Context, messageID int64) ([]Recipient, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+recipientColumns+" FROM recipients r WHERE message_id = ? ORDER BY id", messageID)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []Recipient
	for rows.Next() {
		r, err := scanRecipient(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Attempt is one line of the attempt log.
type Attempt struct {
	RecipientID int64
	Recipient   string
	At          time.Time
	Host        string
	Code        int
	Text        string
	Duration    time.Duration
	TLS         string
}

// Attempts returns a message's attempt log, oldest first.
func (s *Store) Attempts(ctx context.Context, messageID int64) ([]Attempt, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT a.recipient_id, r.address, a.at, a.host, a.code, a.text, a.duration_ms, a.tls
		FROM attempts a JOIN recipients r ON r.id = a.recipient_id
		WHERE r.message_id = ? ORDER BY a.id`, messageID)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var a Attempt
		var at, dur int64
		if err := rows.Scan(&a.RecipientID, &a.Recipient, &at, &a.Host, &a.Code, &a.Text, &dur, &a.TLS); err != nil {
			return nil, err
		}
		a.At, a.Duration = fromMS(at), time.Duration(dur)*time.Millisecond
		out = append(out, a)
	}
	return out, rows.Err()
}

// CountByState returns how many recipients are in each state. It reads a
// table kept by triggers, so it costs the same at any queue size.
func (s *Store) CountByState(ctx context.Context) (map[State]int, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT state, n FROM state_counts")
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	out := make(map[State]int, len(States))
	for _, st := range States {
		out[st] = 0
	}
	for rows.Next() {
		var st State
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}

// Action is a change a user makes to queued messages.
type Action int

// The actions on a message's recipients that are not final yet.
const (
	Retry    Action = iota // due now
	Hold                   // set aside until released
	Release                // back in the queue, due now
	Delete                 // removed with the whole message, without a DSN
	Bounce                 // failed now; the sender gets a DSN
	Schedule               // not before a time
)

// ErrNothingToDo is returned when an action applies to no recipient: the
// message exists but all of it is already delivered or returned.
var ErrNothingToDo = errors.New("nothing left to do for this message")

// ErrBeingSent is returned when the action must wait for the delivery
// attempt in progress to end.
var ErrBeingSent = errors.New("it is being sent right now; try again when this attempt has ended")

// Apply performs an action on the recipients of the given message that are
// not final yet (Delete removes the message whatever its state). at is the
// time for Schedule; now is the clock. It returns how many recipients
// changed.
func (s *Store) Apply(ctx context.Context, messageID int64, action Action, at, now time.Time, reason string) (int, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var exists int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM messages WHERE id = ?", messageID).Scan(&exists); err != nil {
			return err
		}
		if exists == 0 {
			return fmt.Errorf("message %d: %w", messageID, ErrNotFound)
		}
		open := "message_id = ? AND state NOT IN ('sent', 'bounced', 'expired')"
		var res sql.Result
		var err error
		switch action {
		case Retry:
			res, err = tx.ExecContext(ctx, "UPDATE recipients SET state = 'queued', next_attempt = ?, updated_at = ? WHERE "+open+" AND state NOT IN ('held', 'sending')",
				ms(now), ms(now), messageID)
		case Release:
			res, err = tx.ExecContext(ctx, "UPDATE recipients SET state = 'queued', next_attempt = ?, held_reason = '', updated_at = ? WHERE message_id = ? AND state = 'held'",
				ms(now), ms(now), messageID)
		case Hold:
			res, err = tx.ExecContext(ctx, "UPDATE recipients SET state = 'held', next_attempt = NULL, held_reason = ?, updated_at = ? WHERE "+open,
				reason, ms(now), messageID)
		case Schedule:
			state := Scheduled
			if !at.After(now) {
				state = Queued
			}
			// Not while being sent: the attempt's result would undo it,
			// or a delivered message would go a second time.
			res, err = tx.ExecContext(ctx, "UPDATE recipients SET state = ?, next_attempt = ?, held_reason = '', updated_at = ? WHERE "+open+" AND state <> 'sending'",
				string(state), ms(at), ms(now), messageID)
			if err == nil {
				_, err = tx.ExecContext(ctx, "UPDATE messages SET not_before = ? WHERE id = ?", ms(at), messageID)
			}
		case Bounce:
			res, err = tx.ExecContext(ctx, `UPDATE recipients SET state = 'bounced', next_attempt = NULL, last_code = 0,
				last_error = ?, updated_at = ?,
				notify = (SELECT m.sender <> '' AND m.is_dsn = 0 FROM messages m WHERE m.id = recipients.message_id)
				WHERE `+open+` AND state <> 'sending'`, reason, ms(now), messageID)
		case Delete:
			res, err = tx.ExecContext(ctx, "DELETE FROM messages WHERE id = ?", messageID)
		default:
			return fmt.Errorf("unknown action %d", action)
		}
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		if err != nil || n > 0 {
			return err
		}
		var sending int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM recipients WHERE message_id = ? AND state = 'sending'", messageID).Scan(&sending); err != nil {
			return err
		}
		if sending > 0 {
			return fmt.Errorf("message %d: %w", messageID, ErrBeingSent)
		}
		return fmt.Errorf("message %d: %w", messageID, ErrNothingToDo)
	})
	return int(n), err
}

// applyBatch is how many recipients ApplyMatching changes in one
// transaction: enough that a large queue takes few of them, few enough
// that intake and delivery wait a few milliseconds at most for each.
const applyBatch = 500

// ApplyMatching performs an action on every recipient the filter selects
// (its order and cursor are ignored), in short transactions of applyBatch
// recipients so that the queue is never locked for long. Unlike Apply it
// acts on the matching recipients only, not on their whole messages:
// Delete removes those recipients, and a message once none is left.
//
// Recipients being sent are left alone and counted in skipped: the
// attempt's result would undo the change, or a delivered message would be
// bounced. Those the action does not apply to (Release of mail that is not
// held, anything on mail already sent) are neither changed nor skipped.
// Schedule is not offered here: it applies to chosen messages (Apply).
func (s *Store) ApplyMatching(ctx context.Context, f Filter, action Action, now time.Time, reason string) (changed, skipped int, err error) {
	if action == Schedule || action < Retry || action > Schedule {
		return 0, 0, fmt.Errorf("action %d cannot be applied to everything matching a filter", action)
	}
	// Walk the matching recipients oldest first by ID: a recipient the
	// action moves into another state of the filter (Retry of deferred
	// mail makes it queued) lies behind the cursor and is not met again.
	walk := Filter{States: f.States, Sender: f.Sender, Recipient: f.Recipient, Text: f.Text, Reverse: true, Limit: applyBatch}
	for {
		rows, err := s.List(ctx, walk)
		if err != nil {
			return changed, skipped, err
		}
		if len(rows) == 0 {
			return changed, skipped, nil
		}
		c, sk, err := s.applyBatch(ctx, rows, f.States, action, now, reason)
		changed, skipped = changed+c, skipped+sk
		if err != nil {
			return changed, skipped, err
		}
		walk.After = rows[len(rows)-1].Cursor
	}
}

// applyBatch is one transaction of ApplyMatching. The rows were read
// before it began, so their state is checked again: only those still in
// one of the filter's states change.
func (s *Store) applyBatch(ctx context.Context, rows []Row, states []State, action Action, now time.Time, reason string) (changed, skipped int, err error) {
	ids := make([]any, len(rows))
	messages := make([]any, 0, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
		if i == 0 || r.MessageID != rows[i-1].MessageID {
			messages = append(messages, r.MessageID)
		}
	}
	byID := "id IN (?" + strings.Repeat(", ?", len(ids)-1) + ")"
	match := byID + " AND state <> 'sending'"
	if len(states) > 0 {
		match += " AND state IN (?" + strings.Repeat(", ?", len(states)-1) + ")"
	}
	matchArgs := slices.Clone(ids)
	for _, st := range states {
		matchArgs = append(matchArgs, string(st))
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var sending int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM recipients WHERE "+byID+" AND state = 'sending'", ids...).Scan(&sending); err != nil {
			return err
		}
		open := " AND state NOT IN ('sent', 'bounced', 'expired')"
		var q string
		var args []any
		switch action {
		case Retry:
			q = "UPDATE recipients SET state = 'queued', next_attempt = ?, updated_at = ? WHERE " + match + open + " AND state <> 'held'"
			args = []any{ms(now), ms(now)}
		case Release:
			q = "UPDATE recipients SET state = 'queued', next_attempt = ?, held_reason = '', updated_at = ? WHERE " + match + " AND state = 'held'"
			args = []any{ms(now), ms(now)}
		case Hold:
			q = "UPDATE recipients SET state = 'held', next_attempt = NULL, held_reason = ?, updated_at = ? WHERE " + match + open + " AND state <> 'held'"
			args = []any{reason, ms(now)}
		case Bounce:
			q = `UPDATE recipients SET state = 'bounced', next_attempt = NULL, last_code = 0, last_error = ?, updated_at = ?,
				notify = (SELECT m.sender <> '' AND m.is_dsn = 0 FROM messages m WHERE m.id = recipients.message_id)
				WHERE ` + match + open
			args = []any{reason, ms(now)}
		case Delete:
			q = "DELETE FROM recipients WHERE " + match
		}
		res, err := tx.ExecContext(ctx, q, append(args, matchArgs...)...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if action == Delete {
			// A message goes with its last recipient.
			_, err = tx.ExecContext(ctx, "DELETE FROM messages WHERE id IN (?"+strings.Repeat(", ?", len(messages)-1)+
				") AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = messages.id)", messages...)
			if err != nil {
				return err
			}
		}
		changed, skipped = int(n), sending
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("applying to recipients %d to %d: %w", rows[0].ID, rows[len(rows)-1].ID, classify(err))
	}
	return changed, skipped, nil
}
