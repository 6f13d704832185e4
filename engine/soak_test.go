package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postroom/engine/config"
	"postroom/storage"
)

// soak is how long TestSoak sends; `go test -run TestSoak -soak=10m` runs
// it longer.
var soak = flag.Duration("soak", 10*time.Second, "how long TestSoak keeps sending")

// flakyHop is a next hop that fails at random: 15% of RCPTs and 15% of
// DATA with 451, 3% of RCPTs with 550. Reports (from <>) always get in, so
// that each bounce is seen. It counts what it accepted by Message-ID.
type flakyHop struct {
	srv *smtp.Server
	ln  net.Listener

	mu        sync.Mutex
	delivered map[string]int // "message-id rcpt" -> times accepted
	reported  map[string]int // "message-id rcpt" -> times in a DSN
}

func newFlakyHop(t *testing.T) *flakyHop {
	h := &flakyHop{delivered: map[string]int{}, reported: map[string]int{}}
	h.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &flakySession{h: h}, nil }))
	h.srv.Domain = "flaky.test"
	h.srv.MaxLineLength = 4096
	h.srv.ErrorLog = smtpLogger{slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln
	go h.srv.Serve(ln)
	return h
}

type flakySession struct {
	h    *flakyHop
	from string
	to   []string
}

var (
	err451 = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	err550 = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
)

func (s *flakySession) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.to = from, nil
	return nil
}

func (s *flakySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.from != "" {
		switch p := rand.Float64(); {
		case p < 0.03:
			return err550
		case p < 0.18:
			return err451
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *flakySession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.from != "" && rand.Float64() < 0.15 {
		return err451
	}
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if s.from == "" {
		// A report: which recipients of which message it is about.
		id := header(data, "Message-ID")
		for line := range strings.SplitSeq(string(data), "\r\n") {
			if rcpt, ok := strings.CutPrefix(line, "Final-Recipient: rfc822; "); ok {
				s.h.reported[id+" "+rcpt]++
			}
		}
		return nil
	}
	id := header(data, "Message-ID")
	for _, to := range s.to {
		s.h.delivered[id+" "+to]++
	}
	return nil
}

func (s *flakySession) Reset()        { s.from, s.to = "", nil }
func (s *flakySession) Logout() error { return nil }

// header returns the last value of the named field in data (a report
// carries the original header after its own).
func header(data []byte, name string) string {
	var v string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if k, val, ok := strings.Cut(sc.Text(), ":"); ok && strings.EqualFold(k, name) {
			v = strings.TrimSpace(val)
		}
	}
	return v
}

// TestSoakEveryMessageDeliveredOrBouncedOnceAndNothingLeaks runs 50
// clients against a relay whose next hop fails 30% of the time, then
// checks each accepted recipient was delivered or reported exactly once,
// and that goroutines and heap return to where they started. It is not
// parallel: it measures the whole process.
//
// A message counts as accepted only when the client saw the 250 after its
// data. A 4xx at intake (a busy database answers 451 4.3.0) is not
// acceptance: the client keeps the message, and the relay must not have
// queued it either, or the hop would see it without the client knowing.
func TestSoakEveryMessageDeliveredOrBouncedOnceAndNothingLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak test runs for a while; not with -short")
	}
	goroutines, heap := settle(0, 0)

	hop := newFlakyHop(t)
	s := testSettings(nil)
	s.Delivery.Routes = []config.Route{{Domain: "example.net", Host: hop.ln.Addr().String()}, {Domain: "example.org", Host: hop.ln.Addr().String()}}
	s.Delivery.RetryInitial = config.Duration(time.Second)
	s.Delivery.RetryMax = config.Duration(2 * time.Second)
	s.Limits.MaxConnectionsPerIP = 100
	s.Limits.MaxConnections = 200
	// Warnings and errors are kept as evidence for a failure.
	var logMu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := startRelay(t, s, Options{Logger: logger}, "")
	defer func() {
		if t.Failed() {
			logMu.Lock()
			t.Logf("relay warnings and errors:\n%s", tail(logs.String(), 40))
			logMu.Unlock()
		}
	}()

	type sent struct {
		id    string
		rcpts []string
	}
	var (
		mu       sync.Mutex
		accepted []sent
		notTaken = map[string]bool{} // Message-IDs answered 4xx at intake
		replies  = map[string]int{}  // intake 4xx replies by code, for the log
	)
	stop := time.Now().Add(*soak)
	var clients sync.WaitGroup
	for c := range 50 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			for n := 0; time.Now().Before(stop); n++ {
				id := fmt.Sprintf("<%d.%d@soak.test>", c, n)
				rcpts := []string{fmt.Sprintf("u%d@example.net", n%7)}
				if n%3 == 0 {
					rcpts = append(rcpts, fmt.Sprintf("w%d@example.net", n%5))
				}
				size := 500
				switch p := rand.IntN(100); {
				case p < 5:
					size = 300 << 10
				case p < 30:
					size = 20 << 10
				}
				body := "From: s@example.org\r\nSubject: soak\r\nMessage-ID: " + id + "\r\n\r\n" +
					strings.Repeat(strings.Repeat("m", 70)+"\r\n", size/72)
				err := soakSend(r.e.ListenAddr(), "s@example.org", rcpts, body)
				if err == nil {
					mu.Lock()
					accepted = append(accepted, sent{id, rcpts})
					mu.Unlock()
					continue
				}
				// Overload may be answered with a 4xx; anything else
				// is a fault.
				var se *smtp.SMTPError
				if !errors.As(err, &se) || se.Code/100 != 4 {
					t.Errorf("message %s refused for good: %v", id, err)
				}
				mu.Lock()
				notTaken[id] = true
				replies[err.Error()]++
				mu.Unlock()
			}
		}()
	}
	clients.Wait()
	t.Logf("%d messages accepted, %d answered 4xx (%v), in %v", len(accepted), len(notTaken), replies, *soak)
	if len(accepted) == 0 {
		t.Fatal("nothing was accepted")
	}
	if len(notTaken) > 0 {
		logMu.Lock()
		for line := range strings.SplitSeq(logs.String(), "\n") {
			if strings.Contains(line, "storing a message") || strings.Contains(line, "spooling") {
				t.Logf("why intake answered 4xx, from the relay's log: %s", line)
				break
			}
		}
		logMu.Unlock()
	}

	// Every recipient, and every report, reaches a final state.
	deadline := time.Now().Add(2*time.Minute + *soak)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		rows, err := r.store.List(context.Background(), storage.Filter{Limit: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		var open []storage.Row
		for _, row := range rows {
			if !row.State.Final() {
				open = append(open, row)
			}
		}
		if len(open) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d recipients still not final after the hop stopped failing for good:\n%s",
				len(open), describeRows(r, open[:min(len(open), 10)]))
		}
		<-tick.C
	}

	hop.mu.Lock()
	acceptedKeys := map[string]bool{}
	bad := 0
	for _, m := range accepted {
		for _, rcpt := range m.rcpts {
			k := m.id + " " + rcpt
			acceptedKeys[k] = true
			if got := hop.delivered[k] + hop.reported[k]; got != 1 && bad < 10 {
				bad++
				t.Errorf("%s: delivered %d times, reported %d times; want once in all", k, hop.delivered[k], hop.reported[k])
			}
		}
	}
	// Nothing arrives that the relay did not accept: a message answered
	// 4xx at intake must not be in the queue.
	for k, n := range hop.delivered {
		id, _, _ := strings.Cut(k, " ")
		if !acceptedKeys[k] && bad < 20 {
			bad++
			t.Errorf("%s delivered %d times but never accepted (answered 4xx at intake: %v)", k, n, notTaken[id])
		}
	}
	bounced := 0
	for _, n := range hop.reported {
		bounced += n
	}
	hop.mu.Unlock()
	t.Logf("%d recipients reported as bounced", bounced)

	r.stop()
	hop.srv.Close()
	g, h := settle(goroutines, heap)
	t.Logf("goroutines %d -> %d, heap %d KiB -> %d KiB", goroutines, g, heap>>10, h>>10)
	if g > goroutines+2 {
		var buf [1 << 16]byte
		t.Errorf("goroutines: %d at the start, %d at the end\n%s", goroutines, g, buf[:runtime.Stack(buf[:], true)])
	}
	if h > heap+16<<20 {
		t.Errorf("heap: %d KiB at the start, %d KiB at the end", heap>>10, h>>10)
	}
}

