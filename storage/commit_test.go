package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// holdWriter parks the writer inside a job until release is called, so
// that the writes a test queues meanwhile all meet in the next batch.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, held := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.w.do(context.Background(), func(*wtx) error {
			close(started)
			<-held
			return nil
		})
	}()
	<-started
	return func() {
		close(held)
		if err := <-done; err != nil {
			t.Errorf("the holding job: %v", err)
		}
	}
}

// waitQueued waits until n jobs wait for the held writer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.w.jobs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", len(s.w.jobs), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type enqueueResult struct {
	name string
	id   int64
	err  error
}

// enqueueAsync queues a message in the background; the result arrives on out.
func enqueueAsync(ctx context.Context, s *Store, name string, body io.Reader, out chan<- enqueueResult) {
	go func() {
		id, err := s.Enqueue(ctx, &NewMessage{Sender: name + "@example.com", Recipients: []string{"rcpt@example.net"},
			ReceivedAt: t0, Subject: name}, body)
		out <- enqueueResult{name, id, err}
	}()
}

func collect(t *testing.T, out <-chan enqueueResult, n int) map[string]enqueueResult {
	t.Helper()
	got := make(map[string]enqueueResult)
	for range n {
		select {
		case r := <-out:
			got[r.name] = r
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of %d writes answered", len(got), n)
		}
	}
	return got
}

