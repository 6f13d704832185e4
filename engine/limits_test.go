package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"postroom/engine/config"
	"postroom/engine/deliver"
	"postroom/storage"
)

// listed waits until the engine's queue listing (what `queue list` and the
// window show, with why mail waits) satisfies cond.
func (r *relay) listed(what string, cond func(rows []storage.Row) bool) []storage.Row {
	r.t.Helper()
	return r.waitRows(what, r.e.List, cond)
}

// arrivals takes exactly n messages from the next hop and then checks that
// no more come.
func (h *nextHop) arrivals(n int) []received {
	h.t.Helper()
	var got []received
	for range n {
		got = append(got, h.wait())
	}
	h.none(300 * time.Millisecond)
	return got
}

func count(state storage.State) func([]storage.Row) int {
	return func(rows []storage.Row) int {
		n := 0
		for _, r := range rows {
			if r.State == state {
				n++
			}
		}
		return n
	}
}

// queueWhilePaused submits messages while sending is paused, then resumes.
func (r *relay) queueWhilePaused(n int, to string) {
	r.t.Helper()
	ctx := context.Background()
	r.e.SetPaused(ctx, true)
	for range n {
		r.mustSend("a@example.org", []string{to}, simpleBody)
	}
	r.e.SetPaused(ctx, false)
}

func TestRateLimitHoldsMailAndSendsItAll(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Limits.RateLimit = 3
	s.Limits.RateWindow = config.Duration(time.Minute)
	clk := newClock()
	r := startRelay(t, s, Options{Now: clk.Now}, "")
	// One message to two recipients at one next hop is one transaction.
	r.mustSend("a@example.org", []string{"b@example.net", "c@example.net"}, simpleBody)
	if got := hop.wait(); len(got.To) != 2 {
		t.Fatalf("the two recipients came as %v", got.To)
	}
	r.queueWhilePaused(9, "b@example.net")
	// Each window lets 3 transactions through (the first window had one
	// already); all mail leaves in the end.
	sent := []int{len(hop.arrivals(2)) + 1}
	for total := sent[0]; total < 10; {
		rows := r.listed("the rest held by the rate limit", func(rows []storage.Row) bool {
			for _, row := range rows {
				if row.State != storage.Sent && (row.HeldReason != "held by the sending rate limit" || !row.NextAttempt.After(clk.Now())) {
					return false
				}
			}
			return true
		})
		if waiting := len(rows) - count(storage.Sent)(rows); waiting != 10-total {
			t.Fatalf("%d waiting, want %d", waiting, 10-total)
		}
		for _, row := range rows {
			if want := clk.Now().Add(time.Minute); row.State != storage.Sent && row.NextAttempt.After(want) {
				t.Fatalf("next try %v, want no later than the window's end %v", row.NextAttempt, want)
			}
		}
		clk.Advance(time.Minute)
		r.e.Wake()
		n := len(hop.arrivals(min(3, 10-total)))
		sent = append(sent, n)
		total += n
	}
	if fmt.Sprint(sent) != "[3 3 3 1]" {
		t.Fatalf("transactions per window %v, want [3 3 3 1]", sent)
	}
	r.waitFor("all sent", allIn(storage.Sent))
}

func TestRateLimitWindowSurvivesRestart(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Limits.RateLimit = 2
	s.Limits.RateWindow = config.Duration(time.Hour)
	dir := t.TempDir()
	clk := newClock()
	r := startRelay(t, s, Options{Now: clk.Now}, dir)
	r.queueWhilePaused(2, "b@example.net")
	hop.arrivals(2)
	r.waitFor("sent", allIn(storage.Sent))
	r.stop()
	r2 := startRelay(t, s, Options{Now: clk.Now}, dir)
	r2.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	hop.none(300 * time.Millisecond)
	clk.Advance(time.Hour + 2*time.Minute)
	r2.e.Wake()
	hop.wait()
}

