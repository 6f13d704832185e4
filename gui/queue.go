package gui

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"postroom/engine"
)

// queuePage is how many rows one page of the queue table holds; paging is
// by ID (keyset), so the table costs the same with 100,000 queued rows.
const queuePage = 100

// stateFilters (read-only) map the filter menu to engine states.
var stateFilters = []struct {
	label  string
	states []engine.QueueState
}{
	{"All mail", nil},
	{"Not sent yet", []engine.QueueState{engine.StateQueued, engine.StateScheduled, engine.StateSending, engine.StateDeferred, engine.StateHeld}},
	{"Waiting to retry", []engine.QueueState{engine.StateDeferred}},
	{"Held", []engine.QueueState{engine.StateHeld}},
	{"Scheduled", []engine.QueueState{engine.StateScheduled}},
	{"Sent", []engine.QueueState{engine.StateSent}},
	{"Returned to sender", []engine.QueueState{engine.StateBounced, engine.StateExpired}},
}

// stateWords says a state the way the table shows it.
func stateWords(s engine.QueueState) string {
	switch s {
	case engine.StateQueued:
		return "Waiting"
	case engine.StateSending:
		return "Sending"
	case engine.StateDeferred:
		return "Will retry"
	case engine.StateScheduled:
		return "Scheduled"
	case engine.StateHeld:
		return "Held"
	case engine.StateSent:
		return "Sent"
	case engine.StateBounced:
		return "Returned"
	case engine.StateExpired:
		return "Expired"
	}
	return string(s)
}

// queueColumns are the table's columns after the selection box.
var queueColumns = []struct {
	title string
	width float32
}{
	{"", 36}, {"State", 90}, {"From", 170}, {"To", 170}, {"Subject", 170},
	{"Size", 65}, {"Tries", 50}, {"Next try", 85}, {"Last error", 400},
}

// queueView is the Queue tab: a paged table, a filter, actions, detail.
type queueView struct {
	u       *UI
	content fyne.CanvasObject

	// loadMu serialises reloads (from the watcher and from buttons).
	loadMu sync.Mutex
	// filterMu guards filter, read by reload on any goroutine.
	filterMu sync.Mutex
	filter   engine.QueueFilter

	// Fyne goroutine only.
	rows     []engine.QueueRow
	pages    []int64 // BeforeID of each page shown so far; the last is the current one
	checked  map[int64]bool
	selected int64 // recipient ID of the row whose detail is shown; 0 = none
	table    *widget.Table
	stateSel *widget.Select
	search   *widget.Entry
	pageInfo *widget.Label
	newer    *widget.Button
	older    *widget.Button
	detail   *widget.Label
	status   *widget.Label
	actions  map[string]*widget.Button
}

