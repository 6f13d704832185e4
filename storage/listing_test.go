package storage

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// sortedQueue fills a store with 16 messages of 1 to 3 recipients whose
// every sortable column repeats values (and letter case), in every state,
// and returns all rows as the store lists them.
func sortedQueue(t *testing.T) (*Store, []Row) {
	t.Helper()
	s := openTest(t)
	ctx := context.Background()
	senders := []string{"bob@x.example", "alice@x.example", "Bob@x.example", "carol@x.example"}
	subjects := []string{"Invoice", "invoice", "Agenda", "", "Zebra"}
	for i := 0; i < 16; i++ {
		var rcpts []string
		for j := 0; j <= i%3; j++ {
			// Addresses repeat across messages, in both cases.
			rcpts = append(rcpts, []string{"ann@y.example", "Ann@y.example", "zed@y.example", "bea@y.example"}[(i+j)%4])
		}
		_, err := s.Enqueue(ctx, &NewMessage{
			Sender: senders[i%len(senders)], Recipients: rcpts, Subject: subjects[i%len(subjects)],
			ReceivedAt: t0.Add(time.Duration(i%4) * time.Minute),
		}, strings.NewReader(strings.Repeat("x", 100*(i%3))+"\r\n"))
		if err != nil {
			t.Fatal(err)
		}
	}
	// States, attempts, next tries and errors, repeating too. next_attempt
	// is NULL exactly when the state is held or final, as the store keeps it.
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE recipients SET
			state = CASE id % 6 WHEN 0 THEN 'queued' WHEN 1 THEN 'deferred' WHEN 2 THEN 'held'
				WHEN 3 THEN 'sent' WHEN 4 THEN 'deferred' ELSE 'scheduled' END,
			attempts = id % 3,
			last_error = CASE id % 4 WHEN 0 THEN '' WHEN 1 THEN '451 greylisted' WHEN 2 THEN '451 Greylisted' ELSE '550 no such user' END`)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE recipients SET next_attempt = CASE
			WHEN state IN ('held', 'sent') THEN NULL ELSE ? + (id % 5) * 60000 END`, ms(t0))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.List(ctx, Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return s, all
}

// sortValue is a row's value in an order, as SQLite compares it: text
// without regard to ASCII case, a next try that is not set after all times.
func sortValue(r Row, sort Sort) any {
	switch sort {
	case SortState:
		return string(r.State)
	case SortSender:
		return strings.ToLower(r.Sender)
	case SortRecipient:
		return strings.ToLower(r.Address)
	case SortSubject:
		return strings.ToLower(r.Subject)
	case SortSize:
		return r.Size
	case SortAttempts:
		return int64(r.Attempts)
	case SortNextTry:
		if r.NextAttempt.IsZero() {
			return int64(math.MaxInt64)
		}
		return r.NextAttempt.UnixMilli()
	case SortProblem:
		return strings.ToLower(r.LastError)
	case SortReceived:
		// Arrival order: the message IDs, given as mail arrives (the
		// fixture's made-up arrival times do not follow them).
		return r.MessageID
	}
	return r.ID
}

func compareValues(a, b any) int {
	if as, ok := a.(string); ok {
		return cmp.Compare(as, b.(string))
	}
	return cmp.Compare(a.(int64), b.(int64))
}

// wantOrder is the listing's order worked out in Go: the value, then the
// message ID for a message column, then the recipient ID.
func wantOrder(rows []Row, sort Sort, reverse bool) []int64 {
	rows = slices.Clone(rows)
	message := sortColumns[sort].message
	slices.SortFunc(rows, func(a, b Row) int {
		c := compareValues(sortValue(a, sort), sortValue(b, sort))
		if c == 0 && message {
			c = cmp.Compare(a.MessageID, b.MessageID)
		}
		if c == 0 {
			c = cmp.Compare(a.ID, b.ID)
		}
		if sort == SortNewest {
			c = -c
		}
		if reverse {
			c = -c
		}
		return c
	})
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

// pageThrough lists with the filter in pages of limit rows, each page
// continuing from the last row's cursor, and returns the recipient IDs.
func pageThrough(t *testing.T, list func(Filter) ([]Row, error), f Filter, limit int) []int64 {
	t.Helper()
	f.Limit = limit
	var ids []int64
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatalf("paging with %+v does not end", f)
		}
		rows, err := list(f)
		if err != nil {
			t.Fatalf("listing with %+v: %v", f, err)
		}
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		if len(rows) < limit {
			return ids
		}
		f.After = rows[len(rows)-1].Cursor
	}
}

