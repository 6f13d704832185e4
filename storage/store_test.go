package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

func enqueue(t testing.TB, s *Store, sender string, body string, rcpts ...string) int64 {
	t.Helper()
	id, err := s.Enqueue(context.Background(), &NewMessage{
		Sender: sender, Recipients: rcpts, ReceivedAt: t0, Subject: "hello " + sender,
	}, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestOpenIsDurable(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	var sync int
	if err := s.db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Fatalf("synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
	var mode string
	if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	id := enqueue(t, s, "a@example.com", "body\r\n", "b@example.net")
	s.Close()
	s, err = Open(context.Background(), path)
	if err != nil {
		t.Fatalf("second open: %v", err)
	}
	defer s.Close()
	m, err := s.Message(context.Background(), id)
	if err != nil || m.Sender != "a@example.com" {
		t.Fatalf("after reopen: %+v, %v", m, err)
	}
	var n int
	s.db.QueryRow("SELECT count(*) FROM schema_migrations").Scan(&n)
	if entries, _ := migrationFiles.ReadDir("migrations"); n != len(entries) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(entries))
	}
}

func TestOpenCorruptFileSaysWhatToDo(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 500), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), path)
	if err == nil {
		t.Fatal("opened a file that is not a database")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("error does not name the file and the remedy: %v", err)
	}
}

func TestOpenReadOnlyDirectorySaysWhatToDo(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("skipped: root ignores file permissions, so a read-only directory cannot be simulated")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	_, err := Open(context.Background(), filepath.Join(dir, FileName))
	if err == nil || !strings.Contains(err.Error(), "writable") {
		t.Fatalf("want a clear 'writable' error, got %v", err)
	}
}

func TestBodyRoundTripAcrossChunks(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 17} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte('a' + i%26)
		}
		id, err := s.Enqueue(context.Background(), &NewMessage{Sender: "a@x.example", Recipients: []string{"b@y.example"}, ReceivedAt: t0}, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.OpenBody(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("size %d: read back %d bytes, err %v", size, len(got), err)
		}
		m, _ := s.Message(context.Background(), id)
		if m.Size != int64(size) {
			t.Fatalf("size %d recorded as %d", size, m.Size)
		}
	}
}

