package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	_ "modernc.org/sqlite"
)

// countingHop records every delivery by Message-ID with the time of its
// 250, and every report (mail from <>). It waits a few milliseconds before
// each 250 so that a kill finds deliveries in flight.
type countingHop struct {
	ln      net.Listener
	mu      sync.Mutex
	acks    map[string][]time.Time
	reports int
	more    chan struct{}
}

func newCountingHop(t *testing.T) *countingHop {
	h := &countingHop{acks: map[string][]time.Time{}, more: make(chan struct{}, 10000)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &countingSession{h: h}, nil }))
	srv.Domain = "hop.test"
	srv.ErrorLog = discardLogger{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

type countingSession struct {
	h    *countingHop
	from string
}

func (s *countingSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *countingSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *countingSession) Reset()                               {}
func (s *countingSession) Logout() error                        { return nil }
func (s *countingSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	<-time.After(time.Duration(rand.IntN(20)) * time.Millisecond) // a hop that takes its time
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if s.from == "" {
		s.h.reports++
		return nil
	}
	id := ""
	for line := range strings.SplitSeq(string(data), "\r\n") {
		if v, ok := strings.CutPrefix(line, "Message-ID: "); ok {
			id = v
			break
		}
	}
	s.h.acks[id] = append(s.h.acks[id], time.Now())
	s.h.more <- struct{}{}
	return nil
}

// TestKillAtRandomMomentsUnderLoadLosesNothing kills `postroom serve` with
// SIGKILL three times at a random moment while five clients send and mail
// is being delivered, restarting it each time. Every message that got its
// 250 arrives; a message arrives twice only when its first delivery was
// acknowledged just before a kill (in flight: the relay had no time to
// record it); no report is sent for anything.
func TestKillAtRandomMomentsUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	h := newCountingHop(t)
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := writeConfig(t, dir, port, h.ln.Addr().String())
	// Reports to the senders (example.org) would come here too.
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "[[delivery.routes]]\ndomain = \"example.org\"\nhost = %q\n", h.ln.Addr().String())
	f.Close()

	var (
		mu       sync.Mutex
		accepted []string
		kills    []time.Time
		next     atomic.Int64
	)
	const rounds, perRound, clients = 3, 34, 5
	for round := range rounds {
		args := []string{}
		if round == 0 {
			args = []string{"--config", cfg}
		}
		srv := startServe(t, bin, dir, args...)
		srv.waitListening(t, addr)
		quota := int64((round + 1) * perRound)
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					n := next.Add(1)
					if n > quota {
						next.Add(-1)
						return
					}
					id := fmt.Sprintf("<kill-%d@example.org>", n)
					if err := sendMessage(addr, id); err != nil {
						return // the relay died under this client
					}
					mu.Lock()
					accepted = append(accepted, id)
					mu.Unlock()
				}
			}()
		}
		// Kill somewhere in intake or in delivery.
		<-time.After(time.Duration(50+rand.IntN(500)) * time.Millisecond)
		mu.Lock()
		kills = append(kills, time.Now())
		mu.Unlock()
		srv.cmd.Process.Signal(syscall.SIGKILL)
		srv.cmd.Wait()
		wg.Wait()
	}
	srv := startServe(t, bin, dir)
	srv.waitListening(t, addr)
	t.Logf("%d messages accepted over %d kills", len(accepted), len(kills))

	// Every accepted message arrives.
	deadline := time.After(90 * time.Second)
	for {
		h.mu.Lock()
		missing := 0
		for _, id := range accepted {
			if len(h.acks[id]) == 0 {
				missing++
			}
		}
		h.mu.Unlock()
		if missing == 0 {
			break
		}
		select {
		case <-h.more:
		case <-deadline:
			t.Fatalf("%d of %d accepted messages never arrived", missing, len(accepted))
		}
	}
	// The queue settles with everything sent.
	var rows []map[string]any
	for settled := false; !settled; {
		out, err := runCLI(t, bin, "queue", "list", "--json", "--data", dir)
		if err != nil {
			t.Fatalf("queue list: %v\n%s", err, out)
		}
		rows = nil
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatal(err)
		}
		settled = true
		for _, r := range rows {
			if r["state"] != "sent" {
				settled = false
			}
		}
		if !settled {
			select {
			case <-h.more:
			case <-time.After(200 * time.Millisecond): // polling the queue from outside
			case <-deadline:
				t.Fatalf("queue not settled: %v", rows)
			}
		}
	}
	// A message committed just before a kill, whose 250 the client never
	// saw, is queued and sent too: more rows than 250s is right.
	if len(rows) < len(accepted) {
		t.Errorf("queue has %d rows for %d accepted messages", len(rows), len(accepted))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	dups := 0
	for id, acks := range h.acks {
		if len(acks) < 2 {
			continue
		}
		dups++
		// Each delivery but the last was acknowledged within moments of
		// a kill: the relay died before it could record it.
		for _, ack := range acks[:len(acks)-1] {
			inFlight := false
			for _, k := range kills {
				if d := k.Sub(ack); d >= -100*time.Millisecond && d < 2*time.Second {
					inFlight = true
				}
			}
			if !inFlight {
				t.Errorf("%s delivered %d times, once at %v, kills at %v: not a delivery in flight", id, len(acks), ack, kills)
			}
		}
		if len(acks) > len(kills)+1 {
			t.Errorf("%s delivered %d times with only %d kills", id, len(acks), len(kills))
		}
	}
	t.Logf("%d duplicates, all from deliveries in flight at a kill", dups)
	if h.reports != 0 {
		t.Errorf("%d delivery reports were sent, want none: everything was delivered", h.reports)
	}
}