// stored reports whether a message with this subject is in the queue, and
// checks that its body reads back whole.
func stored(t *testing.T, s *Store, subject string, want []byte) bool {
	t.Helper()
	var id int64
	err := s.db.QueryRow("SELECT id FROM messages WHERE subject = ?", subject).Scan(&id)
	if err != nil {
		return false
	}
	r, err := s.OpenBody(context.Background(), id)
	if err != nil {
		t.Fatalf("%s is stored but its body cannot be opened: %v", subject, err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: body of %d bytes (%v), want %d", subject, len(got), err, len(want))
	}
	return true
}

func TestGroupCommitStoresConcurrentMessagesInOneTransaction(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	release := holdWriter(t, s)
	before := s.w.commits.Load()
	const n = 40
	out := make(chan enqueueResult, n)
	for i := range n {
		enqueueAsync(context.Background(), s, fmt.Sprint("m", i), strings.NewReader(fmt.Sprintf("body %d\r\n", i)), out)
	}
	waitQueued(t, s, n)
	release()
	got := collect(t, out, n)
	ids := make(map[int64]bool)
	for i := range n {
		r := got[fmt.Sprint("m", i)]
		if r.err != nil {
			t.Fatalf("%s: %v", r.name, r.err)
		}
		if ids[r.id] {
			t.Fatalf("%s got ID %d twice", r.name, r.id)
		}
		ids[r.id] = true
		if !stored(t, s, r.name, fmt.Appendf(nil, "body %d\r\n", i)) {
			t.Fatalf("%s was answered but is not stored", r.name)
		}
	}
	// The holding job's commit, then the forty messages': at most two
	// transactions (maxBatch is above forty) instead of forty.
	if c := s.w.commits.Load() - before; c > 2 {
		t.Errorf("%d messages took %d commits, want them grouped into at most 2", n, c)
	}
}

func TestGroupCommitFailureStaysWithItsMessage(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	release := holdWriter(t, s)
	out := make(chan enqueueResult, 3)
	enqueueAsync(context.Background(), s, "before", strings.NewReader("first\r\n"), out)
	waitQueued(t, s, 1)
	// Breaks after two chunks are stored: its rows must go, the others'
	// must stay.
	enqueueAsync(context.Background(), s, "broken", io.MultiReader(bytes.NewReader(make([]byte, 2*chunkSize+100)), failingReader{}), out)
	waitQueued(t, s, 2)
	enqueueAsync(context.Background(), s, "after", strings.NewReader("third\r\n"), out)
	waitQueued(t, s, 3)
	release()
	got := collect(t, out, 3)
	if err := got["broken"].err; err == nil || !strings.Contains(err.Error(), "client went away") {
		t.Errorf("broken message: %v, want its read error", err)
	}
	if stored(t, s, "broken", nil) {
		t.Error("the broken message was stored")
	}
	for name, body := range map[string]string{"before": "first\r\n", "after": "third\r\n"} {
		if err := got[name].err; err != nil {
			t.Errorf("%s: %v, want it stored despite its neighbour's failure", name, err)
		}
		if !stored(t, s, name, []byte(body)) {
			t.Errorf("%s is not stored", name)
		}
	}
	var chunks int
	if err := s.db.QueryRow("SELECT count(*) FROM message_chunks").Scan(&chunks); err != nil || chunks != 2 {
		t.Errorf("%d body chunks in the queue (%v), want the two stored messages' only", chunks, err)
	}
}

// Writes that can run again share a transaction without savepoints; when
// one of them fails there, the others run again in a new transaction, each
// whole (their bodies read from the start), and only the failing one fails,
// its own writes undone.
func TestGroupCommitRerunsTheOthersWhenOneFails(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	release := holdWriter(t, s)
	out := make(chan enqueueResult, 2)
	bodies := map[string][]byte{"before": bytes.Repeat([]byte("one\r\n"), 3000), "after": []byte("three\r\n")}
	enqueueAsync(context.Background(), s, "before", bytes.NewReader(bodies["before"]), out)
	waitQueued(t, s, 1)
	failed := make(chan error, 1)
	go func() {
		failed <- s.w.doRerunnable(context.Background(), func(t *wtx) error {
			if _, err := t.exec("INSERT INTO kv(name, value) VALUES ('half-done', x'01')"); err != nil {
				return err
			}
			return errors.New("refused half-way")
		}, func() {})
	}()
	waitQueued(t, s, 2)
	enqueueAsync(context.Background(), s, "after", bytes.NewReader(bodies["after"]), out)
	waitQueued(t, s, 3)
	release()
	if err := <-failed; err == nil || !strings.Contains(err.Error(), "refused half-way") {
		t.Errorf("the failing write: %v, want its own error", err)
	}
	got := collect(t, out, 2)
	checkAnswersMatchQueue(t, s, got, bodies)
	var messages, half int
	if err := s.db.QueryRow("SELECT count(*) FROM messages").Scan(&messages); err != nil || messages != 2 {
		t.Errorf("%d messages stored (%v), want 2: each stored once", messages, err)
	}
	if err := s.db.QueryRow("SELECT count(*) FROM kv WHERE name = 'half-done'").Scan(&half); err != nil || half != 0 {
		t.Errorf("the failing write's first statement was kept (%d, %v)", half, err)
	}
}

// Whatever happens in a batch, every answer must be the truth: a nil error
// means stored, an error means nothing of it is stored.
func checkAnswersMatchQueue(t *testing.T, s *Store, got map[string]enqueueResult, bodies map[string][]byte) {
	t.Helper()
	for name, r := range got {
		if is := stored(t, s, name, bodies[name]); is != (r.err == nil) {
			t.Errorf("%s: answered %v, but stored = %v", name, r.err, is)
		}
	}
}

func TestGroupCommitDiskFullIsTheAffectedMessagesError(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	// Room for a little more than what is there: a large message cannot
	// fit, as on a full disk.
	err := s.w.do(context.Background(), func(t *wtx) error {
		var pages int
		if err := t.QueryRowContext(t.ctx, "PRAGMA page_count").Scan(&pages); err != nil {
			return err
		}
		_, err := t.ExecContext(t.ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages+40))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{
		"small1": []byte("one\r\n"),
		"large":  bytes.Repeat([]byte("y"), 3*chunkSize),
		"small2": []byte("two\r\n"),
	}
	release := holdWriter(t, s)
	out := make(chan enqueueResult, 3)
	for i, name := range []string{"small1", "large", "small2"} {
		enqueueAsync(context.Background(), s, name, bytes.NewReader(bodies[name]), out)
		waitQueued(t, s, i+1)
	}
	release()
	got := collect(t, out, 3)
	if err := got["large"].err; !errors.Is(err, ErrDiskFull) {
		t.Errorf("large message: %v, want ErrDiskFull (the engine answers 452)", err)
	}
	if err := got["small2"].err; err != nil {
		t.Errorf("small message after the large one: %v, want it stored", err)
	}
	checkAnswersMatchQueue(t, s, got, bodies)
}

func TestGroupCommitLostTransactionIsRetriedForTheRest(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	bodies := map[string][]byte{"first": []byte("a\r\n"), "last": []byte("c\r\n")}
	release := holdWriter(t, s)
	out := make(chan enqueueResult, 2)
	enqueueAsync(context.Background(), s, "first", bytes.NewReader(bodies["first"]), out)
	waitQueued(t, s, 1)
	// A write whose failure takes the whole transaction with it, as an
	// I/O error or an interrupt does in SQLite.
	lost := make(chan error, 1)
	go func() {
		lost <- s.w.do(context.Background(), func(t *wtx) error {
			if _, err := t.ExecContext(t.ctx, "ROLLBACK"); err != nil {
				return err
			}
			return errors.New("simulated I/O error")
		})
	}()
	waitQueued(t, s, 2)
	enqueueAsync(context.Background(), s, "last", bytes.NewReader(bodies["last"]), out)
	waitQueued(t, s, 3)
	release()
	got := collect(t, out, 2)
	if err := <-lost; err == nil {
		t.Error("the failing write reported success")
	}
	if err := got["first"].err; err == nil {
		t.Error("the write before the lost transaction reported success")
	}
	if err := got["last"].err; err != nil {
		t.Errorf("the write after the lost transaction: %v, want it stored in a fresh one", err)
	}
	checkAnswersMatchQueue(t, s, got, bodies)
}

func TestGroupCommitPanicFailsOnlyThatWrite(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	release := holdWriter(t, s)
	out := make(chan enqueueResult, 1)
	panicked := make(chan error, 1)
	go func() {
		panicked <- s.w.do(context.Background(), func(t *wtx) error {
			if _, err := t.ExecContext(t.ctx, "INSERT INTO kv(name, value) VALUES ('half', x'00')"); err != nil {
				return err
			}
			panic("bug")
		})
	}()
	waitQueued(t, s, 1)
	enqueueAsync(context.Background(), s, "ok", strings.NewReader("fine\r\n"), out)
	waitQueued(t, s, 2)
	release()
	if err := <-panicked; err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("panicking write: %v, want an error saying it panicked", err)
	}
	if r := collect(t, out, 1)["ok"]; r.err != nil {
		t.Errorf("the other write: %v", r.err)
	}
	if _, found, _ := s.Value(context.Background(), "half"); found {
		t.Error("the panicking write's half-done work was committed")
	}
}

func TestGroupCommitCallerGivingUpWhileWaitingStoresNothing(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	release := holdWriter(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan enqueueResult, 1)
	enqueueAsync(ctx, s, "impatient", strings.NewReader("x\r\n"), out)
	waitQueued(t, s, 1)
	cancel()
	r := collect(t, out, 1)["impatient"]
	release()
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Enqueue with its context cancelled in line: %v, want context.Canceled", r.err)
	}
	// The next write goes through the same writer after the dropped one.
	enqueue(t, s, "next@example.com", "y\r\n", "rcpt@example.net")
	if stored(t, s, "impatient", nil) {
		t.Error("a message whose sender was told it failed was stored")
	}
}

