package storage

// The queue listing: one row per recipient with its message's facts,
// filtered, sorted by any column and paged with a cursor.
//
// A page is read from an index in the order asked for and stops after
// Limit rows, so it costs the same at any queue size (bench_test.go):
//
//   - Newest first walks the recipients' primary key.
//   - A recipient column (state, recipient, attempts, next try, problem) is
//     indexed after the state (migration 0004). A listing of one state
//     walks that state's part of the index; a listing of several states,
//     or of all, merges one walk per state ("UNION ALL ... ORDER BY", which
//     SQLite runs as a lazy merge that reads only what the page needs).
//   - A message column (sender, subject, size, received) walks the
//     messages in that order and each message's recipients in ID order. A
//     state filter then skips the messages without a matching recipient;
//     when the state counts (kept by triggers) say only a few recipients
//     match, those few are read through the state index and sorted instead,
//     which bounds the skipping.
//
// Ties are broken by message and recipient IDs, and the next page starts
// strictly after the last row's (value, IDs), so paging through any order
// lists every matching row exactly once, however many share a value.
//
// The free-text filter is a substring test on each row walked: with a text
// that matches little it reads most of the queue. That is acceptable for a
// search a person types; exact sender and recipient filters use their
// indexes when the order is newest first.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Sort names an order of the queue listing.
type Sort string

// The orders of the listing. Each sorts ascending (A to Z, small to large,
// early to late) unless Filter.Reverse is set; SortNewest is newest first.
const (
	SortNewest    Sort = ""          // arrival: newest first
	SortState     Sort = "state"     // by the state's name
	SortSender    Sort = "sender"    // ignoring ASCII case
	SortRecipient Sort = "recipient" // ignoring ASCII case
	SortSubject   Sort = "subject"   // ignoring ASCII case
	SortSize      Sort = "size"
	SortAttempts  Sort = "attempts"
	SortNextTry   Sort = "next"    // waiting mail first; mail that is not waiting last
	SortProblem   Sort = "problem" // the last error's text, ignoring ASCII case
	SortReceived  Sort = "received"
)

// Sorts lists every order but SortNewest, as the command line spells them.
var Sorts = []Sort{SortState, SortSender, SortRecipient, SortSubject, SortSize, SortAttempts, SortNextTry, SortProblem, SortReceived}

// sortColumn is how one order is read.
type sortColumn struct {
	expr    string // the sort value in SQL, with the collation it sorts by
	message bool   // a column of messages: walked message by message
}

var sortColumns = map[Sort]sortColumn{
	SortNewest:    {expr: "r.id"},
	SortState:     {expr: "r.state"},
	SortRecipient: {expr: "r.address COLLATE NOCASE"},
	SortAttempts:  {expr: "r.attempts"},
	SortNextTry:   {expr: "r.next_try_order"}, // NULL last (migration 0004)
	SortProblem:   {expr: "r.last_error COLLATE NOCASE"},
	SortSender:    {expr: "m.sender COLLATE NOCASE", message: true},
	SortSubject:   {expr: "m.subject COLLATE NOCASE", message: true},
	SortSize:      {expr: "m.size", message: true},
	// IDs are given in order of arrival, and received_at is the arrival:
	// the table's own order is the received order (migration 0005).
	SortReceived: {expr: "m.id", message: true},
}

// ParseSort returns the order a name (as in Sorts, or "newest") stands for.
func ParseSort(name string) (Sort, error) {
	if name == "" || name == "newest" {
		return SortNewest, nil
	}
	if _, ok := sortColumns[Sort(name)]; !ok {
		names := make([]string, len(Sorts))
		for i, s := range Sorts {
			names[i] = string(s)
		}
		return "", fmt.Errorf("unknown sort column %q: use one of newest, %s", name, strings.Join(names, ", "))
	}
	return Sort(name), nil
}

// Cursor is where a page of the listing ended: the last row's sort value
// and IDs. The zero Cursor is the start of the listing.
type Cursor struct {
	Value       any // the sort value as stored: a string or an int64
	MessageID   int64
	RecipientID int64
}

// Filter selects rows of the queue listing. Zero fields select everything,
// newest first.
type Filter struct {
	States    []State
	Sender    string // exact address
	Recipient string // exact address
	Text      string // substring of sender, recipient or subject, ignoring case

	Sort    Sort // the order; SortNewest by default
	Reverse bool // the other way round: descending, or oldest first
	// After continues a listing after the row it was taken from (the last
	// row's Row.Cursor, listed with the same filter and order).
	After Cursor
	// BeforeID pages the newest-first order by recipient ID: only IDs
	// below it. After, when set, takes its place.
	BeforeID int64
	Limit    int // default 100
}