func TestWindowLog(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	var w window
	span := time.Minute
	w.inFlight = 2
	w.finish(t0, span, true)
	w.finish(t0.Add(10*time.Second), span, false) // a deferral sent nothing
	if n := w.used(t0.Add(10*time.Second), span); n != 1 {
		t.Fatalf("used %d, want 1", n)
	}
	for i := range 5 {
		w.add(t0.Add(time.Duration(20+i)*time.Second), span)
	}
	if at := w.opensAt(t0.Add(30*time.Second), span, 6); !at.Equal(t0.Add(span)) {
		t.Fatalf("6 of 6 used: opens at %v, want %v", at, t0.Add(span))
	}
	if at := w.opensAt(t0.Add(30*time.Second), span, 3); !at.Equal(t0.Add(22*time.Second + span)) {
		t.Fatalf("6 used, limit 3: opens at %v, want when the 4th oldest ends", at)
	}
	if n := w.used(t0.Add(span+21*time.Second), span); n != 3 {
		t.Fatalf("used after the oldest ended: %d, want 3", n)
	}
	// Entries close together merge, stamped with the latest: never less held.
	var m window
	for i := range 5000 {
		m.add(t0.Add(time.Duration(i)*time.Millisecond), time.Hour)
	}
	if len(m.stamps) > windowEntries+1 || m.used(t0.Add(time.Hour+4998*time.Millisecond), time.Hour) == 0 {
		t.Fatalf("%d entries; the last must still count until its own time plus the span", len(m.stamps))
	}
}

// quotaRelay is a relay that only authenticated clients may use, with a
// user "scanner" whose quota is perHour and perDay.
func quotaRelay(t *testing.T, perHour, perDay int) (*relay, *clock, *nextHop) {
	t.Helper()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Listen.AuthWithoutTLS = true
	s.Access.TrustedNetworks = []string{"192.0.2.0/24"}
	clk := newClock()
	r := startRelay(t, s, Options{Now: clk.Now}, "")
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.store.AddUser(ctx, "scanner", string(hash), clk.Now()); err != nil {
		t.Fatal(err)
	}
	if err := r.e.SetUserQuota(ctx, "Scanner", perHour, perDay); err != nil {
		t.Fatal(err)
	}
	return r, clk, hop
}

func authClient(t *testing.T, r *relay) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(r.e.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "scanner", "correct horse")); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	return c
}

func isReply(err error, code int, enhanced smtp.EnhancedCode) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code == code && se.EnhancedCode == enhanced
}

func TestUserQuotaRefusesWith452AndResets(t *testing.T) {
	t.Parallel()
	r, clk, _ := quotaRelay(t, 2, 3)
	c := authClient(t, r)
	send := func() error {
		return c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(simpleBody))
	}
	for i := range 2 {
		if err := send(); err != nil {
			t.Fatalf("message %d within the quota: %v", i+1, err)
		}
	}
	err := send()
	if !isReply(err, 452, smtp.EnhancedCode{4, 5, 3}) || !strings.Contains(err.Error(), "2 messages per hour") {
		t.Fatalf("third message in an hour: %v, want 452 4.5.3 naming the hourly quota", err)
	}
	r.e.stats.mu.Lock()
	refused := r.e.stats.counts["refused:quota"]
	r.e.stats.mu.Unlock()
	if refused != 1 {
		t.Fatalf("%d quota refusals counted, want 1", refused)
	}
	// An hour later the hourly quota has room again, the daily one has one.
	clk.Advance(time.Hour + time.Second)
	if err := send(); err != nil {
		t.Fatalf("after the hour: %v", err)
	}
	if err := send(); !isReply(err, 452, smtp.EnhancedCode{4, 5, 3}) || !strings.Contains(err.Error(), "3 messages per day") {
		t.Fatalf("fourth message in a day: %v, want 452 4.5.3 naming the daily quota", err)
	}
	clk.Advance(23 * time.Hour)
	if err := send(); err != nil {
		t.Fatalf("the next day: %v", err)
	}
	rows, _ := r.store.List(context.Background(), storage.Filter{})
	if len(rows) != 4 {
		t.Fatalf("%d messages queued, want the 4 accepted", len(rows))
	}
}

func TestUserQuotaCountsTransactionsInProgress(t *testing.T) {
	t.Parallel()
	r, _, _ := quotaRelay(t, 1, 0)
	c1, c2 := authClient(t, r), authClient(t, r)
	if err := c1.Mail("a@example.org", nil); err != nil {
		t.Fatal(err)
	}
	// The last message of the hour is c1's while its transaction lasts.
	if err := c2.Mail("a@example.org", nil); !isReply(err, 452, smtp.EnhancedCode{4, 5, 3}) {
		t.Fatalf("a parallel session took the last message: %v", err)
	}
	if err := c1.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := c2.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(simpleBody)); err != nil {
		t.Fatalf("after the other session gave it up: %v", err)
	}
	if err := c1.Mail("a@example.org", nil); !isReply(err, 452, smtp.EnhancedCode{4, 5, 3}) {
		t.Fatalf("the hour's message was sent, yet: %v", err)
	}
}

