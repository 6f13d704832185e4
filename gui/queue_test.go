package gui

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"postroom/engine"
)

// queueRows makes n rows, newest (highest ID) first, two recipients per
// message.
func queueRows(n int) []engine.QueueRow {
	var rows []engine.QueueRow
	for i := n; i >= 1; i-- {
		var r engine.QueueRow
		r.ID = int64(i)
		r.MessageID = int64(1000 + (i+1)/2)
		r.Address = fmt.Sprintf("rcpt%d@example.net", i)
		r.Sender = "shop@example.org"
		r.Subject = fmt.Sprintf("Invoice %d", i)
		r.State = engine.StateDeferred
		r.Attempts = 2
		r.NextAttempt = time.Now().Add(time.Hour)
		r.LastError = "451 4.7.1 greylisted"
		rows = append(rows, r)
	}
	return rows
}

func openQueue(t *testing.T, h *harness) *queueView {
	t.Helper()
	h.do(func() { h.u.tabs.SelectIndex(1) })
	q := h.u.queue
	h.until(t, "the queue page", func() bool { return len(q.rows) > 0 })
	return q
}

func TestQueueActionsUseTheTickedMessages(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(6)
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)

	// Rows 0 and 1 are two recipients of message 1003; row 2 is of 1002.
	h.do(func() { q.setChecked(q.rows[0].ID, true) })
	h.do(func() { q.setChecked(q.rows[1].ID, true) })
	h.do(func() { q.setChecked(q.rows[2].ID, true) })
	h.do(func() { test.Tap(q.actions["hold"]) })
	var got []int64
	for range 2 {
		a := waitFor(t, eng.applied, "Apply")
		if a.action != "hold" {
			t.Errorf("Hold button applied %q", a.action)
		}
		got = append(got, a.id)
	}
	slices.Sort(got)
	if !slices.Equal(got, []int64{1002, 1003}) {
		t.Errorf("Hold applied to messages %v, want [1002 1003] (each once)", got)
	}
	select {
	case a := <-eng.applied:
		t.Errorf("an extra action: %+v", a)
	default:
	}
}

func TestQueueDeleteAsksFirst(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(2)
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)

	h.do(func() { q.table.Select(widget.TableCellID{Row: 1, Col: 3}) })
	if id := waitFor(t, eng.shown, "the detail to be read"); id != 1001 {
		t.Errorf("selecting a row of message 1001 showed message %d", id)
	}
	h.until(t, "the detail", func() bool { return strings.Contains(q.detail.Text, "Subject: invoice") })
	if !strings.Contains(q.detail.Text, "From:    shop@example.org") {
		t.Errorf("detail:\n%s", q.detail.Text)
	}

	h.do(func() { test.Tap(q.actions["delete"]) })
	confirm, ok := h.u.window.Canvas().Overlays().Top().(*widget.PopUp)
	if !ok || confirm == nil {
		t.Fatal("Delete did not ask for confirmation")
	}
	select {
	case a := <-eng.applied:
		t.Fatalf("Delete acted before it was confirmed: %+v", a)
	default:
	}
	var yes *widget.Button
	walk(confirm.Content, func(b *widget.Button) {
		if b.Text == "Yes" {
			yes = b
		}
	})
	if yes == nil {
		t.Fatal("no Yes button in the confirmation")
	}
	h.do(func() { test.Tap(yes) })
	if a := waitFor(t, eng.applied, "Apply after confirming"); a.action != "delete" || a.id != 1001 {
		t.Errorf("confirmed Delete applied %+v, want delete of 1001", a)
	}
}

func TestQueueFilterAndPaging(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(queuePage + 5)
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)
	if len(q.rows) != queuePage || q.older.Disabled() {
		t.Fatalf("first page has %d rows, Older enabled %v", len(q.rows), !q.older.Disabled())
	}
	h.do(func() { test.Tap(q.older) })
	h.until(t, "the second page", func() bool { return len(q.rows) == 5 })
	if q.pageInfo.Text != "Page 2" || !q.older.Disabled() {
		t.Errorf("second page: %q, Older enabled %v", q.pageInfo.Text, !q.older.Disabled())
	}
	eng.set(func(f *fakeEngine) {
		if last := f.lists[len(f.lists)-1]; last.BeforeID != int64(6) {
			t.Errorf("second page asked for BeforeID %d, want 6 (the last row's ID)", last.BeforeID)
		}
	})

	h.do(func() { q.stateSel.SetSelected("Held") })
	h.until(t, "the filtered page", func() bool { return len(q.rows) == 0 })
	if q.status.Text != "No mail matches." {
		t.Errorf("empty filter says %q", q.status.Text)
	}
	eng.set(func(f *fakeEngine) {
		last := f.lists[len(f.lists)-1]
		if len(last.States) != 1 || last.States[0] != engine.StateHeld || last.BeforeID != 0 {
			t.Errorf("Held filter asked for %+v", last)
		}
	})
	h.do(func() { q.stateSel.SetSelected("All mail") })
	h.do(func() { test.Type(q.search, "Invoice 104") })
	h.until(t, "the search result", func() bool { return len(q.rows) >= 1 && q.rows[0].Subject == "Invoice 104" })
}