// Row is one line of the queue listing: a recipient and its message.
type Row struct {
	Recipient
	Sender     string
	Subject    string
	Size       int64
	ReceivedAt time.Time
	AuthUser   string
	// Cursor continues the listing after this row (Filter.After).
	Cursor Cursor
}

// fewMatching is how many recipients of a state filter are few enough to
// be sorted whole when the order is a message column (a few milliseconds
// at this size), rather than walking the messages in order and skipping
// the ones without a matching recipient.
const fewMatching = 5000

// List returns a page of the queue in the filter's order. Pass the last
// row's Cursor as the next page's Filter.After.
func (s *Store) List(ctx context.Context, f Filter) ([]Row, error) {
	col, ok := sortColumns[f.Sort]
	if !ok {
		return nil, fmt.Errorf("listing the queue: unknown sort column %q", f.Sort)
	}
	few := false
	if col.message && len(f.States) > 0 {
		n, err := s.countStates(ctx, f.States)
		if err != nil {
			return nil, err
		}
		few = n <= fewMatching
	}
	return s.list(ctx, f, few)
}

// list is List with the plan for message-column orders chosen.
func (s *Store) list(ctx context.Context, f Filter, few bool) ([]Row, error) {
	q, args := listQuery(f, few)
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
		row.Recipient, err = scanRecipient(rows, &row.Sender, &row.Subject, &row.Size, &recv, &row.AuthUser, &row.Cursor.Value, &row.Cursor.MessageID)
		if err != nil {
			return nil, err
		}
		row.ReceivedAt = fromMS(recv)
		row.Cursor.RecipientID = row.ID
		out = append(out, row)
	}
	return out, rows.Err()
}

