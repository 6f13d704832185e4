package engine

import (
	"context"
	"testing"
	"time"

	"postroom/engine/config"
	"postroom/storage"
)

func TestFinishedMailIsRemovedAfterKeepFinished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Delivery.KeepFinished = config.Duration(7 * 24 * time.Hour)
	r := startRelay(t, s, Options{Now: clk.Now}, "")
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	hop.wait()
	r.waitFor("sent", allIn(storage.Sent))

	clk.Advance(6 * 24 * time.Hour)
	r.e.purgeFinished(ctx)
	if rows, _ := r.e.List(ctx, storage.Filter{}); len(rows) != 1 {
		t.Fatalf("mail sent 6 days ago was removed with keep_finished = 7d (%d rows left)", len(rows))
	}
	clk.Advance(2 * 24 * time.Hour)
	r.e.purgeFinished(ctx)
	if rows, _ := r.e.List(ctx, storage.Filter{}); len(rows) != 0 {
		t.Fatalf("mail sent 8 days ago is still listed with keep_finished = 7d: %+v", rows)
	}

	// keep_finished = 0 keeps everything.
	s.Delivery.KeepFinished = 0
	if err := r.e.SaveSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	hop.wait()
	r.waitFor("sent", allIn(storage.Sent))
	clk.Advance(365 * 24 * time.Hour)
	r.e.purgeFinished(ctx)
	if rows, _ := r.e.List(ctx, storage.Filter{}); len(rows) != 1 {
		t.Fatalf("keep_finished = 0 should keep sent mail; %d rows left", len(rows))
	}
}
