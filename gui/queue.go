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

// previewRunes is how much of a message's text the detail shows.
const previewRunes = 2000

// queuePage is how many rows one page of the queue table holds. The
// engine sorts the whole queue and pages with a cursor (the last row's
// sort value and IDs), so a page costs the same with 100,000 queued rows.
const queuePage = 100

// countLimit bounds the count behind "Select all N matching" when the
// search text is set (a filter of states alone is counted exactly, for
// free): counting a text match reads the queue.
const countLimit = 100_000

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

// queueColumns are the table's columns, the tick boxes first, with the
// order a tap on the heading asks the engine for.
var queueColumns = []struct {
	title string
	width float32
	sort  engine.QueueSort
}{
	{"", 36, engine.SortNewest}, {"State", 90, engine.SortState}, {"From", 160, engine.SortSender},
	{"To", 170, engine.SortRecipient}, {"Subject", 160, engine.SortSubject}, {"Size", 62, engine.SortSize},
	{"Tries", 55, engine.SortAttempts}, {"Next try", 110, engine.SortNextTry}, {"Problem", 420, engine.SortProblem},
}

// queueView is the Queue tab: a paged table, a filter, actions, detail.
type queueView struct {
	u       *UI
	content fyne.CanvasObject

	// loadMu serialises reloads (from the watcher and from buttons).
	loadMu sync.Mutex
	// filterMu guards filter (with its order), read by reload on any
	// goroutine, and the count of what it matches: counted for the filter
	// countedFor, so that a search text is counted once, not at every
	// event.
	filterMu      sync.Mutex
	filter        engine.QueueFilter
	countedFor    string
	counted       int
	countedCapped bool

	// Fyne goroutine only.
	rows     []engine.QueueRow
	pages    []engine.QueueCursor // where each page shown so far starts; the last is the current one
	checked  map[int64]bool
	selected int64 // recipient ID of the row whose detail is shown; 0 = none
	sortCol  int   // column the queue is sorted by; 0 = newest first
	sortDesc bool
	allCheck *widget.Check // the header's "tick every row on this page"
	// allMatching: the actions apply to everything the filter matches, on
	// every page, rather than to ticked rows. matching (capped: or more)
	// is how many recipients that is, as of the last reload.
	allMatching    bool
	matching       int
	matchingCapped bool
	selectAll      *widget.Button
	// notice is the outcome of the last action, shown in the status line
	// until the user ticks, filters, sorts or pages.
	notice string
	// sendAt is the open "Send at…" dialog's time entry (nil when closed).
	sendAt   *widget.Entry
	table    *widget.Table
	stateSel *widget.Select
	search   *widget.Entry
	pageInfo *widget.Label
	prev     *widget.Button
	next     *widget.Button
	detail   *widget.Label
	status   *widget.Label
	actions  map[string]*widget.Button
}