func TestClosedStoreRefusesWrites(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	s.Close()
	_, err := s.Enqueue(context.Background(), &NewMessage{Sender: "a@example.com", Recipients: []string{"b@example.net"}, ReceivedAt: t0},
		strings.NewReader("x\r\n"))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue on a closed store: %v, want ErrClosed", err)
	}
}

// gathering queues a write, announces another, and waits until the writer
// has taken the first into its next transaction, which then waits for the
// announced one. It returns the announcement's done.
func gathering(ctx context.Context, t *testing.T, s *Store, name string, out chan<- enqueueResult) (done func()) {
	t.Helper()
	release := holdWriter(t, s)
	enqueueAsync(ctx, s, name, strings.NewReader(name+"\r\n"), out)
	waitQueued(t, s, 1)
	done = s.Expect()
	release()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.w.jobs) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not take the queued write")
		}
		time.Sleep(time.Millisecond)
	}
	return done
}

// A transaction that starts while a message is announced waits for it, and
// both are stored by one commit.
func TestAnnouncedWriteSharesTheCommit(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	s.w.window = time.Hour // only the announced write ends the wait here
	out := make(chan enqueueResult, 2)
	done := gathering(context.Background(), t, s, "first", out)
	before := s.w.commits.Load()
	go func() { // as intake asks it: the announcement goes when the write is in line
		id, err := s.Enqueue(context.Background(), &NewMessage{Sender: "second@example.com", Recipients: []string{"rcpt@example.net"},
			ReceivedAt: t0, Expected: done}, strings.NewReader("two\r\n"))
		out <- enqueueResult{"second", id, err}
	}()
	for name, r := range collect(t, out, 2) {
		if r.err != nil {
			t.Fatalf("%s: %v", name, r.err)
		}
	}
	if n := s.w.commits.Load() - before; n != 1 {
		t.Errorf("the two messages took %d commits, want 1", n)
	}
}

// With nothing announced, a write is committed at once: a lone client is
// never kept waiting for others.
func TestLoneWriteIsNotHeldForOthers(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	s.w.window = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Enqueue(ctx, &NewMessage{Sender: "a@example.com", Recipients: []string{"b@example.net"}, ReceivedAt: t0},
		strings.NewReader("hi\r\n")); err != nil {
		t.Fatalf("a lone message was not stored: %v", err)
	}
}

// An announcement withdrawn without a write (the client sent RSET, or went
// away) ends the wait: the writes already taken are committed.
func TestWithdrawnAnnouncementEndsTheWait(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	s.w.window = time.Hour
	out := make(chan enqueueResult, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := gathering(ctx, t, s, "waiting", out)
	done()
	done() // a second call changes nothing
	if r := collect(t, out, 1)["waiting"]; r.err != nil {
		t.Fatalf("the message waiting for an announcement that was withdrawn: %v", r.err)
	}
	if n := s.w.coming.Load(); n != 0 {
		t.Errorf("%d writes still announced, want 0", n)
	}
}