func newQueueView(u *UI) *queueView {
	q := &queueView{u: u, checked: map[int64]bool{}, pages: []int64{0}, actions: map[string]*widget.Button{}}
	q.filter.Limit = queuePage

	labels := make([]string, len(stateFilters))
	for i, f := range stateFilters {
		labels[i] = f.label
	}
	q.stateSel = widget.NewSelect(labels, func(string) { q.filterChanged() })
	q.stateSel.SetSelected(labels[0])
	q.search = widget.NewEntry()
	q.search.SetPlaceHolder("Search sender, recipient or subject")
	q.search.OnChanged = func(string) { q.filterChanged() }
	refresh := widget.NewButton("Refresh", func() { q.u.goBG(q.reload) })

	q.table = widget.NewTableWithHeaders(
		func() (int, int) { return len(q.rows), len(queueColumns) },
		func() fyne.CanvasObject {
			check := widget.NewCheck("", nil)
			label := widget.NewLabel("")
			label.Truncation = fyne.TextTruncateEllipsis
			return container.NewStack(check, label)
		},
		q.updateCell,
	)
	q.table.ShowHeaderColumn = false
	q.table.CreateHeader = func() fyne.CanvasObject {
		return widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	}
	q.table.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		o.(*widget.Label).SetText(queueColumns[id.Col].title)
	}
	for i, c := range queueColumns {
		q.table.SetColumnWidth(i, c.width)
	}
	q.table.OnSelected = func(id widget.TableCellID) {
		if id.Row < 0 || id.Row >= len(q.rows) {
			return
		}
		q.selected = q.rows[id.Row].ID
		q.showDetail(q.rows[id.Row].MessageID)
	}

	for _, a := range []struct{ label, action string }{
		{"Retry now", "retry"}, {"Hold", "hold"}, {"Release", "release"},
		{"Return to sender", "bounce"}, {"Delete", "delete"},
	} {
		action := a.action
		q.actions[action] = widget.NewButton(a.label, func() { q.act(action) })
	}
	q.actions["delete"].Importance = widget.DangerImportance

	q.newer = widget.NewButton("◀ Newer", q.pageNewer)
	q.older = widget.NewButton("Older ▶", q.pageOlder)
	q.pageInfo = widget.NewLabel("")
	q.status = widget.NewLabel("")
	q.status.Wrapping = fyne.TextWrapWord
	q.detail = widget.NewLabel("Select a row to see the message's envelope, headers and delivery attempts.")
	q.detail.Wrapping = fyne.TextWrapWord
	q.detail.TextStyle.Monospace = true

	top := container.NewBorder(nil, nil, q.stateSel, refresh, q.search)
	actionRow := container.NewHBox(widget.NewLabel("Selected:"),
		q.actions["retry"], q.actions["hold"], q.actions["release"], q.actions["bounce"], q.actions["delete"])
	paging := container.NewHBox(q.newer, q.pageInfo, q.older)
	tableArea := container.NewBorder(top, container.NewBorder(nil, q.status, actionRow, paging), nil, nil, q.table)
	split := container.NewVSplit(tableArea, container.NewVScroll(q.detail))
	split.Offset = 0.62
	q.content = split
	return q
}

func (q *queueView) updateCell(id widget.TableCellID, o fyne.CanvasObject) {
	stack := o.(*fyne.Container)
	check := stack.Objects[0].(*widget.Check)
	label := stack.Objects[1].(*widget.Label)
	if id.Row >= len(q.rows) {
		return
	}
	r := q.rows[id.Row]
	if id.Col == 0 {
		label.Hide()
		check.Show()
		check.OnChanged = nil
		check.SetChecked(q.checked[r.ID])
		rid := r.ID
		check.OnChanged = func(on bool) { q.setChecked(rid, on) }
		return
	}
	check.Hide()
	label.Show()
	label.Importance = widget.MediumImportance
	var text string
	switch id.Col {
	case 1:
		text = stateWords(r.State)
		switch r.State {
		case engine.StateBounced, engine.StateExpired:
			label.Importance = widget.DangerImportance
		case engine.StateDeferred, engine.StateHeld:
			label.Importance = widget.WarningImportance
		case engine.StateSent:
			label.Importance = widget.SuccessImportance
		}
	case 2:
		text = r.Sender
		if text == "" {
			text = "(bounce)"
		}
	case 3:
		text = r.Address
	case 4:
		text = r.Subject
	case 5:
		text = humanSize(r.Size)
	case 6:
		text = fmt.Sprint(r.Attempts)
	case 7:
		if !r.NextAttempt.IsZero() && !r.State.Final() {
			text = humanTime(r.NextAttempt)
		}
	case 8:
		text = r.LastError
		if text == "" && r.HeldReason != "" {
			text = r.HeldReason
		}
	}
	label.SetText(text)
}

// setChecked ticks or unticks a row (by recipient ID) for the actions.
func (q *queueView) setChecked(recipientID int64, on bool) {
	if on {
		q.checked[recipientID] = true
	} else {
		delete(q.checked, recipientID)
	}
	q.updateStatus()
}

