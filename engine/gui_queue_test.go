package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"postroom/storage"
)

// queueWithoutSending is a paused relay (so nothing leaves while the test
// looks) with three messages queued straight into its store.
func queueWithoutSending(t *testing.T) *relay {
	t.Helper()
	r := startRelay(t, testSettings(nil), Options{}, "")
	ctx := context.Background()
	if err := r.e.SetPaused(ctx, true); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ from, subject, to string }{
		{"shop@example.org", "Invoice 7", "ann@example.net"},
		{"shop@example.org", "Agenda", "bob@example.net"},
		{"news@example.org", "invoice 8", "cay@example.net"},
	} {
		_, err := r.store.Enqueue(ctx, &storage.NewMessage{
			Sender: m.from, Recipients: []string{m.to}, Subject: m.subject, ReceivedAt: time.Now(),
		}, strings.NewReader("Subject: "+m.subject+"\r\n\r\nhello\r\n"))
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func addresses(rows []QueueRow) string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Address)
	}
	return strings.Join(out, " ")
}

func TestListSortsTheWholeQueueAndPagesWithTheCursor(t *testing.T) {
	t.Parallel()
	r := queueWithoutSending(t)
	ctx := context.Background()
	f := QueueFilter{Sort: SortSubject, Limit: 2}
	first, err := r.e.List(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	f.After = first[len(first)-1].Cursor
	second, err := r.e.List(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := addresses(first) + " | " + addresses(second); got != "bob@example.net ann@example.net | cay@example.net" {
		t.Errorf("sorted by subject in pages of 2: %s", got)
	}
}

func TestApplyMatchingHoldsEverythingTheFilterSelects(t *testing.T) {
	t.Parallel()
	r := queueWithoutSending(t)
	ctx := context.Background()
	f := QueueFilter{Text: "invoice", States: []QueueState{StateQueued}}
	n, capped, err := r.e.CountMatching(ctx, f, 100)
	if err != nil || n != 2 || capped {
		t.Fatalf("CountMatching = %d, %v, %v; want 2", n, capped, err)
	}
	changed, skipped, err := r.e.ApplyMatching(ctx, "hold", f)
	if err != nil || changed != 2 || skipped != 0 {
		t.Fatalf("ApplyMatching(hold) = %d, %d, %v; want 2, 0", changed, skipped, err)
	}
	held, err := r.e.List(ctx, QueueFilter{States: []QueueState{StateHeld}, Sort: SortRecipient})
	if err != nil {
		t.Fatal(err)
	}
	if got := addresses(held); got != "ann@example.net cay@example.net" {
		t.Errorf("held after holding the invoices: %s", got)
	}
	if n, _, _ := r.e.CountMatching(ctx, QueueFilter{States: []QueueState{StateHeld}}, 100); n != 2 {
		t.Errorf("the held count says %d, want 2", n)
	}
	if _, _, err := r.e.ApplyMatching(ctx, "schedule", f); err == nil || !strings.Contains(err.Error(), `"schedule"`) {
		t.Errorf("schedule of everything matching: %v, want an error naming it", err)
	}
}

// Returning everything matching to its senders owes each a DSN, which the
// engine queues at once, as it does for one message.
func TestApplyMatchingBounceQueuesTheDSNs(t *testing.T) {
	t.Parallel()
	r := queueWithoutSending(t)
	ctx := context.Background()
	changed, _, err := r.e.ApplyMatching(ctx, "bounce", QueueFilter{Text: "shop@"})
	if err != nil || changed != 2 {
		t.Fatalf("ApplyMatching(bounce) = %d, %v; want 2", changed, err)
	}
	dsns, err := r.e.List(ctx, QueueFilter{Sender: ""})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, row := range dsns {
		if row.Sender == "" && row.Address == "shop@example.org" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d DSNs to shop@example.org queued, want one per returned message (2): %s", n, addresses(dsns))
	}
}