// A message deleted while it is being sent must not go out cut short.
func TestBodyDeletedWhileReadIsAnError(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	body := bytes.Repeat([]byte("x"), 2*chunkSize+5)
	id, err := s.Enqueue(ctx, &NewMessage{Sender: "a@x.example", Recipients: []string{"b@y.example"}, ReceivedAt: t0}, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.OpenBody(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, "DELETE FROM message_chunks WHERE message_id = ? AND seq > 0", id); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading on after the message was deleted: %d more bytes, err %v; want io.ErrUnexpectedEOF", len(got), err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("client went away") }

func TestEnqueueWithBrokenBodyStoresNothing(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	body := io.MultiReader(strings.NewReader(strings.Repeat("x", chunkSize+5)), failingReader{})
	if _, err := s.Enqueue(context.Background(), &NewMessage{Sender: "a@x.example", Recipients: []string{"b@y.example"}, ReceivedAt: t0}, body); err == nil {
		t.Fatal("Enqueue succeeded with a failing body")
	}
	var n int
	s.db.QueryRow("SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM recipients) + (SELECT count(*) FROM message_chunks)").Scan(&n)
	if n != 0 {
		t.Fatalf("%d rows left behind", n)
	}
}

func TestClaimDueOnlyOnceAndRelease(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	enqueue(t, s, "a@x.example", "1\r\n", "r1@y.example", "r2@z.example")
	id2, err := s.Enqueue(ctx, &NewMessage{Sender: "a@x.example", Recipients: []string{"later@y.example"}, ReceivedAt: t0, NotBefore: t0.Add(time.Hour)}, strings.NewReader("2\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	due, err := s.ClaimDue(ctx, t0, 10, 3*time.Hour)
	if err != nil || len(due) != 2 {
		t.Fatalf("claimed %d (%v), want the 2 immediate recipients", len(due), err)
	}
	if again, _ := s.ClaimDue(ctx, t0.Add(time.Minute), 10, time.Hour); len(again) != 0 {
		t.Fatalf("claimed %d recipients twice", len(again))
	}
	next, ok, err := s.NextDue(ctx)
	if err != nil || !ok || !next.Equal(t0.Add(time.Hour)) {
		t.Fatalf("NextDue = %v %v %v, want the scheduled time %v", next, ok, err, t0.Add(time.Hour))
	}
	sched, _ := s.ClaimDue(ctx, t0.Add(time.Hour), 10, 3*time.Hour)
	if len(sched) != 1 || sched[0].MessageID != id2 || !sched[0].Start().Equal(t0.Add(time.Hour)) {
		t.Fatalf("scheduled claim = %+v", sched)
	}
	n, err := s.ReleaseClaims(ctx, t0.Add(2*time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("released %d (%v), want 3", n, err)
	}
	if again, _ := s.ClaimDue(ctx, t0.Add(2*time.Hour), 10, time.Hour); len(again) != 3 {
		t.Fatalf("after release claimed %d, want 3", len(again))
	}
}

func TestRecordResultsAndAttemptLog(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	id := enqueue(t, s, "a@x.example", "1\r\n", "ok@y.example", "later@y.example", "bad@y.example")
	due, _ := s.ClaimDue(ctx, t0, 10, time.Hour)
	at := t0.Add(time.Second)
	results := []Result{
		{RecipientID: due[0].RecipientID, State: Sent, At: at, Host: "mx.y.example", Code: 250, Text: "ok"},
		{RecipientID: due[1].RecipientID, State: Deferred, NextAttempt: at.Add(5 * time.Minute), At: at, Host: "mx.y.example", Code: 451, Text: "try later"},
		{RecipientID: due[2].RecipientID, State: Bounced, At: at, Host: "mx.y.example", Code: 550, Text: "no such user", Notify: true},
	}
	if err := s.RecordResults(ctx, results); err != nil {
		t.Fatal(err)
	}
	rcpts, _ := s.Recipients(ctx, id)
	want := map[string]State{"ok@y.example": Sent, "later@y.example": Deferred, "bad@y.example": Bounced}
	for _, r := range rcpts {
		if r.State != want[r.Address] || r.Attempts != 1 {
			t.Errorf("%s: state %s attempts %d, want %s 1", r.Address, r.State, r.Attempts, want[r.Address])
		}
	}
	log, _ := s.Attempts(ctx, id)
	if len(log) != 3 || log[2].Code != 550 || log[2].Host != "mx.y.example" {
		t.Fatalf("attempt log = %+v", log)
	}
	counts, _ := s.CountByState(ctx)
	if counts[Sent] != 1 || counts[Deferred] != 1 || counts[Bounced] != 1 || counts[Sending] != 0 {
		t.Fatalf("counts = %v", counts)
	}
	if next, ok, _ := s.NextDue(ctx); !ok || !next.Equal(at.Add(5*time.Minute)) {
		t.Fatalf("next due %v, want the deferral", next)
	}
}

func TestHoldDuringDeliveryWinsOverFailureButNotOverSent(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	id := enqueue(t, s, "a@x.example", "1\r\n", "r1@y.example", "r2@y.example")
	due, _ := s.ClaimDue(ctx, t0, 10, time.Hour)
	if _, err := s.Apply(ctx, id, Hold, time.Time{}, t0, "held by the owner"); err != nil {
		t.Fatal(err)
	}
	s.RecordResults(ctx, []Result{
		{RecipientID: due[0].RecipientID, State: Deferred, NextAttempt: t0.Add(time.Minute), At: t0, Code: 451},
		{RecipientID: due[1].RecipientID, State: Sent, At: t0, Code: 250},
	})
	rcpts, _ := s.Recipients(ctx, id)
	if rcpts[0].State != Held || rcpts[1].State != Sent {
		t.Fatalf("states %s %s, want held sent", rcpts[0].State, rcpts[1].State)
	}
}

func TestBounceOwedExactlyOnce(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	id := enqueue(t, s, "a@x.example", "1\r\n", "bad1@y.example", "bad2@y.example")
	due, _ := s.ClaimDue(ctx, t0, 10, time.Hour)
	var results []Result
	for _, d := range due {
		results = append(results, Result{RecipientID: d.RecipientID, State: Bounced, At: t0, Code: 550, Notify: true})
	}
	s.RecordResults(ctx, results)
	owed, err := s.OwedBounces(ctx, 10)
	if err != nil || len(owed) != 1 || owed[0].Message.ID != id || len(owed[0].Recipients) != 2 {
		t.Fatalf("owed = %+v, %v", owed, err)
	}
	dsn := &NewMessage{Sender: "", Recipients: []string{"a@x.example"}, ReceivedAt: t0, IsDSN: true}
	if _, err := s.EnqueueBounce(ctx, dsn, strings.NewReader("dsn\r\n"), []int64{due[0].RecipientID, due[1].RecipientID}); err != nil {
		t.Fatal(err)
	}
	if owed, _ := s.OwedBounces(ctx, 10); len(owed) != 0 {
		t.Fatalf("still owed after the DSN was queued: %+v", owed)
	}
	// A second builder that read the same owed list (a `queue bounce`
	// beside the running relay) is refused and adds nothing.
	if _, err := s.EnqueueBounce(ctx, dsn, strings.NewReader("dsn\r\n"), []int64{due[0].RecipientID}); !errors.Is(err, ErrNotOwed) {
		t.Fatalf("second DSN for the same failure: err = %v, want ErrNotOwed", err)
	}
	rows, _ := s.List(ctx, Filter{Sender: ""})
	var dsns int
	for _, r := range rows {
		if r.Sender == "" && r.Address == "a@x.example" {
			dsns++
		}
	}
	if dsns != 1 {
		t.Fatalf("%d DSNs queued, want 1", dsns)
	}
}

func TestApplyActions(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	id := enqueue(t, s, "a@x.example", "1\r\n", "r@y.example")
	state := func() State {
		r, _ := s.Recipients(ctx, id)
		return r[0].State
	}
	steps := []struct {
		action Action
		at     time.Time
		want   State
	}{
		{Hold, time.Time{}, Held},
		{Release, time.Time{}, Queued},
		{Schedule, t0.Add(24 * time.Hour), Scheduled},
		{Retry, time.Time{}, Queued},
		{Schedule, t0.Add(-time.Hour), Queued}, // a time in the past means now
		{Bounce, time.Time{}, Bounced},
	}
	for _, st := range steps {
		if _, err := s.Apply(ctx, id, st.action, st.at, t0, "by test"); err != nil {
			t.Fatalf("action %d: %v", st.action, err)
		}
		if got := state(); got != st.want {
			t.Fatalf("after action %d: state %s, want %s", st.action, got, st.want)
		}
	}
	if _, err := s.Apply(ctx, id, Hold, time.Time{}, t0, ""); !errors.Is(err, ErrNothingToDo) {
		t.Fatalf("hold of a bounced message: %v, want ErrNothingToDo", err)
	}
	if owed, _ := s.OwedBounces(ctx, 10); len(owed) != 1 {
		t.Fatalf("a bounce by the user owes the sender a DSN; owed = %d", len(owed))
	}
	if _, err := s.Apply(ctx, id, Delete, time.Time{}, t0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Message(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("message still there after delete: %v", err)
	}
	if _, err := s.Apply(ctx, 9999, Retry, time.Time{}, t0, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("retry of an unknown ID: %v, want ErrNotFound", err)
	}
	counts, _ := s.CountByState(ctx)
	for st, n := range counts {
		if n != 0 {
			t.Errorf("count of %s is %d after delete, want 0", st, n)
		}
	}
}

// Bouncing or rescheduling mail in the middle of an attempt would undo the
// attempt's result or send delivered mail twice: it waits for the attempt.
func TestBounceAndScheduleWaitForTheAttemptInProgress(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	id := enqueue(t, s, "a@x.example", "1\r\n", "r@y.example")
	if due, err := s.ClaimDue(ctx, t0, 10, time.Hour); err != nil || len(due) != 1 {
		t.Fatalf("claim: %v, %d", err, len(due))
	}
	for _, a := range []Action{Bounce, Schedule} {
		if _, err := s.Apply(ctx, id, a, t0.Add(time.Hour), t0, "by the user"); !errors.Is(err, ErrBeingSent) {
			t.Errorf("action %d on a recipient being sent: err %v, want ErrBeingSent", a, err)
		}
	}
	r, _ := s.Recipients(ctx, id)
	if r[0].State != Sending {
		t.Fatalf("state %s, want it still being sent", r[0].State)
	}
	if owed, _ := s.OwedBounces(ctx, 10); len(owed) != 0 {
		t.Fatalf("a DSN is owed for mail that may yet be delivered: %+v", owed)
	}
}

func TestListFiltersAndPages(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	for i := 0; i < 25; i++ {
		enqueue(t, s, "alice@x.example", "1\r\n", "r@y.example")
	}
	enqueue(t, s, "bob@x.example", "1\r\n", "special@z.example")
	rows, _ := s.List(ctx, Filter{Text: "SPECIAL"})
	if len(rows) != 1 || rows[0].Sender != "bob@x.example" {
		t.Fatalf("text filter: %+v", rows)
	}
	rows, _ = s.List(ctx, Filter{Sender: "alice@x.example", Limit: 10})
	seen := map[int64]bool{}
	pages := 0
	for len(rows) > 0 {
		pages++
		for _, r := range rows {
			if seen[r.ID] || r.Sender != "alice@x.example" {
				t.Fatalf("row %d repeated or wrong sender", r.ID)
			}
			seen[r.ID] = true
		}
		rows, _ = s.List(ctx, Filter{Sender: "alice@x.example", Limit: 10, BeforeID: rows[len(rows)-1].ID})
	}
	if len(seen) != 25 || pages != 3 {
		t.Fatalf("paged through %d rows in %d pages, want 25 in 3", len(seen), pages)
	}
	if rows, _ := s.List(ctx, Filter{States: []State{Sent}}); len(rows) != 0 {
		t.Fatalf("state filter returned %d rows", len(rows))
	}
}

func TestSettingsVersions(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	if _, _, found, err := s.Settings(ctx); found || err != nil {
		t.Fatalf("fresh database has settings: %v %v", found, err)
	}
	if _, found, err := s.SettingsVersion(ctx); found || err != nil {
		t.Fatalf("fresh database has a settings version: %v %v", found, err)
	}
	s.SaveSettings(ctx, "a = 1", t0)
	v, _ := s.SaveSettings(ctx, "a = 2", t0)
	doc, version, found, err := s.Settings(ctx)
	if !found || err != nil || doc != "a = 2" || version != v || v != 2 {
		t.Fatalf("Settings() = %q %d %v %v", doc, version, found, err)
	}
	if version, found, err := s.SettingsVersion(ctx); !found || err != nil || version != v {
		t.Fatalf("SettingsVersion() = %d %v %v, want %d", version, found, err, v)
	}
}

func TestValues(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	if _, found, _ := s.Value(ctx, "paused"); found {
		t.Fatal("unset value found")
	}
	s.SetValue(ctx, "paused", []byte("1"))
	if v, found, _ := s.Value(ctx, "paused"); !found || string(v) != "1" {
		t.Fatalf("value = %q %v", v, found)
	}
	s.SetValue(ctx, "paused", nil)
	if _, found, _ := s.Value(ctx, "paused"); found {
		t.Fatal("value still set after removal")
	}
}

func TestDKIMKeysNewestFirst(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	s.SaveDKIMKey(ctx, DKIMKey{Domain: "example.com", Selector: "old", Algorithm: "ed25519", PrivateKeyPEM: []byte("k1"), Created: t0})
	s.SaveDKIMKey(ctx, DKIMKey{Domain: "example.com", Selector: "new", Algorithm: "ed25519", PrivateKeyPEM: []byte("k2"), Created: t0.Add(time.Hour)})
	if err := s.SaveDKIMKey(ctx, DKIMKey{Domain: "example.com", Selector: "new", Algorithm: "ed25519", PrivateKeyPEM: []byte("k3"), Created: t0}); err == nil {
		t.Fatal("a second key with the same selector was stored")
	}
	keys, err := s.DKIMKeys(ctx, "example.com")
	if err != nil || len(keys) != 2 || keys[0].Selector != "new" || string(keys[1].PrivateKeyPEM) != "k1" {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	if err := s.RemoveDKIMKey(ctx, "example.com", "old"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDKIMKey(ctx, "example.com", "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing a missing key: %v", err)
	}
	if keys, _ := s.DKIMKeys(ctx, ""); len(keys) != 1 {
		t.Fatalf("%d keys left, want 1", len(keys))
	}
}

func TestLeaseExpiryMakesClaimDueAgain(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	enqueue(t, s, "a@x.example", "1\r\n", "r@y.example")
	if due, _ := s.ClaimDue(ctx, t0, 10, time.Minute); len(due) != 1 {
		t.Fatal("nothing claimed")
	}
	if due, _ := s.ClaimDue(ctx, t0.Add(59*time.Second), 10, time.Minute); len(due) != 0 {
		t.Fatal("claimed again within the lease")
	}
	if due, _ := s.ClaimDue(ctx, t0.Add(time.Minute), 10, time.Minute); len(due) != 1 {
		t.Fatal("not due again after the lease ran out")
	}
}

func TestRunLockAdmitsOneRelay(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	ctx := context.Background()
	first, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := Open(ctx, path) // as another process would
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	unlock, err := first.LockRun()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.LockRun(); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second relay on the same queue: err %v, want ErrInUse naming %s", err, path)
	}
	unlock()
	unlock2, err := second.LockRun()
	if err != nil {
		t.Fatalf("lock not free after the first relay stopped: %v", err)
	}
	unlock2()
}
