package storage

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestClaimDueExceptLeavesExcludedDomainsQueued(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	enqueue(t, s, "a@x.example", "1\r\n", "r1@busy.example", "r2@free.example", "r3@busy.example")
	due, err := s.ClaimDueExcept(ctx, t0, 10, time.Hour, []string{"busy.example"})
	if err != nil || len(due) != 1 || due[0].Address != "r2@free.example" {
		t.Fatalf("claimed %+v (%v), want only r2@free.example", due, err)
	}
	next, ok, err := s.NextDueExcept(ctx, []string{"busy.example"})
	if err != nil || !ok || !next.Equal(t0.Add(time.Hour)) {
		t.Fatalf("NextDueExcept = %v %v %v, want the claim's lease end (busy.example left out)", next, ok, err)
	}
	if next, _, _ := s.NextDueExcept(ctx, nil); !next.Equal(t0) {
		t.Fatalf("NextDueExcept(nil) = %v, want %v (busy.example is due)", next, t0)
	}
	if due, _ := s.ClaimDueExcept(ctx, t0, 10, time.Hour, nil); len(due) != 2 {
		t.Fatalf("without exclusions claimed %d, want the 2 busy.example recipients", len(due))
	}
}

func TestUnclaimGivesBackWithoutAnAttempt(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	id := enqueue(t, s, "a@x.example", "1\r\n", "new@y.example", "tried@y.example")
	due, _ := s.ClaimDue(ctx, t0, 10, time.Hour)
	// The second recipient was tried before: it goes back as deferred.
	if err := s.RecordResults(ctx, []Result{{RecipientID: due[1].RecipientID, State: Deferred, NextAttempt: t0, At: t0, Code: 451, Text: "later"}}); err != nil {
		t.Fatal(err)
	}
	again, _ := s.ClaimDue(ctx, t0, 10, time.Hour)
	if len(again) != 1 {
		t.Fatalf("claimed %d, want the deferred one", len(again))
	}
	at := t0.Add(10 * time.Minute)
	n, err := s.Unclaim(ctx, []int64{due[0].RecipientID, due[1].RecipientID}, at, "held by the sending rate limit")
	if err != nil || n != 2 {
		t.Fatalf("Unclaim = %d, %v; want 2", n, err)
	}
	rcpts, _ := s.Recipients(ctx, id)
	want := map[string]State{"new@y.example": Queued, "tried@y.example": Deferred}
	for _, r := range rcpts {
		if r.State != want[r.Address] || !r.NextAttempt.Equal(at) || r.HeldReason != "held by the sending rate limit" {
			t.Errorf("%s: %s next %v reason %q; want %s at %v with the reason", r.Address, r.State, r.NextAttempt, r.HeldReason, want[r.Address], at)
		}
	}
	if rcpts[1].Attempts != 1 || rcpts[0].Attempts != 0 {
		t.Errorf("attempts %d, %d; Unclaim must not count one", rcpts[0].Attempts, rcpts[1].Attempts)
	}
	// Claimed again, the reason is gone.
	due, _ = s.ClaimDue(ctx, at, 10, time.Hour)
	if len(due) != 2 {
		t.Fatalf("claimed %d after the hold, want 2", len(due))
	}
	rcpts, _ = s.Recipients(ctx, id)
	if rcpts[0].HeldReason != "" {
		t.Errorf("held_reason %q kept after the claim", rcpts[0].HeldReason)
	}
	// A recipient no longer claimed is left alone.
	if _, err := s.Apply(ctx, id, Hold, time.Time{}, at, "held by the user"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Unclaim(ctx, []int64{due[0].RecipientID}, at, "x"); n != 0 {
		t.Fatalf("Unclaim changed %d held recipients", n)
	}
}

func TestCountUserMessagesAndQuota(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	for i, at := range []time.Time{t0.Add(-2 * time.Hour), t0.Add(-30 * time.Minute), t0} {
		user := "scanner"
		if i == 2 {
			user = "other"
		}
		if _, err := s.Enqueue(ctx, &NewMessage{Sender: "a@x.example", Recipients: []string{"b@y.example"}, AuthUser: user, ReceivedAt: at}, strings.NewReader("x\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.CountUserMessages(ctx, "scanner", t0.Add(-time.Hour)); err != nil || n != 1 {
		t.Fatalf("last hour: %d, %v; want 1", n, err)
	}
	if n, _ := s.CountUserMessages(ctx, "scanner", t0.Add(-24*time.Hour)); n != 2 {
		t.Fatalf("last day: %d; want 2", n)
	}
	if err := s.AddUser(ctx, "scanner", "hash", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserQuota(ctx, "scanner", 10, 100); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.User(ctx, "scanner"); u.PerHour != 10 || u.PerDay != 100 {
		t.Fatalf("quota stored as %d/%d", u.PerHour, u.PerDay)
	}
	if err := s.SetUserQuota(ctx, "nobody", 1, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("quota of a missing user: %v", err)
	}
}

func TestLimitQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	for _, c := range []struct {
		q, index string
		args     []any
	}{
		{countUserMessages, "messages_auth_user", []any{"u", 5}},
		{`SELECT r.id FROM recipients r JOIN messages m ON m.id = r.message_id WHERE r.next_attempt <= 5 AND r.domain NOT IN ('a', 'b') ORDER BY r.next_attempt LIMIT 100`, "recipients_due", nil},
	} {
		q, index := c.q, c.index
		joined := queryPlan(t, s, q, c.args...)
		if !strings.Contains(joined, index) || strings.Contains(joined, "SCAN") {
			t.Errorf("query %q is planned as %q; want a search of %s", q, joined, index)
		}
	}
}
