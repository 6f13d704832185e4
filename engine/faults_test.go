package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postroom/engine/config"
	"postroom/storage"
)

// hopAction is what a scriptHop connection does after the final ".".
type hopAction int

const (
	hopAccept   hopAction = iota // 250
	hopHang                      // never answers
	hopDrop                      // closes the connection
	hopDropRcpt                  // closes the connection at the first RCPT
)

// scriptHop is a next hop written byte by byte, for faults go-smtp's
// server cannot be made to show: hanging after ".", dropping the
// connection, lacking 8BITMIME.
type scriptHop struct {
	t      testing.TB
	ln     net.Listener
	ext    []string                 // EHLO keywords
	action func(conn int) hopAction // by connection number, from 1
	got    chan []byte
	conns  atomic.Int32
	done   chan struct{}
	wg     sync.WaitGroup
}

func newScriptHop(t testing.TB, ext []string, action func(conn int) hopAction) *scriptHop {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &scriptHop{t: t, ln: ln, ext: ext, action: action, got: make(chan []byte, 100), done: make(chan struct{})}
	h.wg.Add(1)
	go h.serve()
	t.Cleanup(func() {
		close(h.done)
		ln.Close()
		h.wg.Wait()
	})
	return h
}

func (h *scriptHop) addr() string { return h.ln.Addr().String() }

func (h *scriptHop) serve() {
	defer h.wg.Done()
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		n := int(h.conns.Add(1))
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer c.Close()
			stop := context.AfterFunc(contextOf(h.done), func() { c.Close() })
			defer stop()
			h.session(c, h.action(n))
		}()
	}
}

// contextOf is a context that ends when done is closed.
func contextOf(done chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-done
		cancel()
	}()
	return ctx
}

func (h *scriptHop) session(c net.Conn, act hopAction) {
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "220 scripthop.test ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			out := "250-scripthop.test\r\n"
			for _, e := range h.ext {
				out += "250-" + e + "\r\n"
			}
			fmt.Fprint(c, out+"250 ENHANCEDSTATUSCODES\r\n")
		case strings.HasPrefix(cmd, "RCPT") && act == hopDropRcpt:
			return
		case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"), cmd == "RSET", cmd == "NOOP":
			fmt.Fprint(c, "250 2.0.0 OK\r\n")
		case cmd == "DATA":
			fmt.Fprint(c, "354 go ahead\r\n")
			var data []byte
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data = append(data, l...)
			}
			switch act {
			case hopHang:
				<-h.done
				return
			case hopDrop:
				return
			}
			h.got <- data
			fmt.Fprint(c, "250 2.0.0 OK queued\r\n")
		case cmd == "QUIT":
			fmt.Fprint(c, "221 2.0.0 bye\r\n")
			return
		default:
			fmt.Fprint(c, "500 5.5.2 what\r\n")
		}
	}
}

func (h *scriptHop) wait() []byte {
	h.t.Helper()
	select {
	case d := <-h.got:
		return d
	case <-time.After(10 * time.Second):
		h.t.Fatal("timed out waiting for a message at the scripted hop")
	}
	return nil
}

// TestNextHopFailingAfterDotRetriesAndLogsDuplicatePossible proves, for a
// hop that hangs after "." and one that drops the connection there, that
// the recipient is deferred with "a duplicate is possible" in the attempt
// log and is delivered at the retry; a drop before the end of the data
// says nothing about duplicates.
func TestNextHopFailingAfterDotRetriesAndLogsDuplicatePossible(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		first     hopAction
		duplicate bool
	}{
		{"hangs after the dot", hopHang, true},
		{"drops after the dot", hopDrop, true},
		{"drops at RCPT", hopDropRcpt, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hop := newScriptHop(t, []string{"8BITMIME", "PIPELINING"}, func(n int) hopAction {
				if n == 1 {
					return tc.first
				}
				return hopAccept
			})
			s := testSettings(nil)
			s.Delivery.Routes = []config.Route{{Domain: "example.net", Host: hop.addr()}}
			clk := newClock()
			r := startRelay(t, s, Options{Now: clk.Now, CommandTimeout: 2 * time.Second, DataTimeout: 500 * time.Millisecond}, "")
			r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
			rows := r.waitFor("deferred", allIn(storage.Deferred))
			attempts, err := r.store.Attempts(context.Background(), rows[0].MessageID)
			if err != nil || len(attempts) != 1 {
				t.Fatalf("attempts %v, %v", attempts, err)
			}
			said := strings.Contains(attempts[0].Text, "duplicate is possible")
			if said != tc.duplicate {
				t.Fatalf("attempt log %q: says duplicate possible = %v, want %v", attempts[0].Text, said, tc.duplicate)
			}
			clk.Advance(2 * time.Minute)
			r.e.Wake()
			hop.wait()
			rows = r.waitFor("sent", allIn(storage.Sent))
			if rows[0].Attempts != 2 {
				t.Errorf("attempts = %d, want 2", rows[0].Attempts)
			}
		})
	}
}