func TestDestinationMaxConnections(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	release := make(chan struct{})
	hop.Reply = func(rcpt string) *smtp.SMTPError {
		if rcpt == "slow@example.net" {
			<-release
		}
		return nil
	}
	s := testSettings(hop)
	s.Limits.Destinations = []config.DestinationLimit{{Domain: "example.net", MaxConnections: 1}}
	r := startRelay(t, s, Options{}, "")
	r.mustSend("a@example.org", []string{"slow@example.net"}, simpleBody)
	r.waitFor("the first delivery under way", allIn(storage.Sending))
	// While its one connection is busy, mail for example.net waits;
	// mail for another domain does not.
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	r.mustSend("a@example.org", []string{"c@example.com"}, simpleBody)
	if got := hop.wait(); got.To[0] != "c@example.com" {
		t.Fatalf("got %v first, want the other domain's mail", got.To)
	}
	hop.none(300 * time.Millisecond)
	if n := hop.connections(); n != 2 {
		t.Fatalf("%d connections, want 2 (one per domain)", n)
	}
	close(release)
	hop.arrivals(2)
	r.waitFor("all sent", allIn(storage.Sent))
}

func TestDestinationMessagesPerMinute(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Limits.Destinations = []config.DestinationLimit{{Domain: "*", MessagesPerMinute: 2}, {Domain: "example.com"}}
	clk := newClock()
	r := startRelay(t, s, Options{Now: clk.Now}, "")
	r.e.SetPaused(context.Background(), true)
	r.mustSend("a@example.org", []string{"x@example.com", "y@example.com"}, simpleBody) // no limit for example.com
	r.mustSend("a@example.org", []string{"z@example.com"}, simpleBody)
	r.queueWhilePaused(5, "b@example.net")
	got := hop.arrivals(4)
	net := 0
	for _, m := range got {
		if m.To[0] == "b@example.net" {
			net++
		}
	}
	if net != 2 {
		t.Fatalf("%d messages to example.net in the first minute, want 2", net)
	}
	rows := r.listed("example.net held", func(rows []storage.Row) bool {
		held := 0
		for _, row := range rows {
			if row.HeldReason == "held by the destination limit for example.net" && row.NextAttempt.After(clk.Now()) {
				held++
			}
		}
		return held == 3
	})
	if n := count(storage.Sent)(rows); n != 5 {
		t.Fatalf("%d sent, want 5", n)
	}
	for _, want := range []int{2, 1} {
		clk.Advance(time.Minute)
		r.e.Wake()
		hop.arrivals(want)
	}
	r.waitFor("all sent", allIn(storage.Sent))
}

func TestThrottleReplyHalvesTheDestinationRate(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	hop.Reply = func(rcpt string) *smtp.SMTPError {
		if rcpt == "first@example.net" {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too fast, slow down"}
		}
		return nil
	}
	s := testSettings(hop)
	s.Limits.Destinations = []config.DestinationLimit{{Domain: "example.net", MessagesPerMinute: 4}}
	clk := newClock()
	r := startRelay(t, s, Options{Now: clk.Now}, "")
	ctx := context.Background()
	r.mustSend("a@example.org", []string{"first@example.net"}, simpleBody)
	rows := r.waitFor("deferred", allIn(storage.Deferred))
	if err := r.e.Apply(ctx, "hold", rows[0].MessageID, time.Time{}); err != nil { // out of the way
		t.Fatal(err)
	}
	r.queueWhilePaused(8, "b@example.net")
	hop.arrivals(2) // 4 per minute halved
	clk.Advance(time.Minute)
	r.e.Wake()
	hop.arrivals(2)
	// The slow-down ends after a while; then the full rate applies.
	clk.Advance(slowDownFor)
	r.e.Wake()
	hop.arrivals(4)
	r.waitFor("the rest sent", func(rows []storage.Row) bool { return count(storage.Sent)(rows) == 8 })
}

func TestThrottleHalvingIsBounded(t *testing.T) {
	t.Parallel()
	s := testSettings(nil)
	s.Limits.Destinations = []config.DestinationLimit{{Domain: "*", MessagesPerMinute: 40}}
	l := newLimiter()
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	throttle := []deliver.RcptResult{{Rcpt: "x@big.example", Code: 421, Enhanced: "4.7.0", Text: "slow down"}}
	for i, step := range []struct {
		after time.Duration
		want  int
	}{{0, 20}, {time.Second, 20}, {time.Minute, 10}, {2 * time.Minute, 5}, {20 * time.Minute, 20}} {
		now := t0.Add(step.after)
		l.finished(&s, now, "big.example", nil, throttle)
		d := l.dests["big.example"]
		if got := d.perMinute(40, now); got != step.want {
			t.Fatalf("step %d: %d per minute, want %d", i, got, step.want)
		}
	}
}

