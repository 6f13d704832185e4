package storage

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// State is a recipient's delivery state.
//
//	queued -> sending -> sent
//	             |-> deferred -> sending -> ... (4xx, network errors)
//	             |-> bounced   (5xx; the sender is owed a DSN)
//	             `-> expired   (still failing past the queue lifetime; DSN owed)
//	held       set aside by a user or a limit; not delivered until released
//	scheduled  not to be sent before next_attempt
//
// "sending" is a claim: a scheduler took the recipient and set next_attempt
// to the end of its lease. Should the process die, the claim is released at
// the next start (or when the lease runs out), so the mail is sent again:
// delivery is at least once.
type State string

// The states.
const (
	Queued    State = "queued"
	Sending   State = "sending"
	Deferred  State = "deferred"
	Scheduled State = "scheduled"
	Held      State = "held"
	Sent      State = "sent"
	Bounced   State = "bounced"
	Expired   State = "expired"
)

// States lists every state, in the order a person reads a queue summary.
var States = []State{Queued, Scheduled, Sending, Deferred, Held, Sent, Bounced, Expired}

// Final reports whether a recipient in this state is done with.
func (s State) Final() bool { return s == Sent || s == Bounced || s == Expired }

// chunkSize is how much of a body one row holds: large enough that a typical
// message is one row, small enough that reading a 25 MB body never needs it
// whole in memory.
const chunkSize = 256 << 10

// NewMessage is what Enqueue stores.
type NewMessage struct {
	Sender     string
	Recipients []string // addresses; the domain is taken after the last '@'
	ClientAddr string
	ClientHelo string
	AuthUser   string
	ReceivedAt time.Time
	NotBefore  time.Time // zero: deliver at once
	Subject    string
	MessageID  string
	EightBit   bool
	SMTPUTF8   bool
	IsDSN      bool

	// Expected, when set, is the function Expect returned for this
	// message: Enqueue calls it once the message is in line to be
	// written, so that a transaction waiting for it takes it in.
	Expected func()
}

// Enqueue stores a message and its recipients and returns the message's
// ID once it is on disk. The body is read from body in chunks, by the
// writer (commit.go), so it must be a local reader (a spool), never a
// network connection. A body that cannot be read in full stores nothing.
//
// The message shares its transaction with the other writes committed at
// the same moment (group commit), never its fate: an error is this
// message's alone, or the transaction's (a full disk), and then nothing of
// it is stored.
func (s *Store) Enqueue(ctx context.Context, m *NewMessage, body io.Reader) (int64, error) {
	if len(m.Recipients) == 0 {
		if m.Expected != nil {
			m.Expected()
		}
		return 0, errors.New("a message needs at least one recipient")
	}
	var id int64
	// A body in memory can be read again, which lets the message share a
	// transaction without a savepoint (commitTogether). Intake hands most
	// messages over that way.
	var rerun func()
	switch r := body.(type) {
	case *bytes.Reader:
		rerun = func() { r.Seek(0, io.SeekStart) }
	case *strings.Reader:
		rerun = func() { r.Seek(0, io.SeekStart) }
	}
	err := s.w.doAnnounced(ctx, func(t *wtx) error {
		var err error
		id, err = insertMessage(t, m, body)
		return err
	}, rerun, m.Expected)
	return id, err
}