func matches(r Row, f Filter) bool {
	if len(f.States) > 0 && !slices.Contains(f.States, r.State) {
		return false
	}
	t := strings.ToLower(f.Text)
	return t == "" || strings.Contains(strings.ToLower(r.Address+"\x00"+r.Sender+"\x00"+r.Subject), t)
}

// TestSortedPagingListsEveryRowOnceInOrder pages through the queue in
// every order, both ways, with and without filters, in pages small enough
// that runs of equal values cross page boundaries, and checks that the pages
// together are exactly the matching rows in the order worked out in Go.
// Message-column orders are checked with both of their plans.
func TestSortedPagingListsEveryRowOnceInOrder(t *testing.T) {
	t.Parallel()
	s, all := sortedQueue(t)
	ctx := context.Background()
	if len(all) < 30 {
		t.Fatalf("the test queue has %d rows", len(all))
	}
	filters := []Filter{
		{},
		{States: []State{Deferred}},
		{States: []State{Queued, Held, Deferred, Held}},
		{States: []State{Sent, Scheduled}, Text: "BOB"},
	}
	for _, sort := range append([]Sort{SortNewest}, Sorts...) {
		for _, base := range filters {
			for _, reverse := range []bool{false, true} {
				f := base
				f.Sort, f.Reverse = sort, reverse
				var want []Row
				for _, r := range all {
					if matches(r, f) {
						want = append(want, r)
					}
				}
				wantIDs := wantOrder(want, sort, reverse)
				plans := map[string]func(Filter) ([]Row, error){
					"List": func(f Filter) ([]Row, error) { return s.List(ctx, f) },
				}
				if sortColumns[sort].message && len(f.States) > 0 {
					plans["walk"] = func(f Filter) ([]Row, error) { return s.list(ctx, f, false) }
					plans["few"] = func(f Filter) ([]Row, error) { return s.list(ctx, f, true) }
				}
				for name, list := range plans {
					limits := []int{2, 5}
					if name != "List" {
						limits = []int{3}
					}
					for _, limit := range limits {
						got := pageThrough(t, list, f, limit)
						if !slices.Equal(got, wantIDs) {
							t.Errorf("%s sorted by %q (reverse %v, states %v, text %q) in pages of %d:\n got %v\nwant %v",
								name, sort, reverse, f.States, f.Text, limit, got, wantIDs)
						}
					}
				}
			}
		}
	}
}

