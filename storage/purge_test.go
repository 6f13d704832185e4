package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPurgeRemovesOnlyLongFinishedMail(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	sent := enqueue(t, s, "a@x.example", "1\r\n", "ok@y.example")
	waiting := enqueue(t, s, "a@x.example", "2\r\n", "ok@y.example", "later@y.example")
	returned := enqueue(t, s, "a@x.example", "3\r\n", "bad@y.example")
	due, err := s.ClaimDue(ctx, t0, 10, time.Hour)
	if err != nil || len(due) != 4 {
		t.Fatalf("claim: %v, %d", err, len(due))
	}
	var results []Result
	for _, d := range due {
		r := Result{RecipientID: d.RecipientID, At: t0, Code: 250, State: Sent}
		switch {
		case d.Address == "later@y.example":
			r.State, r.Code, r.NextAttempt = Deferred, 451, t0.Add(time.Hour)
		case d.MessageID == returned:
			r.State, r.Code, r.Notify = Bounced, 550, true
		}
		results = append(results, r)
	}
	if err := s.RecordResults(ctx, results); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCounters(ctx, t0, map[string]int{"refused.test": 1}); err != nil {
		t.Fatal(err)
	}

	// Nothing has been finished for long enough yet.
	if n, err := s.PurgeFinished(ctx, t0); err != nil || n != 0 {
		t.Fatalf("purge at the moment mail ended removed %d (%v), want 0", n, err)
	}
	n, err := s.PurgeFinished(ctx, t0.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("purge removed %d messages (%v), want only the delivered one", n, err)
	}
	if _, err := s.Message(ctx, sent); !errors.Is(err, ErrNotFound) {
		t.Errorf("delivered message still there: %v", err)
	}
	for _, id := range []int64{waiting, returned} {
		if _, err := s.Message(ctx, id); err != nil {
			t.Errorf("message %d (still waiting, or owed a DSN) was removed: %v", id, err)
		}
	}
	if c, _ := s.Counters(ctx, t0.Add(-time.Hour)); len(c) != 0 {
		t.Errorf("old counters kept: %+v", c)
	}
	counts, _ := s.CountByState(ctx)
	if counts[Sent] != 1 || counts[Deferred] != 1 || counts[Bounced] != 1 {
		t.Errorf("counts after purge %v, want the removed recipient gone from them", counts)
	}

	// Once the DSN is queued the returned message may go too.
	if _, err := s.EnqueueBounce(ctx, nil, nil, []int64{lastRecipient(t, s, returned)}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeFinished(ctx, t0.Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("second purge removed %d (%v), want the returned message", n, err)
	}
}

func lastRecipient(t *testing.T, s *Store, messageID int64) int64 {
	t.Helper()
	r, err := s.Recipients(context.Background(), messageID)
	if err != nil || len(r) == 0 {
		t.Fatalf("recipients of %d: %v", messageID, err)
	}
	return r[len(r)-1].ID
}
