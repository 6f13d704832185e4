package storage

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Counter additions are written once per transaction; a write that failed
// in it must not count, the others must, each once.
func TestGroupCommitCountsOnlyWhatWasStored(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	release := holdWriter(t, s)
	errs := make(chan error, 3)
	for i, n := range []int{1, 10, 100} {
		go func() {
			errs <- s.w.do(context.Background(), func(t *wtx) error {
				if err := bump(t, "test", t0, n); err != nil {
					return err
				}
				if n == 10 {
					return errors.New("this write fails after counting")
				}
				return nil
			})
		}()
		waitQueued(t, s, i+1)
	}
	release()
	failed := 0
	for range 3 {
		if <-errs != nil {
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("%d writes failed, want 1", failed)
	}
	counters, err := s.Counters(context.Background(), t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range counters {
		if c.Name == "test" {
			total += c.N
		}
	}
	if total != 101 {
		t.Fatalf("counter = %d, want 101 (the failed write's 10 must not count): %+v", total, counters)
	}
}

// RecordResults records how the message was signed with the outcome.
func TestRecordResultsKeepsTheDKIMState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t)
	id, err := s.Enqueue(ctx, &NewMessage{Sender: "a@example.org", Recipients: []string{"b@example.net"}, ReceivedAt: t0},
		strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	due, err := s.ClaimDue(ctx, t0, 10, time.Hour)
	if err != nil || len(due) != 1 {
		t.Fatalf("claim: %v %v", due, err)
	}
	err = s.RecordResults(ctx, []Result{{RecipientID: due[0].RecipientID, State: Sent, At: t0, Code: 250,
		DKIM: "signed d=example.org s=s1 (ed25519)"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Message(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.DKIM != "signed d=example.org s=s1 (ed25519)" {
		t.Fatalf("DKIM state %q", m.DKIM)
	}
}