// TestEightBitMailToHopWithout8BITMIMEBouncesWithAClearReason: Postroom
// does not convert to quoted-printable; the sender learns why.
func TestEightBitMailToHopWithout8BITMIMEBouncesWithAClearReason(t *testing.T) {
	t.Parallel()
	old := newScriptHop(t, []string{"PIPELINING"}, func(int) hopAction { return hopAccept })
	senderHop := newNextHop(t)
	s := testSettings(nil)
	s.Delivery.Routes = []config.Route{{Domain: "example.net", Host: old.addr()}, {Domain: "example.org", Host: senderHop.addr()}}
	r := startRelay(t, s, Options{}, "")
	r.mustSend("a@example.org", []string{"b@example.net"}, "Subject: caf\xc3\xa9\r\n\r\nCaf\xc3\xa9 cr\xc3\xa8me.\r\n")
	dsn := senderHop.wait()
	if dsn.From != "" || dsn.To[0] != "a@example.org" {
		t.Fatalf("DSN from %q to %v", dsn.From, dsn.To)
	}
	human, report, _ := dsnOf(t, dsn.Data)
	if !strings.Contains(report, "Status: 5.6.3") || !strings.Contains(report, "8BITMIME") {
		t.Errorf("report does not say 8BITMIME is missing:\n%s", report)
	}
	if !strings.Contains(human, "8BITMIME") {
		t.Errorf("the human-readable part does not say why:\n%s", human)
	}
	select {
	case d := <-old.got:
		t.Fatalf("the 8-bit message went to the hop without 8BITMIME: %q", d)
	default:
	}
}

// faultyStore fails Enqueue as a full disk does until told to recover.
type faultyStore struct {
	*storage.Store
	full atomic.Bool
}

func (f *faultyStore) Enqueue(ctx context.Context, m *storage.NewMessage, body io.Reader) (int64, error) {
	if f.full.Load() {
		io.Copy(io.Discard, body)
		return 0, fmt.Errorf("writing the message: %w: database or disk is full (SQLITE_FULL)", storage.ErrDiskFull)
	}
	return f.Store.Enqueue(ctx, m, body)
}

func TestDiskFullAnswers452AndRecovers(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	dir := t.TempDir()
	st, err := storage.Open(context.Background(), filepath.Join(dir, storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	fs := &faultyStore{Store: st}
	fs.full.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{Store: fs, Listener: ln, SpoolDir: dir})
	if err := e.SaveSettings(context.Background(), testSettings(hop)); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, e: e, store: st, dir: dir}
	t.Cleanup(r.stop)
	events, cancel := e.Subscribe(10)
	defer cancel()

	err = r.send("a@example.org", []string{"b@example.net"}, simpleBody)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("with the disk full: %v, want 452 4.3.1", err)
	}
	if n := queued(t, r); n != 0 {
		t.Fatalf("%d messages queued with the disk full", n)
	}
	waitEvent(t, events, EventError, "disk is full")
	fs.full.Store(false)
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	hop.wait()
}

func waitEvent(t *testing.T, events <-chan Event, kind EventKind, text string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Kind == kind && strings.Contains(ev.Text, text) {
				return
			}
		case <-timeout:
			t.Fatalf("no %v event saying %q", kind, text)
		}
	}
}

// TestDiskFullOnARealFileSystemAnswers452AndRecovers runs the relay on a
// 4 MiB tmpfs, fills it, and frees it again. It needs root to mount.
func TestDiskFullOnARealFileSystemAnswers452AndRecovers(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root; the fault-injecting store test covers the engine's side")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	hop := newNextHop(t)
	s := testSettings(hop)
	r := startRelay(t, s, Options{}, dir)
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	hop.wait()

	// Fill the file system to the last byte.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
	f.Close()

	big := "Subject: big\r\nMessage-ID: <big@example.org>\r\n\r\n" + strings.Repeat(strings.Repeat("z", 76)+"\r\n", 4000)
	err = r.send("a@example.org", []string{"b@example.net"}, big)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("with the disk full: %v, want 452 4.3.1", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r.mustSend("a@example.org", []string{"b@example.net"}, big)
	hop.wait()
	// The database is sound: it reopens (Open runs an integrity check)
	// with both delivered messages.
	r.stop()
	st, err := storage.Open(context.Background(), filepath.Join(dir, storage.FileName))
	if err != nil {
		t.Fatalf("reopening after the disk was full: %v", err)
	}
	defer st.Close()
	rows, err := st.List(context.Background(), storage.Filter{Limit: 10})
	if err != nil || len(rows) != 2 {
		t.Fatalf("rows %d, %v; want the 2 accepted messages", len(rows), err)
	}
}