// countStates is how many recipients are in the given states, from the
// counts the triggers keep.
func (s *Store) countStates(ctx context.Context, states []State) (int, error) {
	counts, err := s.CountByState(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, st := range slices.Compact(slices.Sorted(slices.Values(states))) {
		n += counts[st]
	}
	return n, nil
}

// notSending is the condition of the recipient-column sort indexes.
const notSending = "r.state <> 'sending'"

// listSelect is the listing's columns: the recipient, its message's facts,
// and after them the sort value and the message ID (columns 18 and 19,
// which ordered compound queries name).
const listSelect = "SELECT " + recipientColumns + ", m.sender, m.subject, m.size, m.received_at, m.auth_user, "

// The column numbers of the sort value and of m.id (not r.message_id:
// SQLite reads the order of m.id, not of its equal, from an index).
const (
	sortValueColumn = "18"
	messageIDColumn = "19"
)

// listQuery is List's SQL. few says that the state filter matches few
// recipients (see fewMatching).
func listQuery(f Filter, few bool) (string, []any) {
	col := sortColumns[f.Sort]
	filter, filterArgs := filterWhere(f)
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	// Newest first is the recipient IDs descending; Reverse turns it.
	desc := f.Reverse != (f.Sort == SortNewest)
	keys := []string{col.expr, "m.id", "r.id"}               // the order, ties broken by IDs
	outer := []string{sortValueColumn, messageIDColumn, "1"} // the same as listSelect's column numbers
	switch {
	case f.Sort == SortNewest:
		keys, outer = []string{"r.id"}, []string{"1"}
	case !col.message:
		keys, outer = []string{col.expr, "r.id"}, []string{sortValueColumn, "1"}
	}
	if strings.HasSuffix(col.expr, " COLLATE NOCASE") {
		outer[0] += " COLLATE NOCASE"
	}
	parts := []cursorPart{{}} // from the start: one part, no condition
	if f.After.RecipientID > 0 || f.Sort == SortNewest && f.BeforeID > 0 {
		parts = cursorParts(f, keys, desc)
	}
	states := slices.Compact(slices.Sorted(slices.Values(f.States))) // "queued,queued" lists each row once

	// Each arm is one walk of one index, in the order asked for.
	var arms []string
	var args []any
	addArms := func(from string, where []string, whereArgs []any) {
		for _, p := range parts {
			arms = append(arms, listSelect+col.expr+", m.id"+from+whereClause(append(slices.Clone(where), p.cond...)))
			args = append(append(args, whereArgs...), p.args...)
		}
	}
	switch {
	case col.message:
		// Walk the messages in order, each one's recipients in ID order;
		// CROSS JOIN keeps SQLite from sorting instead. With few matching
		// recipients, read those through the state index and sort them.
		from := " FROM messages m CROSS JOIN recipients r ON r.message_id = m.id"
		if few {
			from = " FROM recipients r INDEXED BY recipients_state CROSS JOIN messages m ON m.id = r.message_id"
		}
		if len(states) > 0 {
			in, stateArgs := inStates(states)
			filter, filterArgs = append([]string{in}, filter...), append(stateArgs, filterArgs...)
		}
		addArms(from, filter, filterArgs)
	case len(states) == 0 && (f.Sort == SortNewest || f.Sort == SortState):
		// The primary key and the state index hold these orders of every
		// state in one walk.
		addArms(" FROM recipients r JOIN messages m ON m.id = r.message_id", filter, filterArgs)
	default:
		// One walk per state, merged below: "state IN (...)" would sort
		// every matching recipient.
		if len(states) == 0 {
			states = States
		}
		for _, st := range states {
			cond := []string{"r.state = ?"}
			if st != Sending && f.Sort != SortNewest && f.Sort != SortState {
				// The very term of the partial indexes (migration 0004):
				// SQLite uses one only when the query repeats it.
				cond = append(cond, notSending)
			}
			addArms(" FROM recipients r JOIN messages m ON m.id = r.message_id",
				append(cond, filter...), append([]any{string(st)}, filterArgs...))
		}
	}
	if len(arms) == 1 {
		return arms[0] + orderBy(keys, desc) + " LIMIT ?", append(args, limit)
	}
	// SQLite runs a compound ORDER BY as a merge of the arms, each read in
	// order from its index, and stops at the limit.
	return strings.Join(arms, " UNION ALL ") + orderBy(outer, desc) + " LIMIT ?", append(args, limit)
}

// cursorPart is one piece of "after the cursor": equal to the cursor on
// the first keys, beyond it on the next one. A part reads from an index
// as one range, where the same condition written as one comparison of all
// the keys would read the whole run of rows that share the sort value.
type cursorPart struct {
	cond []string
	args []any
}

// cursorParts splits "keys after the cursor's values" into disjoint parts,
// in the order's direction.
func cursorParts(f Filter, keys []string, desc bool) []cursorPart {
	cur := f.After
	if cur.RecipientID == 0 {
		cur = Cursor{RecipientID: f.BeforeID}
	}
	var values []any
	switch len(keys) {
	case 1:
		values = []any{cur.RecipientID}
	case 2:
		values = []any{cur.Value, cur.RecipientID}
	default:
		values = []any{cur.Value, cur.MessageID, cur.RecipientID}
	}
	op := " > ?"
	if desc {
		op = " < ?"
	}
	var parts []cursorPart
	for i := len(keys) - 1; i >= 0; i-- {
		var p cursorPart
		for j := 0; j < i; j++ {
			p.cond = append(p.cond, keys[j]+" = ?")
			p.args = append(p.args, values[j])
		}
		p.cond = append(p.cond, keys[i]+op)
		p.args = append(p.args, values[i])
		parts = append(parts, p)
	}
	return parts
}

// filterWhere is the conditions of the filter's addresses and text.
func filterWhere(f Filter) ([]string, []any) {
	var where []string
	var args []any
	if f.Sender != "" {
		// The case-blind index finds the few candidates (migration 0005).
		where = append(where, "m.sender = ? COLLATE NOCASE", "m.sender = ?")
		args = append(args, f.Sender, f.Sender)
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
	return where, args
}

// inStates is "r.state IN (?, ...)" for the given states.
func inStates(states []State) (string, []any) {
	args := make([]any, len(states))
	for i, st := range states {
		args[i] = string(st)
	}
	return "r.state IN (?" + strings.Repeat(", ?", len(states)-1) + ")", args
}

func whereClause(where []string) string {
	if len(where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(where, " AND ")
}

func orderBy(keys []string, desc bool) string {
	dir := ""
	if desc {
		dir = " DESC"
	}
	return " ORDER BY " + strings.Join(keys, dir+", ") + dir
}

// CountMatching returns how many recipients the filter selects, counting at
// most limit (and then reporting capped): a filter of states alone is
// answered from the counts the triggers keep, any other by counting rows.
func (s *Store) CountMatching(ctx context.Context, f Filter, limit int) (n int, capped bool, err error) {
	if f.Sender == "" && f.Recipient == "" && f.Text == "" {
		states := f.States
		if len(states) == 0 {
			states = States
		}
		n, err := s.countStates(ctx, states)
		return n, false, err
	}
	where, args := filterWhere(f)
	if states := slices.Compact(slices.Sorted(slices.Values(f.States))); len(states) > 0 {
		in, sargs := inStates(states)
		where = append([]string{in}, where...)
		args = append(sargs, args...)
	}
	q := "SELECT count(*) FROM (SELECT 1 FROM recipients r JOIN messages m ON m.id = r.message_id" +
		whereClause(where) + " LIMIT ?)"
	if err := s.db.QueryRowContext(ctx, q, append(args, limit+1)...).Scan(&n); err != nil {
		return 0, false, classify(err)
	}
	if n > limit {
		return limit, true, nil
	}
	return n, false, nil
}