const (
	insertMessageSQL = `INSERT INTO messages
		(sender, client_addr, client_helo, auth_user, received_at, not_before, subject, message_id, eight_bit, smtputf8, is_dsn, size)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertChunkSQL     = "INSERT INTO message_chunks(message_id, seq, data) VALUES (?, ?, ?)"
	setSizeSQL         = "UPDATE messages SET size = ? WHERE id = ?"
	insertRecipientSQL = `INSERT INTO recipients
		(message_id, address, domain, state, next_attempt, updated_at) VALUES (?, ?, ?, ?, ?, ?)`
)

func insertMessage(t *wtx, m *NewMessage, body io.Reader) (int64, error) {
	// The first chunk is read before the message row is written: for the
	// usual message, which fits in one chunk, the row gets its size at
	// once and needs no second write.
	buf := t.w.chunkBuf()
	n, err := io.ReadFull(body, buf)
	last := err == io.EOF || err == io.ErrUnexpectedEOF
	if err != nil && !last {
		return 0, fmt.Errorf("reading the message body: %w", err)
	}
	res, err := t.exec(insertMessageSQL,
		m.Sender, m.ClientAddr, m.ClientHelo, m.AuthUser, ms(m.ReceivedAt), ms(m.NotBefore),
		m.Subject, m.MessageID, boolInt(m.EightBit), boolInt(m.SMTPUTF8), boolInt(m.IsDSN), n)
	if err != nil {
		return 0, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	if _, err := t.exec(insertChunkSQL, id, 0, buf[:n]); err != nil {
		return 0, err
	}
	if !last {
		size, err := writeChunks(t, id, body, buf, int64(n))
		if err != nil {
			return 0, err
		}
		if _, err := t.exec(setSizeSQL, size, id); err != nil {
			return 0, err
		}
	}
	state, next := Queued, ms(m.ReceivedAt)
	if m.NotBefore.After(m.ReceivedAt) {
		state, next = Scheduled, ms(m.NotBefore)
	}
	stmt, err := t.stmt(insertRecipientSQL)
	if err != nil {
		return 0, err
	}
	for _, rcpt := range m.Recipients {
		if _, err := stmt.ExecContext(t.ctx, id, rcpt, Domain(rcpt), state, next, ms(m.ReceivedAt)); err != nil {
			return 0, err
		}
	}
	return id, bump(t, "received", m.ReceivedAt, 1)
}

// writeChunks stores the body's chunks after the first (seq 0, already
// stored with size bytes) and returns the whole size.
func writeChunks(t *wtx, id int64, body io.Reader, buf []byte, size int64) (int64, error) {
	stmt, err := t.stmt(insertChunkSQL)
	if err != nil {
		return 0, err
	}
	for seq := 1; ; seq++ {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			if _, err := stmt.ExecContext(t.ctx, id, seq, buf[:n]); err != nil {
				return 0, err
			}
			size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return size, nil
		}
		if err != nil {
			return 0, fmt.Errorf("reading the message body: %w", err)
		}
	}
}

// Domain returns the lower-cased domain of an address (after its last '@').
func Domain(address string) string {
	i := strings.LastIndexByte(address, '@')
	return strings.ToLower(strings.TrimSuffix(address[i+1:], "."))
}

// OpenBody returns a reader of a message's stored bytes. It holds one chunk
// in memory at a time.
func (s *Store) OpenBody(ctx context.Context, messageID int64) (io.ReadCloser, error) {
	r := &bodyReader{ctx: ctx, s: s, id: messageID}
	// The size and the first chunk (for most mail, the whole body) in one
	// query.
	var first []byte
	err := s.queryRow(ctx, `SELECT m.size, c.data FROM messages m
		LEFT JOIN message_chunks c ON c.message_id = m.id AND c.seq = 0 WHERE m.id = ?`, messageID).Scan(&r.size, &first)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("message %d: %w", messageID, ErrNotFound)
	}
	if err != nil {
		return nil, classify(err)
	}
	if first != nil {
		r.take(first)
	}
	return r, nil
}

// bodyReader reads a message's chunks one query at a time, so a large
// message is never held in memory whole. It knows the stored size: a
// message deleted while it is read ends in io.ErrUnexpectedEOF, never in a
// short body that a next hop would take for the whole message.
type bodyReader struct {
	ctx  context.Context
	s    *Store
	id   int64
	size int64 // as stored
	read int64
	seq  int // of the next chunk to fetch
	buf  []byte
	done bool
}

func (r *bodyReader) take(chunk []byte) {
	r.buf = chunk
	r.seq++
	r.read += int64(len(chunk))
}

func (r *bodyReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.done || (r.seq > 0 && r.read == r.size) {
			// Every stored byte has been read: no query to learn that
			// there is no next chunk.
			r.done = true
			return 0, io.EOF
		}
		var chunk []byte
		err := r.s.queryRow(r.ctx, "SELECT data FROM message_chunks WHERE message_id = ? AND seq = ?", r.id, r.seq).Scan(&chunk)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("reading message %d: only %d of its %d bytes are in the queue (was it deleted meanwhile?): %w",
				r.id, r.read, r.size, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return 0, fmt.Errorf("reading message %d: %w", r.id, err)
		}
		r.take(chunk)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *bodyReader) Close() error { r.done, r.buf = true, nil; return nil }

// Due is a recipient claimed for delivery, with what the deliverer needs of
// its message.
type Due struct {
	RecipientID int64
	MessageID   int64
	Address     string
	Domain      string
	Attempts    int
	Sender      string
	Size        int64
	ReceivedAt  time.Time
	NotBefore   time.Time
	EightBit    bool
	SMTPUTF8    bool
	IsDSN       bool
}

// Start is when the message's queue lifetime starts: its scheduled time, or
// its arrival.
func (d *Due) Start() time.Time {
	if d.NotBefore.After(d.ReceivedAt) {
		return d.NotBefore
	}
	return d.ReceivedAt
}

// ClaimDue claims up to limit recipients whose next attempt is due at now,
// most overdue first, and marks them "sending" until now+lease. Callers
// group the result by Domain to share connections.
func (s *Store) ClaimDue(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]Due, error) {
	return s.ClaimDueExcept(ctx, now, limit, lease, nil)
}

// ClaimDueExcept is ClaimDue leaving out recipients of the given domains
// (lower case), which the scheduler may not send to now (limits.go).
func (s *Store) ClaimDueExcept(ctx context.Context, now time.Time, limit int, lease time.Duration, exclude []string) ([]Due, error) {
	var out []Due
	err := s.w.doRerunnable(ctx, func(t *wtx) error {
		notIn, args := excludeDomains(exclude)
		query := `SELECT r.id, r.message_id, r.address, r.domain, r.attempts,
				m.sender, m.size, m.received_at, m.not_before, m.eight_bit, m.smtputf8, m.is_dsn
			FROM recipients r JOIN messages m ON m.id = r.message_id
			WHERE r.next_attempt <= ?` + notIn + `
			ORDER BY r.next_attempt LIMIT ?`
		args = append(append([]any{ms(now)}, args...), limit)
		var rows *sql.Rows
		var err error
		if notIn == "" {
			// The usual claim, kept prepared; one that leaves domains
			// out is parsed each time (its text varies with them).
			var st *sql.Stmt
			if st, err = t.stmt(query); err == nil {
				rows, err = st.QueryContext(t.ctx, args...)
			}
		} else {
			rows, err = t.QueryContext(t.ctx, query, args...)
		}
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d Due
			var recv, notBefore int64
			if err := rows.Scan(&d.RecipientID, &d.MessageID, &d.Address, &d.Domain, &d.Attempts,
				&d.Sender, &d.Size, &recv, &notBefore, &d.EightBit, &d.SMTPUTF8, &d.IsDSN); err != nil {
				return err
			}
			d.ReceivedAt, d.NotBefore = fromMS(recv), fromMS(notBefore)
			out = append(out, d)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		stmt, err := t.stmt("UPDATE recipients SET state = 'sending', next_attempt = ?, held_reason = '', updated_at = ? WHERE id = ?")
		if err != nil {
			return err
		}
		for _, d := range out {
			if _, err := stmt.ExecContext(t.ctx, ms(now.Add(lease)), ms(now), d.RecipientID); err != nil {
				return err
			}
		}
		return nil
	}, func() { out = nil })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// NextDue returns when the earliest waiting recipient becomes due, and false
// when nothing waits.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := s.queryRow(ctx, `SELECT next_attempt FROM recipients
		WHERE next_attempt IS NOT NULL ORDER BY next_attempt LIMIT 1`).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, classify(err)
	}
	return nullMS(next), next.Valid, nil
}

// ReleaseClaims makes every "sending" recipient due again at now. A single
// node calls it at start: whatever was in flight when the last process
// stopped is tried again.
func (s *Store) ReleaseClaims(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.w.do(ctx, func(t *wtx) error {
		res, err := t.ExecContext(t.ctx, `UPDATE recipients SET state = 'deferred', next_attempt = ?, updated_at = ?
			WHERE state = 'sending'`, ms(now), ms(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// Result is the outcome of one delivery attempt to one recipient.
type Result struct {
	RecipientID int64
	State       State     // Sent, Deferred, Bounced or Expired
	NextAttempt time.Time // for Deferred
	At          time.Time
	Host        string
	Code        int
	Text        string
	Duration    time.Duration
	TLS         string // e.g. "TLS1.3 verified", "" for plain text
	Notify      bool   // the sender is owed a DSN (Bounced or Expired, not for a null sender)
	// DKIM, when not empty, is how the recipient's message was signed for
	// this attempt; it is recorded as SetDKIM would, in the same
	// transaction (a write of its own per message cost a commit's share).
	DKIM string
}

// RecordResults stores the outcomes of attempts, with their attempt-log
// rows and counters, in one transaction.
//
// A recipient that is no longer claimed (a user held, rescheduled or
// deleted it while it was in flight) keeps what the user decided, unless it
// was sent: a sent message is recorded as sent whatever else happened.
func (s *Store) RecordResults(ctx context.Context, results []Result) error {
	return s.w.doRerunnable(ctx, func(t *wtx) error {
		update, err := t.stmt(`UPDATE recipients SET state = ?, attempts = attempts + 1,
			next_attempt = ?, last_code = ?, last_error = ?, next_hop = ?, updated_at = ?, notify = ?
			WHERE id = ? AND (state = 'sending' OR ? = 'sent')`)
		if err != nil {
			return err
		}
		logAttempt, err := t.stmt(`INSERT INTO attempts(recipient_id, at, host, code, text, duration_ms, tls)
			SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM recipients WHERE id = ?)`)
		if err != nil {
			return err
		}
		for _, r := range results {
			if r.DKIM != "" {
				// A no-op for the message's other recipients.
				if _, err := t.exec(`UPDATE messages SET dkim = ?
					WHERE id = (SELECT message_id FROM recipients WHERE id = ?) AND dkim <> ?`, r.DKIM, r.RecipientID, r.DKIM); err != nil {
					return err
				}
			}
			var next any
			if r.State == Deferred {
				next = ms(r.NextAttempt)
			}
			if _, err := update.ExecContext(t.ctx, string(r.State), next, r.Code, r.Text, r.Host, ms(r.At),
				boolInt(r.Notify), r.RecipientID, string(r.State)); err != nil {
				return err
			}
			if _, err := logAttempt.ExecContext(t.ctx, r.RecipientID, ms(r.At), r.Host, r.Code, r.Text,
				r.Duration.Milliseconds(), r.TLS, r.RecipientID); err != nil {
				return err
			}
			if err := bump(t, string(r.State), r.At, 1); err != nil {
				return err
			}
		}
		return nil
	}, func() {}) // nothing to reset: it only writes
}

// SetDKIM records how a message was signed at its last delivery. It
// writes only when that changed: the usual delivery, signed as the last
// one was (or not signed at all), costs a read and no write.
func (s *Store) SetDKIM(ctx context.Context, messageID int64, dkim string) error {
	var current string
	err := s.queryRow(ctx, "SELECT dkim FROM messages WHERE id = ?", messageID).Scan(&current)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && current == dkim) {
		return nil
	}
	if err != nil {
		return classify(err)
	}
	return s.w.do(ctx, func(t *wtx) error {
		_, err := t.exec("UPDATE messages SET dkim = ? WHERE id = ? AND dkim <> ?", dkim, messageID, dkim)
		return err
	})
}

// OwedRecipient is a failed recipient whose sender has not yet been told.
type OwedRecipient struct {
	RecipientID int64
	Address     string
	State       State
	Code        int
	Text        string
	Host        string
	At          time.Time
}

// OwedBounce is one message whose sender is owed a DSN.
type OwedBounce struct {
	Message    Message
	Recipients []OwedRecipient
}

// OwedBounces returns up to limit messages with recipients that failed and
// whose sender has not been sent a DSN yet. The engine builds one DSN per
// message and hands it to EnqueueBounce.
func (s *Store) OwedBounces(ctx context.Context, limit int) ([]OwedBounce, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT DISTINCT message_id FROM recipients WHERE notify = 1 LIMIT ?", limit)
	if err != nil {
		return nil, classify(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []OwedBounce
	for _, id := range ids {
		m, err := s.Message(ctx, id)
		if err != nil {
			return nil, err
		}
		ob := OwedBounce{Message: *m}
		rows, err := s.db.QueryContext(ctx, `SELECT id, address, state, last_code, last_error, next_hop, updated_at
			FROM recipients WHERE message_id = ? AND notify = 1 ORDER BY id`, id)
		if err != nil {
			return nil, classify(err)
		}
		for rows.Next() {
			var r OwedRecipient
			var at int64
			if err := rows.Scan(&r.RecipientID, &r.Address, &r.State, &r.Code, &r.Text, &r.Host, &at); err != nil {
				rows.Close()
				return nil, err
			}
			r.At = fromMS(at)
			ob.Recipients = append(ob.Recipients, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		out = append(out, ob)
	}
	return out, nil
}

// EnqueueBounce queues a DSN and marks the recipients it reports on as
// notified, in one transaction: the sender gets exactly one DSN for them,
// even across a crash. A nil m only marks them (for a null sender, who is
// never sent a DSN).
func (s *Store) EnqueueBounce(ctx context.Context, m *NewMessage, body io.Reader, recipientIDs []int64) (int64, error) {
	var id int64
	err := s.w.do(ctx, func(t *wtx) error {
		if m != nil {
			var err error
			if id, err = insertMessage(t, m, body); err != nil {
				return err
			}
		}
		for _, rid := range recipientIDs {
			res, err := t.exec("UPDATE recipients SET notify = 0 WHERE id = ? AND notify = 1", rid)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				// Another path (the command line's bounce, or a
				// second sweep) has already notified: one DSN only.
				return ErrNotOwed
			}
		}
		return nil
	})
	return id, err
}

// ErrNotOwed is EnqueueBounce's answer when a recipient's DSN is no
// longer owed; nothing was changed.
var ErrNotOwed = errors.New("the notice for this recipient was already sent")

// bump adds n to a per-minute counter. The additions of a transaction's
// jobs are summed and written once, just before it commits (wtx.flushCounts):
// an upsert per message and per result was a fifth of the writer's
// statements.
func bump(t *wtx, name string, at time.Time, n int) error {
	if t.jobCounts == nil {
		t.jobCounts = make(map[counterKey]int)
	}
	t.jobCounts[counterKey{name, at.Unix() / 60}] += n
	return nil
}

// counterKey is one per-minute counter.
type counterKey struct {
	name   string
	bucket int64
}

// AddCounters adds to per-minute counters (for example refusals by reason,
// which the engine gathers in memory and writes now and then).
func (s *Store) AddCounters(ctx context.Context, at time.Time, counts map[string]int) error {
	return s.w.do(ctx, func(t *wtx) error {
		for name, n := range counts {
			if err := bump(t, name, at, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// Counter is one per-minute counter value.
type Counter struct {
	Name   string
	Minute time.Time
	N      int
}

// Counters returns the per-minute counters from since on.
func (s *Store) Counters(ctx context.Context, since time.Time) ([]Counter, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT name, bucket, n FROM counters WHERE bucket >= ? ORDER BY bucket, name", since.Unix()/60)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []Counter
	for rows.Next() {
		var c Counter
		var bucket int64
		if err := rows.Scan(&c.Name, &bucket, &c.N); err != nil {
			return nil, err
		}
		c.Minute = time.Unix(bucket*60, 0)
		out = append(out, c)
	}
	return out, rows.Err()
}
