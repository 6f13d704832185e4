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

// headerButton finds the queue table's heading button whose text starts
// with title, as the user sees it on screen.
func headerButton(t *testing.T, h *harness, q *queueView, title string) *widget.Button {
	t.Helper()
	var found *widget.Button
	h.do(func() {
		walk(q.table, func(b *widget.Button) {
			if strings.HasPrefix(b.Text, title) && b.Visible() {
				found = b
			}
		})
	})
	if found == nil {
		t.Fatalf("no column heading %q in the queue table", title)
	}
	return found
}

func tapHeader(t *testing.T, h *harness, q *queueView, title string) {
	t.Helper()
	b := headerButton(t, h, q, title)
	h.do(func() { test.Tap(b) })
}

func TestQueueSortsByTappedColumn(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(5)
	sizes := []int64{300, 100, 500, 200, 400}
	for i := range eng.rows {
		eng.rows[i].Size = sizes[i]
	}
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)
	order := func() []int64 {
		var out []int64
		h.do(func() {
			for _, r := range q.rows {
				out = append(out, r.Size)
			}
		})
		return out
	}
	if got := order(); !slices.Equal(got, sizes) {
		t.Fatalf("unsorted page has sizes %v, want the newest first %v", got, sizes)
	}
	tapHeader(t, h, q, "Size")
	if got := order(); !slices.Equal(got, []int64{100, 200, 300, 400, 500}) {
		t.Errorf("after tapping Size: %v, want smallest first", got)
	}
	if b := headerButton(t, h, q, "Size"); b.Text != "Size ▲" {
		t.Errorf("sorted heading reads %q, want an arrow", b.Text)
	}
	tapHeader(t, h, q, "Size")
	if got := order(); !slices.Equal(got, []int64{500, 400, 300, 200, 100}) {
		t.Errorf("after tapping Size twice: %v, want largest first", got)
	}
	if !strings.Contains(q.status.Text, "sorted by Size, descending") {
		t.Errorf("status %q does not say how the page is sorted", q.status.Text)
	}
	tapHeader(t, h, q, "Size")
	if got := order(); !slices.Equal(got, sizes) {
		t.Errorf("a third tap gives %v, want newest first again", got)
	}
	// A reload (an event, a new page) keeps the chosen order.
	tapHeader(t, h, q, "To")
	h.u.queue.reload()
	h.do(func() {
		if q.rows[0].Address != "rcpt1@example.net" {
			t.Errorf("after a reload sorted by To the first row is %s", q.rows[0].Address)
		}
	})
}

func TestQueueTickAllOnPageActsOnEveryMessage(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(6) // messages 1001..1003
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)
	h.do(func() {
		if q.allCheck == nil {
			t.Fatal("no tick-all box over the tick column")
		}
		q.allCheck.SetChecked(true)
	})
	if !strings.Contains(q.status.Text, "6 rows ticked") {
		t.Errorf("status after ticking all: %q", q.status.Text)
	}
	h.do(func() { test.Tap(q.actions["retry"]) })
	var got []int64
	for range 3 {
		got = append(got, waitFor(t, eng.applied, "Retry").id)
	}
	slices.Sort(got)
	if !slices.Equal(got, []int64{1001, 1002, 1003}) {
		t.Errorf("Retry with all ticked applied to %v", got)
	}
}

func TestQueueSendAtSchedulesTheChosenMessages(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(4)
	eng.rows[0].State = engine.StateHeld
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)
	h.do(func() {
		q.setChecked(q.rows[0].ID, true) // message 1002
		q.setChecked(q.rows[3].ID, true) // message 1001
		test.Tap(q.actions["schedule"])
	})
	if q.sendAt == nil {
		t.Fatal("Send at… did not ask for a time")
	}
	dlg := h.u.window.Canvas().Overlays().Top()
	var schedule *widget.Button
	walk(dlg, func(b *widget.Button) {
		if b.Text == "Schedule" {
			schedule = b
		}
	})
	if schedule == nil {
		t.Fatal("no Schedule button in the Send at dialog")
	}
	past := time.Now().Add(-time.Hour).Format(sendAtLayout)
	h.do(func() { q.sendAt.SetText(past) })
	if !schedule.Disabled() {
		t.Error("Schedule can be pressed with a time that has passed")
	}
	if err := q.sendAt.Validate(); err == nil || !strings.Contains(err.Error(), "that time has passed") {
		t.Errorf("a past time is explained as %v", err)
	}
	want := time.Now().Add(26 * time.Hour).Truncate(time.Minute)
	h.do(func() { q.sendAt.SetText(want.Format(sendAtLayout)) })
	h.do(func() { test.Tap(schedule) })
	var ids []int64
	for range 2 {
		a := waitFor(t, eng.applied, "schedule")
		if a.action != "schedule" || !a.at.Equal(want) {
			t.Errorf("applied %s at %v, want schedule at %v", a.action, a.at, want)
		}
		ids = append(ids, a.id)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []int64{1001, 1002}) {
		t.Errorf("scheduled messages %v, want [1001 1002]", ids)
	}
	h.until(t, "the outcome", func() bool { return strings.Contains(q.status.Text, "2 messages will be sent at") })
}

func TestQueueDetailShowsTheText(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(2)
	eng.preview = "Dear Ann,\nplease find invoice 7 attached."
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)
	h.do(func() { q.table.Select(widget.TableCellID{Row: 0, Col: 4}) })
	h.until(t, "the detail", func() bool { return strings.Contains(q.detail.Text, "What it says") })
	if !strings.Contains(q.detail.Text, "What it says\n  Dear Ann,\n  please find invoice 7 attached.\n") {
		t.Errorf("detail does not show the message's text:\n%s", q.detail.Text)
	}
}

func TestQueueStaysPagedWithAHundredThousandRows(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(100_000)
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)
	if len(q.rows) != queuePage {
		t.Fatalf("the table holds %d rows, want one page of %d", len(q.rows), queuePage)
	}
	for page := 2; page <= 4; page++ {
		h.do(func() { test.Tap(q.older) })
		h.until(t, "the next page", func() bool { return q.pageInfo.Text == fmt.Sprintf("Page %d", page) })
	}
	if first := q.rows[0].ID; first != 100_000-3*queuePage {
		t.Errorf("page 4 starts at row %d, want %d", first, 100_000-3*queuePage)
	}
	eng.set(func(f *fakeEngine) {
		for _, l := range f.lists {
			if l.Limit != queuePage {
				t.Errorf("the queue was read with limit %d, want pages of %d", l.Limit, queuePage)
			}
		}
	})
}