func TestSendAtHeaderDelaysDeliveryAndIsRemoved(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	clk := newClock()
	r := startRelay(t, testSettings(hop), Options{Now: clk.Now}, "")
	at := clk.Now().Add(3 * time.Hour).Truncate(time.Second)
	body := "From: a@example.org\r\nPostroom-Send-At: " + at.Format(time.RFC1123Z) + "\r\nSubject: campaign\r\n\r\nMonday at 9.\r\n"
	r.mustSend("a@example.org", []string{"b@example.net"}, body)
	rows := r.waitFor("scheduled", allIn(storage.Scheduled))
	if !rows[0].NextAttempt.Equal(at) {
		t.Fatalf("scheduled for %v, want %v", rows[0].NextAttempt, at)
	}
	hop.none(200 * time.Millisecond)
	clk.Advance(3*time.Hour - time.Second)
	r.e.Wake()
	hop.none(200 * time.Millisecond)
	clk.Advance(time.Second)
	r.e.Wake()
	got := hop.wait()
	if strings.Contains(strings.ToLower(string(got.Data)), "postroom-send-at") {
		t.Fatalf("the recipient sees the field:\n%s", got.Data)
	}
	if !strings.Contains(string(got.Data), "\r\nFrom: a@example.org\r\nSubject: campaign\r\n\r\nMonday at 9.\r\n") {
		t.Fatalf("the message changed otherwise:\n%q", got.Data)
	}
	// The queue lifetime counts from the scheduled time.
	msg, _ := r.store.Message(context.Background(), rows[0].MessageID)
	if !msg.NotBefore.Equal(at) {
		t.Fatalf("NotBefore %v, want %v", msg.NotBefore, at)
	}
}

func TestSendAtInThePastMeansNow(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startRelay(t, testSettings(hop), Options{}, "")
	body := "Postroom-Send-At: Mon, 01 Jan 2001 09:00:00 +0000\r\nSubject: late\r\n\r\nx\r\n"
	r.mustSend("a@example.org", []string{"b@example.net"}, body)
	if got := hop.wait(); strings.Contains(string(got.Data), "Postroom-Send-At") {
		t.Fatalf("the field was delivered:\n%s", got.Data)
	}
}

func TestSendAtRefusals(t *testing.T) {
	t.Parallel()
	s := testSettings(nil)
	s.Delivery.QueueLifetime = config.Duration(48 * time.Hour)
	r := startRelay(t, s, Options{}, "")
	for _, tc := range []struct {
		value    string
		code     int
		enhanced smtp.EnhancedCode
	}{
		{time.Now().Add(72 * time.Hour).Format(time.RFC1123Z), 550, smtp.EnhancedCode{5, 7, 0}},
		{"next Monday at nine", 550, smtp.EnhancedCode{5, 6, 0}},
	} {
		err := r.send("a@example.org", []string{"b@example.net"}, "Postroom-Send-At: "+tc.value+"\r\n\r\nx\r\n")
		if !isReply(err, tc.code, tc.enhanced) {
			t.Errorf("Postroom-Send-At: %s: %v, want %d %v", tc.value, err, tc.code, tc.enhanced)
		}
	}
	if rows, _ := r.store.List(context.Background(), storage.Filter{}); len(rows) != 0 {
		t.Fatalf("%d rows queued", len(rows))
	}
}

// TestScheduledMailWakesTheScheduler uses the real clock and a queue scan
// interval of an hour: the delivery two seconds later can only happen if
// the scheduler sleeps until the scheduled time rather than polling.
func TestScheduledMailWakesTheScheduler(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Delivery.QueueScanInterval = config.Duration(time.Hour)
	r := startRelay(t, s, Options{}, "")
	at := time.Now().Add(2 * time.Second).Truncate(time.Second)
	r.mustSend("a@example.org", []string{"b@example.net"}, "Postroom-Send-At: "+at.Format(time.RFC1123Z)+"\r\n\r\nx\r\n")
	hop.wait()
	if now := time.Now(); now.Before(at) {
		t.Fatalf("delivered at %v, before the asked %v", now, at)
	}
}

