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

// Filter selects rows of the queue listing. Zero fields select everything.
type Filter struct {
	States    []State
	Sender    string // exact address
	Recipient string // exact address
	Text      string // substring of sender, recipient or subject
	BeforeID  int64  // keyset paging: only recipient IDs below this (0 = from the newest)
	Limit     int    // default 100
}

// Row is one line of the queue listing: a recipient and its message.
type Row struct {
	Recipient
	Sender     string
	Subject    string
	Size       int64
	ReceivedAt time.Time
	AuthUser   string
}

// List returns a page of the queue, newest first. Pass the last row's
// Recipient.ID as the next page's BeforeID.
func (s *Store) List(ctx context.Context, f Filter) ([]Row, error) {
	q, args := listQuery(f)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var row Row
		var recv int64
		var err error
		row.Recipient, err = scanRecipient(rows, &row.Sender, &row.Subject, &row.Size, &recv, &row.AuthUser)
		if err != nil {
			return nil, err
		}
		row.ReceivedAt = fromMS(recv)
		out = append(out, row)
	}
	return out, rows.Err()
}

// listQuery is List's SQL: keyset paging on the recipient ID, newest
// first, answered from indexes.
func listQuery(f Filter) (string, []any) {
	var where []string
	var args []any
	if f.Sender != "" {
		where = append(where, "m.sender = ?")
		args = append(args, f.Sender)
	}
	if f.Recipient != "" {
		where = append(where, "r.address = ?")
		args = append(args, f.Recipient)
	}
	if f.Text != "" {
		where = append(where, "(instr(lower(r.address), ?) OR instr(lower(m.sender), ?) OR instr(lower(m.subject), ?))")
		t := strings.ToLower(f.Text)
		args = append(args, t, t, t)
	}
	if f.BeforeID > 0 {
		where = append(where, "r.id < ?")
		args = append(args, f.BeforeID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	selectFrom := "SELECT " + recipientColumns + ", m.sender, m.subject, m.size, m.received_at, m.auth_user" +
		" FROM recipients r JOIN messages m ON m.id = r.message_id"
	page := func(cond []string) string {
		q := selectFrom
		if len(cond) > 0 {
			q += " WHERE " + strings.Join(cond, " AND ")
		}
		return q + " ORDER BY r.id DESC LIMIT ?"
	}
	states := slices.Compact(slices.Sorted(slices.Values(f.States))) // "queued,queued" lists each row once
	var q string
	switch len(states) {
	case 0:
		q = page(where)
		args = append(args, limit)
	case 1:
		q = page(append([]string{"r.state = ?"}, where...))
		args = append([]any{string(states[0])}, append(args, limit)...)
	default:
		// One page per state, each read newest first from the (state, id)
		// index, then merged: "state IN (...)" would sort every matching
		// recipient to find the newest few.
		var arms []string
		var all []any
		for _, st := range states {
			arms = append(arms, "SELECT * FROM ("+page(append([]string{"r.state = ?"}, where...))+")")
			all = append(append(append(all, string(st)), args...), limit)
		}
		q = strings.Join(arms, " UNION ALL ") + " ORDER BY 1 DESC LIMIT ?"
		args = append(all, limit)
	}
	return q, args
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