// The next try sorts mail that waits by its time and puts mail that is
// not waiting (held, sent) after it, as the window shows them.
func TestSortByNextTryPutsMailThatIsNotWaitingLast(t *testing.T) {
	t.Parallel()
	s, _ := sortedQueue(t)
	rows, err := s.List(context.Background(), Filter{Sort: SortNextTry, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seenUnset := false
	for _, r := range rows {
		unset := r.NextAttempt.IsZero()
		if seenUnset && !unset {
			t.Fatalf("row %d (next try %v) comes after mail that is not waiting", r.ID, r.NextAttempt)
		}
		seenUnset = seenUnset || unset
	}
	if !seenUnset {
		t.Fatal("the test queue has no mail that is not waiting")
	}
}

func TestParseSort(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "newest", "subject", "next"} {
		if _, err := ParseSort(name); err != nil {
			t.Errorf("ParseSort(%q): %v", name, err)
		}
	}
	if _, err := ParseSort("colour"); err == nil || !strings.Contains(err.Error(), `"colour"`) || !strings.Contains(err.Error(), "subject") {
		t.Errorf("ParseSort(colour) = %v, want an error naming it and the columns", err)
	}
	if _, err := openTest(t).List(context.Background(), Filter{Sort: "colour"}); err == nil {
		t.Error("List sorted by an unknown column did not fail")
	}
}

func TestCountMatching(t *testing.T) {
	t.Parallel()
	s, all := sortedQueue(t)
	ctx := context.Background()
	for _, f := range []Filter{{}, {States: []State{Deferred, Held}}, {Text: "bob"}, {States: []State{Sent}, Text: "bob"}} {
		want := 0
		for _, r := range all {
			if matches(r, f) {
				want++
			}
		}
		n, capped, err := s.CountMatching(ctx, f, 1000)
		if err != nil || n != want || capped {
			t.Errorf("CountMatching(%+v) = %d, %v, %v; want %d", f, n, capped, err, want)
		}
	}
	if n, capped, err := s.CountMatching(ctx, Filter{Text: "x.example"}, 10); err != nil || n != 10 || !capped {
		t.Errorf("a count over its bound = %d, %v, %v; want 10, capped", n, capped, err)
	}
}

// fillOneRecipientEach inserts n messages of one recipient each, from the
// senders sender(i) gives, in one transaction (Enqueue commits each to
// disk). Message and recipient IDs are 1 to n.
func fillOneRecipientEach(t *testing.T, s *Store, n int, sender func(i int) string) []int64 {
	t.Helper()
	ctx := context.Background()
	var ids []int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for i := 0; i < n; i++ {
			id := int64(i + 1)
			if _, err := tx.ExecContext(ctx, "INSERT INTO messages(id, sender, received_at, subject) VALUES (?, ?, ?, 'hello')", id, sender(i), ms(t0)); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO recipients(id, message_id, address, domain, state, next_attempt, updated_at)
				VALUES (?, ?, ?, 'y.example', 'queued', ?, ?)`, id, id, fmt.Sprintf("r%d@y.example", i), ms(t0), ms(t0)); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// setStates puts recipients into states directly, as delivery would.
func setStates(t *testing.T, s *Store, states map[int64]State) {
	t.Helper()
	ctx := context.Background()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for id, st := range states {
			var next any
			if !st.Final() && st != Held {
				next = ms(t0)
			}
			if _, err := tx.ExecContext(ctx, "UPDATE recipients SET state = ?, next_attempt = ? WHERE id = ?", string(st), next, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func statesByID(t *testing.T, s *Store) map[int64]State {
	t.Helper()
	rows, err := s.List(context.Background(), Filter{Limit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]State{}
	for _, r := range rows {
		out[r.ID] = r.State
	}
	return out
}

// TestApplyMatchingChangesExactlyTheMatchingRows holds every deferred
// recipient of one sender across several batches: exactly those change;
// the ones being sent are left alone and counted; other senders' mail and
// other states are untouched.
func TestApplyMatchingChangesExactlyTheMatchingRows(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	ids := fillOneRecipientEach(t, s, applyBatch*2+37, func(i int) string { // three batches
		if i%5 == 0 {
			return "boss@x.example"
		}
		return "news@x.example"
	})
	states := map[int64]State{}
	for i, id := range ids {
		switch i % 4 {
		case 0, 1:
			states[id] = Deferred
		case 2:
			states[id] = Sending
		}
	}
	setStates(t, s, states)
	before := statesByID(t, s)

	f := Filter{States: []State{Deferred, Sending}, Sender: "news@x.example", Sort: SortSubject, Limit: 3}
	changed, skipped, err := s.ApplyMatching(ctx, f, Hold, t0, "held by the user")
	if err != nil {
		t.Fatal(err)
	}
	wantChanged, wantSkipped := 0, 0
	after := statesByID(t, s)
	for i, id := range ids {
		match := i%5 != 0 && (before[id] == Deferred || before[id] == Sending)
		want := before[id]
		switch {
		case match && before[id] == Deferred:
			want = Held
			wantChanged++
		case match:
			wantSkipped++
		}
		if after[id] != want {
			t.Errorf("recipient %d (%s, sender #%d) is %s after Hold, want %s", id, before[id], i, after[id], want)
		}
	}
	if changed != wantChanged || skipped != wantSkipped {
		t.Errorf("Hold reported %d changed, %d skipped; want %d, %d", changed, skipped, wantChanged, wantSkipped)
	}
	if c, _ := s.CountByState(ctx); c[Held] != wantChanged || c[Sending] != len(ids)/4 {
		t.Errorf("state counts after Hold: %v", c)
	}

	// Release everything held: the counts come back.
	changed, skipped, err = s.ApplyMatching(ctx, Filter{States: []State{Held}}, Release, t0, "")
	if err != nil || changed != wantChanged || skipped != 0 {
		t.Errorf("Release of all held = %d, %d, %v; want %d, 0", changed, skipped, err, wantChanged)
	}
}

// Retry of "not sent yet" moves deferred mail into queued, another state
// of the same filter: each recipient is still counted once.
func TestApplyMatchingCountsEachRecipientOnce(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	states := map[int64]State{}
	for i, id := range fillOneRecipientEach(t, s, applyBatch+10, func(int) string { return "a@x.example" }) {
		if i%2 == 0 {
			states[id] = Deferred
		}
	}
	setStates(t, s, states)
	changed, skipped, err := s.ApplyMatching(ctx, Filter{States: []State{Queued, Deferred}}, Retry, t0, "")
	if err != nil || changed != applyBatch+10 || skipped != 0 {
		t.Errorf("Retry = %d changed, %d skipped, %v; want %d, 0", changed, skipped, err, applyBatch+10)
	}
	if c, _ := s.CountByState(ctx); c[Queued] != applyBatch+10 {
		t.Errorf("after Retry the counts are %v", c)
	}
}

// Delete removes the matching recipients, a message only with its last
// one, and leaves recipients being sent.
func TestApplyMatchingDeleteKeepsOtherRecipients(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	mixed := enqueue(t, s, "a@x.example", "1\r\n", "keep@y.example", "drop@y.example")
	whole := enqueue(t, s, "a@x.example", "1\r\n", "drop@z.example")
	busy := enqueue(t, s, "a@x.example", "1\r\n", "drop@w.example")
	rcpts, _ := s.Recipients(ctx, busy)
	setStates(t, s, map[int64]State{rcpts[0].ID: Sending})

	changed, skipped, err := s.ApplyMatching(ctx, Filter{Text: "drop@"}, Delete, t0, "")
	if err != nil || changed != 2 || skipped != 1 {
		t.Fatalf("Delete = %d changed, %d skipped, %v; want 2, 1", changed, skipped, err)
	}
	if r, _ := s.Recipients(ctx, mixed); len(r) != 1 || r[0].Address != "keep@y.example" {
		t.Errorf("message %d keeps %+v, want only keep@y.example", mixed, r)
	}
	if _, err := s.Message(ctx, whole); err == nil {
		t.Errorf("message %d lost its only recipient but is still stored", whole)
	}
	if r, _ := s.Recipients(ctx, busy); len(r) != 1 {
		t.Errorf("the recipient being sent was deleted")
	}
	if _, _, err := s.ApplyMatching(ctx, Filter{}, Schedule, t0, ""); err == nil {
		t.Error("Schedule of everything matching did not fail")
	}
}

// Bounce of everything matching owes the sender a DSN, as Apply does.
func TestApplyMatchingBounceOwesADSN(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	enqueue(t, s, "a@x.example", "1\r\n", "b@y.example", "c@y.example")
	enqueue(t, s, "", "1\r\n", "d@y.example") // a bounce: never bounced back
	changed, _, err := s.ApplyMatching(ctx, Filter{}, Bounce, t0, "returned by the administrator")
	if err != nil || changed != 3 {
		t.Fatalf("Bounce = %d, %v; want 3", changed, err)
	}
	owed, err := s.OwedBounces(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(owed) != 1 {
		t.Errorf("%d DSNs owed, want 1 (for the message from a@x.example): %+v", len(owed), owed)
	}
}

// The sender filter is exact, letter case included, though it finds its
// rows through the index that ignores case (migration 0005).
func TestSenderFilterIsExact(t *testing.T) {
	t.Parallel()
	s, all := sortedQueue(t)
	for _, sender := range []string{"bob@x.example", "Bob@x.example", "BOB@x.example"} {
		var want []int64
		for _, r := range all {
			if r.Sender == sender {
				want = append(want, r.ID)
			}
		}
		rows, err := s.List(context.Background(), Filter{Sender: sender, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, r := range rows {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("sender %q lists %v; want %v", sender, got, want)
		}
	}
	q, args := listQuery(Filter{Sender: "bob@x.example", Limit: 100}, false)
	plan := queryPlan(t, s, q, args...)
	if !strings.Contains(plan, "messages_sender_sort") {
		t.Errorf("the sender filter is planned as %q; want a search of messages_sender_sort", plan)
	}
}