// TestLockedDatabaseAtStartSaysWhichFile holds an exclusive SQLite lock on
// the data directory's database, as another program would, and starts
// `postroom serve` on it: it must stop with an error that names the file
// and says what is wrong, not hang or panic.
func TestLockedDatabaseAtStartSaysWhichFile(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	dir := t.TempDir()
	if out, err := runCLI(t, bin, "queue", "list", "--data", dir); err != nil {
		t.Fatalf("creating the database: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "postroom.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=locking_mode(EXCLUSIVE)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, stmt := range []string{"BEGIN EXCLUSIVE", "CREATE TABLE IF NOT EXISTS lock_test(x)", "COMMIT", "BEGIN EXCLUSIVE"} {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	defer conn.ExecContext(ctx, "ROLLBACK")

	srv := startServe(t, bin, dir)
	done := make(chan error, 1)
	go func() { done <- srv.cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("serve started on a locked database")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve neither started nor gave up on a locked database")
	}
	msg := srv.stderr.String()
	if !strings.Contains(msg, path) || !strings.Contains(msg, "locked by another program") || strings.Contains(msg, "panic") {
		t.Errorf("the error does not name the file and the lock:\n%s", msg)
	}
}

// serveFailsWith starts `postroom serve` on dir, which must refuse to start
// within a minute, and returns what it wrote to stderr.
func serveFailsWith(t *testing.T, bin, dir string) string {
	t.Helper()
	srv := startServe(t, bin, dir)
	done := make(chan error, 1)
	go func() { done <- srv.cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("serve started and ended without an error")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve neither started nor gave up")
	}
	msg := srv.stderr.String()
	if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") {
		t.Fatalf("serve panicked:\n%s", msg)
	}
	return msg
}

// TestCorruptDatabaseAtStartSaysWhichFileAndWhatToDo: a data directory
// whose database is not a database (a disk error, a file copied over it)
// stops `postroom serve` with an error naming the file and the remedy.
func TestCorruptDatabaseAtStartSaysWhichFileAndWhatToDo(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "postroom.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not a database\n", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := serveFailsWith(t, bin, dir)
	if !strings.Contains(msg, path) || !strings.Contains(msg, "move it aside") {
		t.Errorf("the error does not name the file and what to do:\n%s", msg)
	}
	// A real database whose pages were garbled says the same.
	dir2 := t.TempDir()
	if out, err := runCLI(t, bin, "queue", "list", "--data", dir2); err != nil {
		t.Fatalf("creating a database: %v\n%s", err, out)
	}
	path2 := filepath.Join(dir2, "postroom.db")
	data, err := os.ReadFile(path2)
	if err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{"-wal", "-shm"} {
		os.Remove(path2 + side)
	}
	// Keep the header, garble the rest: the schema pages are unreadable.
	for i := 100; i < len(data); i++ {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path2, data, 0o600); err != nil {
		t.Fatal(err)
	}
	msg = serveFailsWith(t, bin, dir2)
	if !strings.Contains(msg, path2) || !strings.Contains(msg, "move it aside") {
		t.Errorf("a garbled database: the error does not name the file and what to do:\n%s", msg)
	}
}

// TestReadOnlyDatabaseAtStartSaysWhichFileAndWhatToDo puts the data
// directory on a file system mounted read-only (as root; otherwise the
// directory and file lose their write permission) and starts `postroom
// serve`: it stops with an error naming the file and saying it must be
// writable.
func TestReadOnlyDatabaseAtStartSaysWhichFileAndWhatToDo(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	dir := t.TempDir()
	root := os.Geteuid() == 0
	if root {
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Skipf("skipped: as root a read-only file system is needed (mount failed: %v: %s), and root ignores file permissions", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	}
	if out, err := runCLI(t, bin, "queue", "list", "--data", dir); err != nil {
		t.Fatalf("creating the database: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "postroom.db")
	if root {
		if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
			t.Fatalf("remounting read-only: %v: %s", err, out)
		}
	} else {
		os.Chmod(path, 0o400)
		os.Chmod(dir, 0o500)
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
	}
	msg := serveFailsWith(t, bin, dir)
	if !strings.Contains(msg, path) || !strings.Contains(msg, "writable") {
		t.Errorf("the error does not name the file and say it must be writable:\n%s", msg)
	}
}