// chosenMessages are the message IDs the actions apply to: the ticked
// rows, or else the selected row.
func (q *queueView) chosenMessages() []int64 {
	seen := map[int64]bool{}
	var ids []int64
	for _, r := range q.rows {
		if q.checked[r.ID] || len(q.checked) == 0 && r.ID == q.selected {
			if !seen[r.MessageID] {
				seen[r.MessageID] = true
				ids = append(ids, r.MessageID)
			}
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// act runs a queue action on the chosen messages, after a confirmation
// for Delete and Return to sender, which cannot be undone.
func (q *queueView) act(action string) {
	ids := q.chosenMessages()
	if len(ids) == 0 {
		q.status.SetText("Tick one or more rows, or select a row, first.")
		return
	}
	run := func() {
		for _, b := range q.actions {
			b.Disable()
		}
		q.u.background(engineTimeout, func(ctx context.Context) error {
			var errs []error
			for _, id := range ids {
				if err := q.u.eng.Apply(ctx, action, id, time.Time{}); err != nil {
					errs = append(errs, fmt.Errorf("message %d: %w", id, err))
				}
			}
			return errors.Join(errs...)
		}, func(err error) {
			for _, b := range q.actions {
				b.Enable()
			}
			if err != nil {
				q.status.SetText("Not everything worked: " + err.Error())
			} else {
				q.status.SetText(fmt.Sprintf("%s: done for %s.", q.actions[action].Text, plural(len(ids), "message")))
			}
			q.checked = map[int64]bool{}
			q.u.goBG(q.reload)
			q.u.goBG(q.u.Refresh)
		})
	}
	switch action {
	case "delete":
		dialog.ShowConfirm("Delete mail?",
			fmt.Sprintf("Delete %s from the queue? The recipients will not get it and the sender is not told.", plural(len(ids), "message")),
			func(ok bool) {
				if ok {
					run()
				}
			}, q.u.window)
	case "bounce":
		dialog.ShowConfirm("Return mail to its sender?",
			fmt.Sprintf("Stop trying to deliver %s and tell the sender it failed?", plural(len(ids), "message")),
			func(ok bool) {
				if ok {
					run()
				}
			}, q.u.window)
	default:
		run()
	}
}

func (q *queueView) filterChanged() {
	if q.stateSel == nil || q.search == nil {
		return
	}
	f := engine.QueueFilter{Limit: queuePage, Text: strings.TrimSpace(q.search.Text)}
	for _, sf := range stateFilters {
		if sf.label == q.stateSel.Selected {
			f.States = sf.states
		}
	}
	q.filterMu.Lock()
	q.filter = f
	q.filterMu.Unlock()
	q.pages = []int64{0}
	q.checked = map[int64]bool{}
	q.u.goBG(q.reload)
}

func (q *queueView) pageOlder() {
	if len(q.rows) < queuePage {
		return
	}
	q.pages = append(q.pages, q.rows[len(q.rows)-1].ID)
	q.u.goBG(q.reload)
}

func (q *queueView) pageNewer() {
	if len(q.pages) <= 1 {
		return
	}
	q.pages = q.pages[:len(q.pages)-1]
	q.u.goBG(q.reload)
}

// reload reads the current page. It calls the engine: not on the Fyne
// goroutine.
func (q *queueView) reload() {
	q.loadMu.Lock()
	defer q.loadMu.Unlock()
	q.filterMu.Lock()
	f := q.filter
	q.filterMu.Unlock()
	var before int64
	pageNo := 0
	q.u.doAndWait(func() {
		before = q.pages[len(q.pages)-1]
		pageNo = len(q.pages)
	})
	f.BeforeID = before
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	rows, err := q.u.eng.List(ctx, f)
	q.u.do(func() {
		if err != nil {
			q.status.SetText("Could not read the queue: " + err.Error())
			q.u.done()
			return
		}
		q.rows = rows
		q.table.Refresh()
		q.pageInfo.SetText(fmt.Sprintf("Page %d", pageNo))
		if pageNo > 1 {
			q.newer.Enable()
		} else {
			q.newer.Disable()
		}
		if len(rows) == queuePage {
			q.older.Enable()
		} else {
			q.older.Disable()
		}
		q.updateStatus()
		q.u.done()
	})
}

func (q *queueView) updateStatus() {
	if len(q.rows) == 0 {
		q.status.SetText("No mail matches.")
		return
	}
	if n := len(q.checked); n > 0 {
		q.status.SetText(fmt.Sprintf("%s ticked.", plural(n, "row")))
		return
	}
	q.status.SetText(fmt.Sprintf("%s shown, newest first.", plural(len(q.rows), "row")))
}

// showDetail reads and shows one message.
func (q *queueView) showDetail(id int64) {
	q.detail.SetText("Loading message " + fmt.Sprint(id) + "…")
	q.u.goBG(func() {
		ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
		defer cancel()
		d, err := q.u.eng.Show(ctx, id)
		q.u.do(func() {
			if err != nil {
				q.detail.SetText("Could not read message " + fmt.Sprint(id) + ": " + err.Error())
			} else {
				q.detail.SetText(formatDetail(d))
			}
			q.u.done()
		})
	})
}

// formatDetail writes a message's envelope, recipients, headers and
// attempt log as text.
func formatDetail(d *engine.MessageDetail) string {
	var b strings.Builder
	m := d.Message
	sender := m.Sender
	if sender == "" {
		sender = "<> (a bounce)"
	}
	origin := "made by Postroom itself"
	if m.ClientAddr != "" {
		origin = "from " + m.ClientAddr + " (" + m.ClientHelo + ")"
	}
	fmt.Fprintf(&b, "Message %d, received %s %s\n", m.ID, m.ReceivedAt.Local().Format("2006-01-02 15:04:05"), origin)
	fmt.Fprintf(&b, "From:    %s\n", sender)
	if m.AuthUser != "" {
		fmt.Fprintf(&b, "Login:   %s\n", m.AuthUser)
	}
	fmt.Fprintf(&b, "Size:    %s\n", humanSize(m.Size))
	if m.DKIM != "" {
		fmt.Fprintf(&b, "DKIM:    %s\n", m.DKIM)
	}
	b.WriteString("\nRecipients\n")
	for _, r := range d.Recipients {
		fmt.Fprintf(&b, "  %-32s %-10s tries %d", r.Address, stateWords(r.State), r.Attempts)
		if r.LastError != "" {
			fmt.Fprintf(&b, "  last: %s", r.LastError)
		}
		b.WriteString("\n")
	}
	b.WriteString("\nAttempts\n")
	if len(d.Attempts) == 0 {
		b.WriteString("  none yet\n")
	}
	for _, a := range d.Attempts {
		fmt.Fprintf(&b, "  %s  %s", a.At.Local().Format("01-02 15:04:05"), a.Recipient)
		if a.Host != "" {
			tls := a.TLS
			if tls == "" {
				tls = "no TLS"
			}
			fmt.Fprintf(&b, " via %s (%s)", a.Host, tls)
		}
		b.WriteString(": ")
		if a.Code != 0 {
			fmt.Fprintf(&b, "%d ", a.Code)
		}
		b.WriteString(a.Text + "\n")
	}
	b.WriteString("\nHeaders\n")
	b.WriteString(strings.TrimRight(strings.ReplaceAll(string(d.Header), "\r\n", "\n"), "\n"))
	return b.String()
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func humanTime(t time.Time) string {
	t = t.Local()
	if startOfDay(t).Equal(startOfDay(time.Now())) {
		return t.Format("15:04")
	}
	return t.Format("Jan 2 15:04")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