func newQueueView(u *UI) *queueView {
	q := &queueView{u: u, checked: map[int64]bool{}, pages: []engine.QueueCursor{{}}, actions: map[string]*widget.Button{}}
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
		check := widget.NewCheck("", nil)
		b := widget.NewButton("", nil)
		b.Alignment = widget.ButtonAlignLeading
		b.Importance = widget.LowImportance
		return container.NewStack(check, b)
	}
	q.table.UpdateHeader = q.updateHeader
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
		{"Send at…", "schedule"}, {"Return to sender", "bounce"}, {"Delete", "delete"},
	} {
		action := a.action
		q.actions[action] = widget.NewButton(a.label, func() { q.act(action) })
	}
	q.actions["delete"].Importance = widget.DangerImportance

	q.prev = widget.NewButton("◀ Previous", q.pagePrev)
	q.next = widget.NewButton("Next ▶", q.pageNext)
	q.selectAll = widget.NewButton("", q.toggleAllMatching)
	q.selectAll.Hide()
	q.pageInfo = widget.NewLabel("")
	q.status = widget.NewLabel("")
	q.status.Wrapping = fyne.TextWrapWord
	q.detail = widget.NewLabel("Select a row to see the message: who sent it, what it says, its delivery attempts and its headers.")
	q.detail.Wrapping = fyne.TextWrapWord
	q.detail.TextStyle.Monospace = true

	top := container.NewBorder(nil, nil, q.stateSel, refresh, q.search)
	actionRow := container.NewHBox(widget.NewLabel("Selected:"),
		q.actions["retry"], q.actions["hold"], q.actions["release"], q.actions["schedule"], q.actions["bounce"], q.actions["delete"],
		q.selectAll)
	paging := container.NewHBox(q.prev, q.pageInfo, q.next)
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
		// The reason in words; the server's own words are in the detail.
		switch {
		case r.State == engine.StateHeld || r.HeldReason != "" && !r.State.Final():
			text = capitalise(r.HeldReason)
		case r.State == engine.StateScheduled:
			text = "Waits until the time chosen"
		case r.LastError != "" && r.State != engine.StateSent:
			text = capitalise(deliveryWords(r.LastCode, r.LastError))
		}
	}
	label.SetText(text)
}

