package storage

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// queryPlan is SQLite's plan for q, its steps joined by "; ".
func queryPlan(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	rows, err := s.db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "; ")
}

// TestHotQueriesUseIndexes guards the million-recipient promise without a
// timing: the scheduler's questions must be answered from recipients_due,
// never by scanning the queue.
func TestHotQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	for _, q := range []string{
		`SELECT next_attempt FROM recipients WHERE next_attempt IS NOT NULL ORDER BY next_attempt LIMIT 1`,
		`SELECT r.id FROM recipients r JOIN messages m ON m.id = r.message_id WHERE r.next_attempt <= 5 ORDER BY r.next_attempt LIMIT 100`,
	} {
		joined := queryPlan(t, s, q)
		if !strings.Contains(joined, "recipients_due") || strings.Contains(joined, "TEMP B-TREE") || strings.Contains(joined, "SCAN") {
			t.Errorf("query %q is planned as %q; want a search of recipients_due", q, joined)
		}
	}
}

// A listing of several states reads each state's newest rows from the
// (state, id) index instead of sorting every match: only the few rows of
// the page are sorted.
func TestListOfSeveralStatesUsesTheStateIndex(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	q, args := listQuery(Filter{States: []State{Queued, Deferred, Held}, BeforeID: 1000, Limit: 50}, false)
	joined := queryPlan(t, s, q, args...)
	if n := strings.Count(joined, "recipients_state"); n != 3 {
		t.Errorf("plan %q uses recipients_state %d times, want once per state", joined, n)
	}
	if strings.Contains(joined, "SCAN r") || strings.Contains(joined, "TEMP B-TREE") {
		t.Errorf("plan %q scans or sorts the recipients", joined)
	}
}

// sortIndexes are the indexes each order is read from (migration 0004).
var sortIndexes = map[Sort]string{
	SortState:     "recipients_state",
	SortRecipient: "recipients_state_address",
	SortAttempts:  "recipients_state_attempts",
	SortNextTry:   "recipients_state_next",
	SortProblem:   "recipients_state_error",
	SortSender:    "messages_sender_sort",
	SortSubject:   "messages_subject_sort",
	SortSize:      "messages_size",
	SortReceived:  "", // the messages table itself, in ID order (migration 0005)
}

// TestEverySortIsReadFromAnIndex guards the promise that a sorted page
// costs the same at any queue size: for every order, both directions,
// with and without a state filter, at the start and deep in the listing,
// SQLite reads the order from an index and never sorts the matching rows
// (only the few being sent, which those indexes leave out).
func TestEverySortIsReadFromAnIndex(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	deep := Cursor{Value: "m", MessageID: 500, RecipientID: 5000}
	for _, sort := range append([]Sort{SortNewest}, Sorts...) {
		v := deep
		if sort == SortSize || sort == SortAttempts || sort == SortNextTry || sort == SortReceived {
			v.Value = int64(7)
		}
		for _, states := range [][]State{nil, {Deferred}, {Queued, Deferred, Held, Scheduled}} {
			for _, reverse := range []bool{false, true} {
				for _, cur := range []Cursor{{}, v} {
					f := Filter{Sort: sort, Reverse: reverse, States: states, After: cur, Limit: 100}
					q, args := listQuery(f, false)
					plan := queryPlan(t, s, q, args...)
					// The recipient-column indexes leave out mail being
					// sent: its arms (one per part of the cursor) may sort
					// the few recipients being sent.
					wantSorts := 0
					if states == nil && sort != SortNewest && sort != SortState && !sortColumns[sort].message {
						wantSorts = 1
						if cur.RecipientID > 0 {
							wantSorts = 2
						}
					}
					if n := strings.Count(plan, "USE TEMP B-TREE"); n > wantSorts {
						t.Errorf("sort %q reverse %v states %v cursor %v sorts %d times, want at most %d (mail being sent): %s",
							sort, reverse, states, cur.RecipientID > 0, n, wantSorts, plan)
					}
					if want := sortIndexes[sort]; want != "" && !regexp.MustCompile(`\b`+want+`\b`).MatchString(plan) {
						t.Errorf("sort %q reverse %v states %v does not read %s: %s", sort, reverse, states, want, plan)
					}
					if cur.RecipientID > 0 && !strings.Contains(plan, "SEARCH "+map[bool]string{true: "m", false: "r"}[sortColumns[sort].message]) {
						t.Errorf("sort %q reverse %v states %v starts a deep page from the top: %s", sort, reverse, states, plan)
					}
				}
			}
		}
	}
}

// When a state filter matches few recipients, a message-column order
// reads them through the state index and sorts them (bounded by
// fewMatching) instead of walking every message.
func TestFewMatchingAreSortedFromTheStateIndex(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	q, args := listQuery(Filter{Sort: SortSubject, States: []State{Held}, Limit: 100}, true)
	plan := queryPlan(t, s, q, args...)
	if !strings.Contains(plan, "SEARCH r USING INDEX recipients_state (") {
		t.Errorf("few held recipients sorted by subject are planned as %s", plan)
	}
}

func TestListOfSeveralStatesPagesNewestFirst(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	want := map[int64]bool{}
	for i := 0; i < 10; i++ {
		id := enqueue(t, s, "a@x.example", "1\r\n", "r@y.example")
		switch i % 3 {
		case 0:
			s.Apply(ctx, id, Hold, t0, t0, "")
			want[id] = true
		case 1:
			want[id] = true // queued
		case 2:
			s.Apply(ctx, id, Schedule, t0.Add(time.Hour), t0, "")
		}
	}
	var got []int64
	before := int64(0)
	for {
		rows, err := s.List(ctx, Filter{States: []State{Held, Queued, Held}, Limit: 3, BeforeID: before})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			if len(got) > 0 && r.ID >= got[len(got)-1] {
				t.Fatalf("rows out of order: %d after %d", r.ID, got[len(got)-1])
			}
			if r.State != Held && r.State != Queued {
				t.Fatalf("row %d in state %s listed", r.ID, r.State)
			}
			got = append(got, r.ID)
		}
		before = rows[len(rows)-1].ID
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d rows, want %d", len(got), len(want))
	}
}
