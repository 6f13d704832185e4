package storage

import (
	"context"
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
	q, args := listQuery(Filter{States: []State{Queued, Deferred, Held}, BeforeID: 1000, Limit: 50})
	joined := queryPlan(t, s, q, args...)
	if n := strings.Count(joined, "recipients_state"); n != 3 {
		t.Errorf("plan %q uses recipients_state %d times, want once per state", joined, n)
	}
	if strings.Contains(joined, "SCAN r") {
		t.Errorf("plan %q scans the recipients", joined)
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