// soakSend sends one message on its own connection. Only the reply to the
// data decides: an error after the 250 (at QUIT) does not undo acceptance.
// Every step has a deadline, so a stuck relay fails the test instead of
// hanging it.
func soakSend(addr, from string, to []string, body string) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	if err := c.SendMail(from, to, strings.NewReader(body)); err != nil {
		return err
	}
	c.Quit()
	return nil
}

// describeRows shows queue rows with their attempt logs, as evidence of
// where they are stuck.
func describeRows(r *relay, rows []storage.Row) string {
	var b strings.Builder
	for _, row := range rows {
		fmt.Fprintf(&b, "  message %d %s: %s, attempts %d, next %v, last %d %q\n", row.MessageID, row.Address,
			row.State, row.Attempts, row.NextAttempt, row.LastCode, row.LastError)
		attempts, err := r.store.Attempts(context.Background(), row.MessageID)
		if err != nil {
			fmt.Fprintf(&b, "    attempt log: %v\n", err)
			continue
		}
		for _, a := range attempts {
			fmt.Fprintf(&b, "    %+v\n", a)
		}
	}
	return b.String()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// settle collects garbage and returns the goroutine count and live heap,
// waiting (up to 10s) for them to come down to the given levels.
func settle(goroutines int, heap uint64) (int, uint64) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		g := runtime.NumGoroutine()
		if (g <= goroutines+2 && ms.HeapAlloc <= heap+16<<20) || goroutines == 0 || time.Now().After(deadline) {
			return g, ms.HeapAlloc
		}
		<-time.After(100 * time.Millisecond) // nothing signals a goroutine's end: poll
	}
}