func TestQueueScheduleDelaysDelivery(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Delivery.QueueLifetime = config.Duration(24 * time.Hour)
	clk := newClock()
	r := startRelay(t, s, Options{Now: clk.Now}, "")
	ctx := context.Background()
	r.e.SetPaused(ctx, true)
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	rows := r.waitFor("queued", allIn(storage.Queued))
	id := rows[0].MessageID
	if err := r.e.Apply(ctx, "schedule", id, clk.Now().Add(25*time.Hour)); err == nil {
		t.Fatal("a time beyond the queue lifetime was accepted")
	}
	if err := r.e.Apply(ctx, "schedule", id, clk.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.e.SetPaused(ctx, false)
	r.listed("scheduled", allIn(storage.Scheduled))
	hop.none(300 * time.Millisecond)
	clk.Advance(2 * time.Hour)
	r.e.Wake()
	hop.wait()
	r.waitFor("sent", allIn(storage.Sent))
}

func TestPauseHoldsEverythingAndResumeSendsIt(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startRelay(t, testSettings(hop), Options{}, "")
	ctx := context.Background()
	r.e.SetPaused(ctx, true)
	for _, to := range []string{"a@example.net", "b@example.com", "c@example.net"} {
		r.mustSend("a@example.org", []string{to}, simpleBody)
	}
	hop.none(300 * time.Millisecond)
	r.listed("shown as paused", func(rows []storage.Row) bool {
		for _, row := range rows {
			if row.State != storage.Queued || row.HeldReason != "sending is paused" {
				return false
			}
		}
		return len(rows) == 3
	})
	r.e.SetPaused(ctx, false)
	hop.arrivals(3)
	r.waitFor("all sent", allIn(storage.Sent))
}

func TestNoOpenRelayForUntrustedClients(t *testing.T) {
	t.Parallel()
	s := testSettings(nil)
	s.Access.TrustedNetworks = []string{"192.0.2.0/24"} // 127.0.0.1 is outside
	r := startRelay(t, s, Options{}, "")
	c, err := smtp.Dial(r.e.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{
		"b@example.net",                      // plain external recipient
		"user%elsewhere.example@example.net", // percent hack
		"elsewhere.example!user@example.net", // bang path
		"@a.example:b@example.net",           // source route
		`"user@elsewhere.example"@example.net`,
		`"user%elsewhere.example"@example.net`,
		`"elsewhere.example!user"@example.net`,
	} {
		if err := c.Mail("a@example.org", nil); err != nil {
			t.Fatal(err)
		}
		err := c.Rcpt(rcpt, nil)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code < 500 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
			t.Errorf("RCPT TO:<%s> from an untrusted client: %v, want a 5.7.1 refusal", rcpt, err)
		}
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
	}
	if rows, _ := r.store.List(context.Background(), storage.Filter{}); len(rows) != 0 {
		t.Fatalf("%d rows queued", len(rows))
	}
}

// TestConnectionFlood opens 300 connections at once from 127.0.0.1: all
// but max_connections_per_ip are answered 421 4.7.0 and closed, and a
// client at 127.0.0.2 is still served meanwhile.
func TestConnectionFlood(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	s := testSettings(hop)
	s.Limits.MaxConnectionsPerIP = 5
	r := startRelay(t, s, Options{}, "")
	const flood = 300
	var wg sync.WaitGroup
	var mu sync.Mutex
	replies := map[string]int{}
	var held []net.Conn
	start := time.Now()
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", r.e.ListenAddr(), 5*time.Second)
			if err != nil {
				mu.Lock()
				replies["dial: "+err.Error()]++
				mu.Unlock()
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				replies["read: "+err.Error()]++
				c.Close()
			case strings.HasPrefix(line, "220"):
				replies["220"]++
				held = append(held, c) // keep the slot taken
			default:
				replies[strings.TrimSpace(line)]++
				c.Close()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d connections answered in %v: %v", flood, elapsed, replies)
	if replies["220"] != 5 || replies["421 4.7.0 Too many connections from your address, try again later"] != flood-5 {
		t.Fatalf("replies %v; want 5 greetings and %d refusals with 421 4.7.0", replies, flood-5)
	}
	// Another address is served while 127.0.0.1 is at its cap.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", r.e.ListenAddr())
	if err != nil {
		t.Skipf("cannot bind a client to 127.0.0.2: %v", err)
	}
	c := smtp.NewClient(conn)
	if err := c.Hello("other.test"); err != nil {
		t.Fatalf("127.0.0.2 not served: %v", err)
	}
	if err := c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(simpleBody)); err != nil {
		t.Fatalf("127.0.0.2 could not send: %v", err)
	}
	c.Quit()
	hop.wait()
	for _, h := range held {
		h.Close()
	}
}
