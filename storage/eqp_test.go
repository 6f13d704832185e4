package storage

import (
	"context"
	"strings"
	"testing"
)

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
		rows, err := s.db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if !strings.Contains(joined, "recipients_due") || strings.Contains(joined, "TEMP B-TREE") || strings.Contains(joined, "SCAN") {
			t.Errorf("query %q is planned as %q; want a search of recipients_due", q, joined)
		}
	}
}
