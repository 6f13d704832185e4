package engine

import (
	"sync/atomic"
	"testing"
	"time"

	"postroom/storage"
)

// announcingStore counts the messages intake has announced to the store
// (Store.Expect) and not yet withdrawn.
type announcingStore struct {
	*storage.Store
	open atomic.Int64
}

func (a *announcingStore) Expect() func() {
	done := a.Store.Expect()
	a.open.Add(1)
	var called atomic.Bool
	return func() {
		if called.CompareAndSwap(false, true) {
			a.open.Add(-1)
		}
		done()
	}
}

// settled waits until every announcement is withdrawn, failing after a
// generous while: a session's end runs on its own goroutine.
func (a *announcingStore) settled(t *testing.T, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); a.open.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d announcement(s) still open; every commit would wait for mail that is not coming", what, a.open.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A session announces its message to the store from MAIL FROM on, so that
// a commit under way may wait for it, and withdraws the announcement on
// every way the transaction can end: the message stored, RSET, a new MAIL,
// QUIT, a refused DATA, or the client vanishing.
func TestEveryTransactionWithdrawsItsAnnouncement(t *testing.T) {
	var st *announcingStore
	hop := newNextHop(t) // the stored message goes here, not to DNS
	r := startRelayWrapped(t, testSettings(hop), Options{}, "", func(s *storage.Store) Store {
		st = &announcingStore{Store: s}
		return st
	})
	defer r.stop()

	open := func(c *rawClient) {
		c.expect("EHLO client.test", 250)
		c.expect("MAIL FROM:<a@example.org>", 250)
		if n := st.open.Load(); n != 1 {
			t.Fatalf("after MAIL FROM %d announcements are open, want 1", n)
		}
	}

	c := dialRaw(t, r)
	open(c)
	c.expect("RCPT TO:<b@example.net>", 250)
	c.expect("DATA", 354)
	c.expect("Subject: hi\r\n\r\nhello\r\n.", 250)
	st.settled(t, "message stored")

	open(c)
	c.expect("RSET", 250)
	st.settled(t, "RSET")

	open(c)
	c.expect("MAIL FROM:<c@example.org>", 250) // starts over: still one message on its way
	if n := st.open.Load(); n != 1 {
		t.Fatalf("after a second MAIL FROM %d announcements are open, want 1", n)
	}
	c.expect("RSET", 250)
	st.settled(t, "RSET after a second MAIL")

	open(c)
	c.expect("DATA", 502) // no recipient yet
	c.expect("QUIT", 221)
	st.settled(t, "QUIT")

	c = dialRaw(t, r)
	open(c)
	c.expect("RCPT TO:<b@example.net>", 250)
	c.expect("DATA", 354)
	c.conn.Close() // gone in the middle of the message
	st.settled(t, "client gone during DATA")

	c = dialRaw(t, r)
	open(c)
	c.conn.Close()
	st.settled(t, "client gone after MAIL FROM")
}
