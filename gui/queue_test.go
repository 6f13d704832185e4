package gui

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
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

// matchedCall is one ApplyMatching the fake engine was asked to do.
type matchedCall struct {
	action string
	filter engine.QueueFilter
}

// fakeMatches reports whether a filter selects a row, as the engine would.
func fakeMatches(r engine.QueueRow, f engine.QueueFilter) bool {
	return (f.Text == "" || strings.Contains(r.Address+r.Sender+r.Subject, f.Text)) &&
		(len(f.States) == 0 || slices.Contains(f.States, r.State))
}

// fakeMatching is the rows a filter selects.
func fakeMatching(rows []engine.QueueRow, f engine.QueueFilter) []engine.QueueRow {
	var out []engine.QueueRow
	for _, r := range rows {
		if fakeMatches(r, f) {
			out = append(out, r)
		}
	}
	return out
}

// fakeList is a page of the fake engine's listing: the matching rows
// sorted as the filter says (ties newest first, as the rows are given),
// from after the cursor's row, each row carrying its cursor.
func fakeList(rows []engine.QueueRow, f engine.QueueFilter) []engine.QueueRow {
	if f.Sort == engine.SortNewest && !f.Reverse {
		// The rows are given newest first: read only up to the page's end,
		// so that 100,000 rows cost a page.
		var out []engine.QueueRow
		started := f.After.RecipientID == 0 && f.BeforeID == 0
		for _, r := range rows {
			if !started {
				started = r.ID == f.After.RecipientID || f.After.RecipientID == 0 && r.ID < f.BeforeID
				if r.ID == f.After.RecipientID {
					continue
				}
			}
			if started && fakeMatches(r, f) {
				r.Cursor = engine.QueueCursor{MessageID: r.MessageID, RecipientID: r.ID}
				out = append(out, r)
				if len(out) == f.Limit {
					break
				}
			}
		}
		return out
	}
	rows = fakeMatching(rows, f)
	key := func(r engine.QueueRow) int64 {
		switch f.Sort {
		case engine.SortSize:
			return r.Size
		case engine.SortAttempts:
			return int64(r.Attempts)
		}
		return 0
	}
	slices.SortStableFunc(rows, func(a, b engine.QueueRow) int {
		var c int
		switch f.Sort {
		case engine.SortNewest:
			return 0 // given newest first
		case engine.SortRecipient:
			c = strings.Compare(a.Address, b.Address)
		default:
			c = cmp.Compare(key(a), key(b))
		}
		if f.Reverse {
			c = -c
		}
		return c
	})
	start := 0
	for i, r := range rows {
		if f.After.RecipientID != 0 && r.ID == f.After.RecipientID {
			start = i + 1
		}
		if f.After.RecipientID == 0 && f.BeforeID != 0 && r.ID >= f.BeforeID {
			start = i + 1
		}
	}
	rows = rows[start:]
	if f.Limit > 0 && len(rows) > f.Limit {
		rows = rows[:f.Limit]
	}
	for i := range rows {
		rows[i].Cursor = engine.QueueCursor{MessageID: rows[i].MessageID, RecipientID: rows[i].ID}
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
	if len(q.rows) != queuePage || q.next.Disabled() {
		t.Fatalf("first page has %d rows, Older enabled %v", len(q.rows), !q.next.Disabled())
	}
	h.do(func() { test.Tap(q.next) })
	h.until(t, "the second page", func() bool { return len(q.rows) == 5 })
	if q.pageInfo.Text != "Page 2" || !q.next.Disabled() {
		t.Errorf("second page: %q, Older enabled %v", q.pageInfo.Text, !q.next.Disabled())
	}
	eng.set(func(f *fakeEngine) {
		if last := f.lists[len(f.lists)-1]; last.After.RecipientID != 6 {
			t.Errorf("second page asked for rows after %+v, want after recipient 6 (the last row)", last.After)
		}
	})

	h.do(func() { q.stateSel.SetSelected("Held") })
	h.until(t, "the filtered page", func() bool { return len(q.rows) == 0 })
	if q.status.Text != "No mail matches." {
		t.Errorf("empty filter says %q", q.status.Text)
	}
	eng.set(func(f *fakeEngine) {
		last := f.lists[len(f.lists)-1]
		if len(last.States) != 1 || last.States[0] != engine.StateHeld || last.After.RecipientID != 0 {
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

// sizesShown are the sizes of the rows in the table, top to bottom. Call
// it holding the UI lock (inside h.until or h.do).
func sizesShown(q *queueView) []int64 {
	var out []int64
	for _, r := range q.rows {
		out = append(out, r.Size)
	}
	return out
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
	shows := func(what string, want []int64) {
		t.Helper()
		h.until(t, what, func() bool { return slices.Equal(sizesShown(q), want) })
	}
	shows("the newest first", sizes)
	tapHeader(t, h, q, "Size")
	shows("smallest first after tapping Size", []int64{100, 200, 300, 400, 500})
	if b := headerButton(t, h, q, "Size"); b.Text != "Size ▲" {
		t.Errorf("sorted heading reads %q, want an arrow", b.Text)
	}
	tapHeader(t, h, q, "Size")
	shows("largest first after tapping Size twice", []int64{500, 400, 300, 200, 100})
	h.until(t, "the status to say how the queue is sorted", func() bool {
		return strings.Contains(q.status.Text, "sorted by Size, descending")
	})
	tapHeader(t, h, q, "Size")
	shows("newest first again after a third tap", sizes)
	// A reload (an event, a new page) keeps the chosen order.
	tapHeader(t, h, q, "To")
	h.until(t, "sorted by To", func() bool { return q.rows[0].Address == "rcpt1@example.net" })
	h.u.queue.reload()
	h.do(func() {
		if q.rows[0].Address != "rcpt1@example.net" {
			t.Errorf("after a reload sorted by To the first row is %s", q.rows[0].Address)
		}
	})
}

// Tapping a heading asks the engine for the first page of the whole queue
// in that order, not for the page shown sorted; Next continues that order
// from the last row's cursor; the taps cycle ascending, descending, newest.
func TestQueueSortAsksTheEngineForTheWholeQueue(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(queuePage + 50)
	for i := range eng.rows {
		eng.rows[i].Size = int64(1000 + (i*37+5)%len(eng.rows)) // 1000 to 1149, shuffled
	}
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)
	lastList := func() (f engine.QueueFilter) {
		eng.set(func(e *fakeEngine) { f = e.lists[len(e.lists)-1] })
		return f
	}
	tapHeader(t, h, q, "Size")
	h.until(t, "the smallest of the whole queue first", func() bool { return len(q.rows) > 0 && q.rows[0].Size == 1000 })
	if f := lastList(); f.Sort != engine.SortSize || f.Reverse || f.After != (engine.QueueCursor{}) || f.Limit != queuePage {
		t.Errorf("tapping Size asked the engine for %+v, want the first page sorted by size", f)
	}
	tapHeader(t, h, q, "Size")
	h.until(t, "the largest of the whole queue first", func() bool { return len(q.rows) > 0 && q.rows[0].Size == 1000+queuePage+49 })
	if f := lastList(); f.Sort != engine.SortSize || !f.Reverse || f.After != (engine.QueueCursor{}) {
		t.Errorf("tapping Size again asked for %+v, want the first page largest first", f)
	}
	var last engine.QueueRow
	h.do(func() {
		last = q.rows[len(q.rows)-1]
		test.Tap(q.next)
	})
	h.until(t, "the second page", func() bool { return q.pageInfo.Text == "Page 2" })
	if f := lastList(); f.Sort != engine.SortSize || !f.Reverse || f.After != last.Cursor {
		t.Errorf("Next asked for %+v, want largest first after %+v", f, last.Cursor)
	}
	h.do(func() {
		if len(q.rows) != 50 || q.rows[0].Size != last.Size-1 {
			t.Errorf("the second page has %d rows starting at size %d, want 50 from %d", len(q.rows), q.rows[0].Size, last.Size-1)
		}
	})
	tapHeader(t, h, q, "Size")
	h.until(t, "newest first again, on page 1", func() bool { return q.pageInfo.Text == "Page 1" && len(q.rows) == queuePage })
	if f := lastList(); f.Sort != engine.SortNewest || f.Reverse || f.After != (engine.QueueCursor{}) {
		t.Errorf("the third tap asked for %+v, want newest first from the start", f)
	}
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
		h.do(func() { test.Tap(q.next) })
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

// "Select all N matching" acts on everything the filter matches, after a
// confirmation that says how much, and reports in words what happened.
func TestQueueSelectAllMatchingAppliesToTheFilter(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(queuePage + 50)
	eng.rows[3].State = engine.StateSending
	eng.rows[7].State = engine.StateSent // not matched by "Not sent yet"
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)
	h.do(func() { q.stateSel.SetSelected("Not sent yet") })
	h.until(t, "the filtered queue", func() bool { return q.matching == queuePage+49 && q.selectAll.Visible() })
	h.do(func() {
		if q.selectAll.Text != "Select all 149 matching" {
			t.Errorf("the button reads %q, want it to say how many match", q.selectAll.Text)
		}
		test.Tap(q.selectAll)
		if !strings.Contains(q.status.Text, "All 149 matching rows are selected") {
			t.Errorf("after Select all the status says %q", q.status.Text)
		}
	})
	var text []string
	var yes *widget.Button
	h.do(func() {
		test.Tap(q.actions["hold"])
		confirm, ok := h.u.window.Canvas().Overlays().Top().(*widget.PopUp)
		if !ok {
			t.Fatal("Hold of everything matching did not ask first")
		}
		walkLabels(confirm.Content, func(l *widget.Label) { text = append(text, l.Text) })
		walk(confirm.Content, func(b *widget.Button) {
			if b.Text == "Yes" {
				yes = b
			}
		})
	})
	if all := strings.Join(text, " "); !strings.Contains(all, "149 recipients") || !strings.Contains(all, `"Not sent yet"`) {
		t.Errorf("the confirmation says %q; want how many and which filter", all)
	}
	select {
	case c := <-eng.matched:
		t.Fatalf("acted before the confirmation: %+v", c)
	default:
	}
	h.do(func() { test.Tap(yes) })
	c := waitFor(t, eng.matched, "ApplyMatching")
	if c.action != "hold" || !slices.Equal(c.filter.States, stateFilters[1].states) || c.filter.After != (engine.QueueCursor{}) {
		t.Errorf("ApplyMatching(%q, %+v), want hold of the mail not sent yet, from the start", c.action, c.filter)
	}
	h.until(t, "the outcome", func() bool { return strings.HasPrefix(q.status.Text, "Held: mail to 148 recipients.") })
	h.do(func() {
		if !strings.Contains(q.status.Text, "1 was being sent at that moment") {
			t.Errorf("the outcome %q does not say what was left alone", q.status.Text)
		}
	})
	select {
	case a := <-eng.applied:
		t.Errorf("a per-message Apply as well: %+v", a)
	default:
	}
}

// Ticking a row after "Select all" goes back to acting on ticked rows.
func TestQueueTickingEndsSelectAllMatching(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.rows = queueRows(queuePage + 1)
	h := startUI(t, newApp(t), eng, nil)
	q := openQueue(t, h)
	h.until(t, "the Select all button", func() bool { return q.selectAll.Visible() })
	var ticked int64
	h.do(func() { test.Tap(q.selectAll) })
	h.do(func() {
		ticked = q.rows[0].MessageID
		q.setChecked(q.rows[0].ID, true)
		test.Tap(q.actions["retry"])
	})
	if a := waitFor(t, eng.applied, "Retry of the ticked row"); a.id != ticked {
		t.Errorf("Retry applied to message %d, want the ticked row's %d", a.id, ticked)
	}
	select {
	case c := <-eng.matched:
		t.Errorf("acted on everything matching after a row was ticked: %+v", c)
	default:
	}
}

func TestMatchingOutcomeInWords(t *testing.T) {
	for _, c := range []struct {
		changed, skipped int
		err              error
		want             string
	}{
		{1200, 0, nil, "Held: mail to 1,200 recipients."},
		{1, 2, nil, "Held: mail to 1 recipient. 2 were being sent at that moment and left as they were; try again once sent."},
		{0, 0, nil, "Nothing needed changing: none of the matching mail was in a state this applies to."},
		{500, 0, errors.New("disk full"), "Held: mail to 500 recipients. It stopped before the end: disk full"},
	} {
		if got := matchingOutcome("Held", c.changed, c.skipped, c.err); got != c.want {
			t.Errorf("matchingOutcome(%d, %d, %v) = %q, want %q", c.changed, c.skipped, c.err, got, c.want)
		}
	}
	if got := thousands(1234567); got != "1,234,567" {
		t.Errorf("thousands(1234567) = %q", got)
	}
}

// walkLabels calls fn for every label in o, as walk does for buttons.
func walkLabels(o fyne.CanvasObject, fn func(*widget.Label)) {
	switch v := o.(type) {
	case *widget.Label:
		fn(v)
	case *fyne.Container:
		for _, c := range v.Objects {
			walkLabels(c, fn)
		}
	case fyne.Widget:
		for _, c := range test.WidgetRenderer(v).Objects() {
			walkLabels(c, fn)
		}
	}
}