// setChecked ticks or unticks a row (by recipient ID) for the actions.
// Ticking a row ends "all matching": the actions apply to ticked rows.
func (q *queueView) setChecked(recipientID int64, on bool) {
	q.notice = ""
	q.allMatching = false
	q.updateSelectAll()
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
	if q.allMatching {
		q.actOnMatching(action)
		return
	}
	ids := q.chosenMessages()
	if len(ids) == 0 {
		q.notice = "Tick one or more rows, or select a row, first."
		q.updateStatus()
		return
	}
	run := func() { q.run(action, ids, time.Time{}) }
	switch action {
	case "schedule":
		q.askSendAt(ids)
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

// run applies an action to messages on a goroutine and shows the outcome.
func (q *queueView) run(action string, ids []int64, at time.Time) {
	for _, b := range q.actions {
		b.Disable()
	}
	q.u.background(engineTimeout+time.Duration(len(ids))*time.Second/10, func(ctx context.Context) error {
		var errs []error
		for _, id := range ids {
			if err := q.u.eng.Apply(ctx, action, id, at); err != nil {
				errs = append(errs, fmt.Errorf("message %d: %w", id, err))
			}
		}
		return errors.Join(errs...)
	}, func(err error) {
		for _, b := range q.actions {
			b.Enable()
		}
		label := strings.TrimSuffix(q.actions[action].Text, "…")
		switch {
		case err != nil:
			q.notice = "Not everything worked: " + err.Error()
		case action == "schedule":
			q.notice = fmt.Sprintf("%s will be sent at %s.", capitalise(plural(len(ids), "message")), at.Local().Format("Mon Jan 2 15:04"))
		default:
			q.notice = fmt.Sprintf("%s: done for %s.", label, plural(len(ids), "message"))
		}
		q.checked = map[int64]bool{}
		q.updateStatus()
		q.u.goBG(q.reload)
		q.u.goBG(q.u.Refresh)
	})
}

// sendAtLayout is how the "Send at…" dialog reads and writes a time.
const sendAtLayout = "2006-01-02 15:04"

// sendAtPresets are the quick choices of the "Send at…" dialog.
func sendAtPresets(now time.Time) []struct {
	label string
	at    time.Time
} {
	day := startOfDay(now)
	tomorrow8 := day.AddDate(0, 0, 1).Add(8 * time.Hour)
	monday := day.AddDate(0, 0, (8-int(now.Weekday()))%7)
	if !monday.After(day) {
		monday = monday.AddDate(0, 0, 7)
	}
	tonight := day.Add(20 * time.Hour)
	if !tonight.After(now) {
		tonight = tonight.AddDate(0, 0, 1)
	}
	return []struct {
		label string
		at    time.Time
	}{
		{"In one hour", now.Add(time.Hour).Truncate(time.Minute)},
		{"This evening at 20:00", tonight},
		{"Tomorrow at 08:00", tomorrow8},
		{"Monday at 08:00", monday.Add(8 * time.Hour)},
	}
}

// parseSendAt reads the dialog's time, in this computer's time zone, and
// refuses one that has passed.
func parseSendAt(text string, now time.Time) (time.Time, error) {
	at, err := time.ParseInLocation(sendAtLayout, strings.TrimSpace(text), time.Local)
	if err != nil {
		return time.Time{}, fmt.Errorf("write the date and time as %s, for example %s", "YYYY-MM-DD HH:MM", now.Add(time.Hour).Format(sendAtLayout))
	}
	if !at.After(now) {
		return time.Time{}, errors.New("that time has passed; choose a time in the future")
	}
	return at, nil
}

// askSendAt asks when the chosen messages are to be sent, and schedules
// them. Held mail is released by it: it goes at that time.
func (q *queueView) askSendAt(ids []int64) {
	entry := widget.NewEntry()
	entry.SetText(time.Now().Add(time.Hour).Truncate(time.Hour).Format(sendAtLayout))
	entry.Validator = func(s string) error { _, err := parseSendAt(s, time.Now()); return err }
	presets := sendAtPresets(time.Now())
	labels := make([]string, len(presets))
	for i, p := range presets {
		labels[i] = p.label
	}
	quick := widget.NewSelect(labels, func(l string) {
		for _, p := range presets {
			if p.label == l {
				entry.SetText(p.at.Format(sendAtLayout))
			}
		}
	})
	quick.PlaceHolder = "Choose…"
	note := widget.NewLabel(fmt.Sprintf("%s will wait until then, held mail included, and is sent at that time.", capitalise(plural(len(ids), "message"))))
	note.Wrapping = fyne.TextWrapWord
	q.sendAt = entry
	d := dialog.NewForm("Send at a later time", "Schedule", "Cancel", []*widget.FormItem{
		widget.NewFormItem("Quick choice", quick),
		widget.NewFormItem("Date and time", entry),
		widget.NewFormItem("", note),
	}, func(ok bool) {
		q.sendAt = nil
		if !ok {
			return
		}
		at, err := parseSendAt(entry.Text, time.Now())
		if err != nil {
			q.notice = capitalise(err.Error()) + "."
			q.updateStatus()
			return
		}
		q.run("schedule", ids, at)
	}, q.u.window)
	d.Resize(fyne.NewSize(460, 260))
	d.Show()
}

func (q *queueView) filterChanged() {
	if q.stateSel == nil || q.search == nil {
		return
	}
	f := engine.QueueFilter{Limit: queuePage, Text: strings.TrimSpace(q.search.Text),
		Sort: queueColumns[q.sortCol].sort, Reverse: q.sortDesc}
	for _, sf := range stateFilters {
		if sf.label == q.stateSel.Selected {
			f.States = sf.states
		}
	}
	q.filterMu.Lock()
	q.filter = f
	q.filterMu.Unlock()
	q.pages = []engine.QueueCursor{{}}
	q.checked = map[int64]bool{}
	q.allMatching = false
	q.notice = ""
	q.u.goBG(q.reload)
}

// pageNext shows the page after this one in the order chosen.
func (q *queueView) pageNext() {
	if len(q.rows) < queuePage {
		return
	}
	q.pages = append(q.pages, q.rows[len(q.rows)-1].Cursor)
	q.u.goBG(q.reload)
}

func (q *queueView) pagePrev() {
	if len(q.pages) <= 1 {
		return
	}
	q.pages = q.pages[:len(q.pages)-1]
	q.u.goBG(q.reload)
}

// reload reads the current page and how many rows the filter matches. It
// calls the engine: not on the Fyne goroutine.
func (q *queueView) reload() {
	q.loadMu.Lock()
	defer q.loadMu.Unlock()
	q.filterMu.Lock()
	f := q.filter
	q.filterMu.Unlock()
	var after engine.QueueCursor
	pageNo := 0
	q.u.doAndWait(func() {
		after = q.pages[len(q.pages)-1]
		pageNo = len(q.pages)
	})
	f.After = after
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	rows, err := q.u.eng.List(ctx, f)
	var matching int
	var capped bool
	if err == nil {
		matching, capped, err = q.count(ctx, f)
	}
	q.u.do(func() {
		if err != nil {
			q.status.SetText("Could not read the queue: " + err.Error())
			q.u.done()
			return
		}
		q.rows = rows
		q.matching, q.matchingCapped = matching, capped
		q.table.Refresh()
		q.pageInfo.SetText(fmt.Sprintf("Page %d", pageNo))
		if pageNo > 1 {
			q.prev.Enable()
		} else {
			q.prev.Disable()
		}
		if len(rows) == queuePage {
			q.next.Enable()
		} else {
			q.next.Disable()
		}
		q.updateSelectAll()
		q.updateStatus()
		q.u.done()
	})
}

// count is how many recipients the filter matches. A filter of states
// alone is counted at every reload (the engine keeps those counts); one
// with search text only when the filter changed, or after an action.
func (q *queueView) count(ctx context.Context, f engine.QueueFilter) (int, bool, error) {
	key := fmt.Sprint(f.States, "\x00", f.Text)
	q.filterMu.Lock()
	if f.Text != "" && key == q.countedFor {
		n, capped := q.counted, q.countedCapped
		q.filterMu.Unlock()
		return n, capped, nil
	}
	q.filterMu.Unlock()
	n, capped, err := q.u.eng.CountMatching(ctx, engine.QueueFilter{States: f.States, Text: f.Text}, countLimit)
	if err != nil {
		return 0, false, err
	}
	q.filterMu.Lock()
	q.countedFor, q.counted, q.countedCapped = key, n, capped
	q.filterMu.Unlock()
	return n, capped, nil
}

// recount makes the next reload count again: an action changed the queue.
func (q *queueView) recount() {
	q.filterMu.Lock()
	q.countedFor = ""
	q.filterMu.Unlock()
}

// matchingWords is how many rows match, in words: "1,234" or "100,000+".
func (q *queueView) matchingWords() string {
	n := thousands(q.matching)
	if q.matchingCapped {
		n += "+"
	}
	return n
}

// updateSelectAll offers "Select all N matching" when the filter matches
// more rows than this page shows, and a way back once chosen.
func (q *queueView) updateSelectAll() {
	switch {
	case q.allMatching:
		q.selectAll.SetText("Only ticked rows")
		q.selectAll.Show()
	case q.matching > len(q.rows):
		q.selectAll.SetText(fmt.Sprintf("Select all %s matching", q.matchingWords()))
		q.selectAll.Show()
	default:
		q.selectAll.Hide()
	}
}

// toggleAllMatching chooses everything the filter matches for the
// actions, or goes back to the ticked rows.
func (q *queueView) toggleAllMatching() {
	q.notice = ""
	q.allMatching = !q.allMatching
	q.checked = map[int64]bool{}
	q.table.Refresh()
	q.updateSelectAll()
	q.updateStatus()
}

// filterWords describes the current filter for a confirmation: "the
// filter "Held" and the search "acme"".
func (q *queueView) filterWords() string {
	q.filterMu.Lock()
	text := q.filter.Text
	q.filterMu.Unlock()
	w := fmt.Sprintf("the filter %q", q.stateSel.Selected)
	if text != "" {
		w += fmt.Sprintf(" and the search %q", text)
	}
	return w
}

// matchingActions say, per action, what the confirmation asks and what
// the outcome reports.
var matchingActions = map[string]struct{ title, does, did string }{
	"retry":   {"Retry all matching mail now?", "tries again now", "Will try again now"},
	"hold":    {"Hold all matching mail?", "holds", "Held"},
	"release": {"Release all matching mail?", "releases", "Released"},
	"bounce":  {"Return all matching mail to its senders?", "stops trying to deliver, and tells the senders it failed,", "Returned to the senders"},
	"delete":  {"Delete all matching mail?", "deletes, without telling the senders,", "Deleted"},
}

// actOnMatching asks for confirmation and runs an action on everything
// the filter matches.
func (q *queueView) actOnMatching(action string) {
	words, ok := matchingActions[action]
	if !ok {
		q.notice = "Send at… works on ticked rows: tick the messages to schedule (or choose \"Only ticked rows\")."
		q.updateStatus()
		return
	}
	q.filterMu.Lock()
	f := q.filter
	q.filterMu.Unlock()
	f.After, f.Limit = engine.QueueCursor{}, 0
	text := fmt.Sprintf("This %s the mail to %s recipients: everything that matches %s, on every page, not only the rows shown. Mail being sent at this moment is left as it is.",
		words.does, q.matchingWords(), q.filterWords())
	dialog.ShowConfirm(words.title, text, func(yes bool) {
		if yes {
			q.runMatching(action, f)
		}
	}, q.u.window)
}

// matchingTimeout bounds an action on everything matching: it works in
// short transactions, a few seconds per ten thousand recipients.
const matchingTimeout = 10 * time.Minute

// runMatching applies an action to everything a filter matches on a
// goroutine and says what happened.
func (q *queueView) runMatching(action string, f engine.QueueFilter) {
	for _, b := range q.actions {
		b.Disable()
	}
	var changed, skipped int
	q.u.background(matchingTimeout, func(ctx context.Context) error {
		var err error
		changed, skipped, err = q.u.eng.ApplyMatching(ctx, action, f)
		return err
	}, func(err error) {
		for _, b := range q.actions {
			b.Enable()
		}
		q.notice = matchingOutcome(matchingActions[action].did, changed, skipped, err)
		q.allMatching = false
		q.checked = map[int64]bool{}
		q.recount()
		q.updateStatus()
		q.u.goBG(q.reload)
		q.u.goBG(q.u.Refresh)
	})
}

// matchingOutcome says in words what an action on everything matching did.
func matchingOutcome(did string, changed, skipped int, err error) string {
	var b strings.Builder
	switch {
	case changed > 0:
		word := " recipients"
		if changed == 1 {
			word = " recipient"
		}
		fmt.Fprintf(&b, "%s: mail to %s.", did, thousands(changed)+word)
	case err == nil:
		b.WriteString("Nothing needed changing: none of the matching mail was in a state this applies to.")
	}
	if skipped > 0 {
		fmt.Fprintf(&b, " %s being sent at that moment and left as %s; try again once sent.",
			map[bool]string{true: "1 was", false: thousands(skipped) + " were"}[skipped == 1],
			map[bool]string{true: "it was", false: "they were"}[skipped == 1])
	}
	if err != nil {
		fmt.Fprintf(&b, " It stopped before the end: %v", err)
	}
	return strings.TrimSpace(b.String())
}

// thousands writes n with thousands separators: 100000 as "100,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func (q *queueView) updateStatus() {
	if q.notice != "" {
		// The outcome of the last action stays until the user does
		// something else; reloads do not wipe it.
		q.status.SetText(q.notice)
		return
	}
	if len(q.rows) == 0 {
		q.status.SetText("No mail matches.")
		return
	}
	if q.allMatching {
		q.status.SetText(fmt.Sprintf("All %s matching rows are selected, on every page. Choose an action.", q.matchingWords()))
		return
	}
	if n := len(q.checked); n > 0 {
		q.status.SetText(fmt.Sprintf("%s ticked.", plural(n, "row")))
		return
	}
	order := "newest first"
	if q.sortCol > 0 {
		order = "sorted by " + queueColumns[q.sortCol].title
		if q.sortDesc {
			order += ", descending"
		}
	}
	q.status.SetText(fmt.Sprintf("%s shown, %s. Tick rows to act on several at once.", plural(len(q.rows), "row"), order))
}

// updateHeader draws a column heading: a button that sorts by the column
// (with an arrow on the sorted one), or over the tick boxes one that
// ticks every row on the page.
func (q *queueView) updateHeader(id widget.TableCellID, o fyne.CanvasObject) {
	stack := o.(*fyne.Container)
	check := stack.Objects[0].(*widget.Check)
	b := stack.Objects[1].(*widget.Button)
	if id.Col == 0 {
		b.Hide()
		check.Show()
		check.OnChanged = nil
		check.SetChecked(len(q.rows) > 0 && q.allTicked())
		check.OnChanged = q.tickPage
		q.allCheck = check
		return
	}
	check.Hide()
	b.Show()
	title := queueColumns[id.Col].title
	if id.Col == q.sortCol {
		if q.sortDesc {
			title += " ▼"
		} else {
			title += " ▲"
		}
	}
	b.SetText(title)
	col := id.Col
	b.OnTapped = func() { q.sortBy(col) }
}

// allTicked reports whether every row of the page is ticked.
func (q *queueView) allTicked() bool {
	for _, r := range q.rows {
		if !q.checked[r.ID] {
			return false
		}
	}
	return true
}

// tickPage ticks or unticks every row of the page.
func (q *queueView) tickPage(on bool) {
	q.notice = ""
	for _, r := range q.rows {
		if on {
			q.checked[r.ID] = true
		} else {
			delete(q.checked, r.ID)
		}
	}
	q.table.Refresh()
	q.updateStatus()
}

// sortBy sorts the whole queue by a column (the engine sorts, and the
// pages follow that order); a second tap reverses the order, a third goes
// back to newest first. It starts again at the first page.
func (q *queueView) sortBy(col int) {
	q.notice = ""
	switch {
	case col != q.sortCol:
		q.sortCol, q.sortDesc = col, false
	case !q.sortDesc:
		q.sortDesc = true
	default:
		q.sortCol, q.sortDesc = 0, false
	}
	q.filterMu.Lock()
	q.filter.Sort, q.filter.Reverse = queueColumns[q.sortCol].sort, q.sortDesc
	q.filterMu.Unlock()
	q.pages = []engine.QueueCursor{{}}
	q.table.Refresh()
	q.u.goBG(q.reload)
}

// showDetail reads and shows one message.
func (q *queueView) showDetail(id int64) {
	q.detail.SetText("Loading message " + fmt.Sprint(id) + "…")
	q.u.goBG(func() {
		ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
		defer cancel()
		d, err := q.u.eng.Show(ctx, id)
		var preview string
		if err == nil {
			var perr error
			if preview, perr = q.u.eng.BodyPreview(ctx, id, previewRunes); perr != nil {
				preview = "(The text could not be read: " + perr.Error() + ")"
			}
		}
		q.u.do(func() {
			if err != nil {
				q.detail.SetText("Could not read message " + fmt.Sprint(id) + ": " + err.Error())
			} else {
				q.detail.SetText(formatDetail(d, preview))
			}
			q.u.done()
		})
	})
}

// formatDetail writes a message's envelope, recipients, headers and
// attempt log as text.
func formatDetail(d *engine.MessageDetail, preview string) string {
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
		if r.State == engine.StateScheduled && !r.NextAttempt.IsZero() {
			fmt.Fprintf(&b, "  to be sent %s", humanTime(r.NextAttempt))
		}
		if r.LastError != "" && r.State != engine.StateSent {
			fmt.Fprintf(&b, "\n      last problem: %s", explainDelivery(r.LastCode, r.LastError))
		}
		b.WriteString("\n")
	}
	b.WriteString("\nWhat it says\n")
	for _, line := range strings.Split(preview, "\n") {
		b.WriteString("  " + line + "\n")
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
