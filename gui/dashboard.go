package gui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"postroom/engine"
	"postroom/engine/config"
)

// snapshot is one read of what the dashboard shows.
type snapshot struct {
	now      time.Time
	counts   map[string]int
	paused   bool
	listen   string
	settings config.Settings
	points   []engine.CounterPoint // per-minute counters of the last 24 hours and today
	// dests is the destination summary, when it was read this time (it is
	// read at most every destInterval).
	dests     []engine.Destination
	destsRead bool
	err       error
}

// destInterval spaces the destination summary's reads: it reads a few
// thousand queue rows, which a burst of events must not repeat.
const destInterval = 5 * time.Second

// topDestinations is how many domains the dashboard lists.
const topDestinations = 8

// eng2snapshot reads the engine once for the dashboard.
func (u *UI) eng2snapshot() snapshot {
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	now := time.Now()
	s := snapshot{now: now, listen: u.eng.ListenAddr(), settings: u.eng.Settings()}
	s.counts, s.err = u.eng.QueueCounts(ctx)
	if s.err == nil {
		s.paused, s.err = u.eng.Paused(ctx)
	}
	if s.err == nil {
		since := now.Add(-24 * time.Hour)
		if midnight := startOfDay(now); midnight.Before(since) {
			since = midnight
		}
		s.points, s.err = u.eng.Stats(ctx, since)
	}
	if s.err == nil && now.Sub(u.destsReadAt) >= destInterval {
		dests, err := u.eng.Destinations(ctx, now.Add(-24*time.Hour), topDestinations)
		if err == nil {
			s.dests, s.destsRead = dests, true
			u.destsReadAt = now
		}
	}
	return s
}

func startOfDay(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}

// counterCard is one number on the dashboard.
type counterCard struct {
	name   string
	value  *canvas.Text
	states []string // queue states summed, or nil for a counter of today
	today  []string // counter names (prefixes ending in ':') summed since midnight
}

// dashboard is the first tab: is mail flowing, and if not, why.
type dashboard struct {
	u           *UI
	content     fyne.CanvasObject
	status      *widget.Label
	detail      *widget.Label
	problem     *widget.Label
	pauseButton *widget.Button
	cards       []*counterCard
	chart       *BarChart
	span        *widget.RadioGroup
	errors      *widget.Label
	recent      []string // latest problems, newest first
	// seeded is set once the latest problems were filled from the queue
	// (at start, before any event) or an event added one.
	seeded     bool
	dests      []engine.Destination
	destTable  *widget.Table
	destEmpty  *widget.Label
	last       snapshot
	lastNotice time.Time
}

// maxRecent is how many problems the dashboard lists.
const maxRecent = 8

func newDashboard(u *UI) *dashboard {
	d := &dashboard{u: u}
	d.status = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	d.detail = widget.NewLabel("")
	d.detail.Wrapping = fyne.TextWrapWord
	d.problem = widget.NewLabel("")
	d.problem.Importance = widget.DangerImportance
	d.problem.Wrapping = fyne.TextWrapWord
	d.problem.Hide()
	d.pauseButton = widget.NewButton("Pause sending", u.togglePaused)

	d.cards = []*counterCard{
		{name: "Waiting to be sent", states: []string{"queued", "scheduled", "sending"}},
		{name: "Waiting to retry", states: []string{"deferred"}},
		{name: "Held", states: []string{"held"}},
		{name: "Sent today", today: []string{"sent"}},
		{name: "Returned today", today: []string{"bounced", "expired"}},
		{name: "Refused today", today: []string{"refused:"}},
	}
	grid := container.NewGridWithColumns(6)
	for _, c := range d.cards {
		c.value = canvas.NewText("0", theme.Color(theme.ColorNameForeground))
		c.value.TextSize = 28
		c.value.TextStyle.Bold = true
		c.value.Alignment = fyne.TextAlignCenter
		name := widget.NewLabelWithStyle(c.name, fyne.TextAlignCenter, fyne.TextStyle{})
		bg := canvas.NewRectangle(theme.Color(theme.ColorNameInputBackground))
		bg.CornerRadius = 6
		grid.Add(container.NewStack(bg, container.NewVBox(container.NewPadded(c.value), name)))
	}

	d.chart = NewBarChart([]Series{
		{Name: "Sent", Color: colorSent},
		{Name: "Waiting to retry", Color: colorDeferred},
		{Name: "Returned", Color: colorBounced},
	})
	d.span = widget.NewRadioGroup([]string{spanHour, spanDay}, func(string) { d.drawChart() })
	d.span.Horizontal = true
	d.span.Required = true
	d.span.SetSelected(spanHour)

	d.errors = widget.NewLabel("No problems so far.")
	d.errors.Wrapping = fyne.TextWrapWord
	d.destTable = d.newDestTable()
	d.destEmpty = widget.NewLabel("No mail in the last 24 hours.")
	d.destEmpty.Importance = widget.LowImportance

	header := container.NewBorder(nil, nil, nil, container.NewCenter(d.pauseButton), container.NewVBox(d.status, d.detail))
	chartBox := container.NewBorder(
		container.NewHBox(widget.NewLabelWithStyle("Mail per interval", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), layout.NewSpacer(), d.span),
		d.chart.Legend(), nil, nil, d.chart)
	destBox := container.NewBorder(
		widget.NewLabelWithStyle("Where mail is going (last 24 hours)", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		nil, nil, nil,
		container.NewStack(d.destTable, container.NewVBox(d.destEmpty)))
	problems := container.NewBorder(
		widget.NewLabelWithStyle("Latest problems", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		nil, nil, nil, container.NewVScroll(d.errors))
	lower := container.NewHSplit(container.NewPadded(destBox), container.NewPadded(problems))
	lower.Offset = 0.5
	middle := container.NewVSplit(container.NewPadded(chartBox), lower)
	middle.Offset = 0.5
	d.content = container.NewBorder(
		container.NewVBox(header, d.problem, widget.NewSeparator(), grid),
		nil, nil, nil, middle,
	)
	return d
}

// destColumns are the destination table's columns.
var destColumns = []struct {
	title string
	width float32
}{{"Domain", 170}, {"State", 90}, {"Mail", 250}}

func (d *dashboard) newDestTable() *widget.Table {
	t := widget.NewTableWithHeaders(
		func() (int, int) { return len(d.dests), len(destColumns) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(id widget.TableCellID, o fyne.CanvasObject) {
			l := o.(*widget.Label)
			if id.Row >= len(d.dests) {
				return
			}
			dest := d.dests[id.Row]
			l.Importance = widget.MediumImportance
			switch id.Col {
			case 0:
				l.SetText(dest.Domain)
			case 1:
				word, imp := destinationState(dest)
				l.Importance = imp
				l.SetText(word)
			case 2:
				l.SetText(destinationCounts(dest))
			}
		},
	)
	t.ShowHeaderColumn = false
	t.CreateHeader = func() fyne.CanvasObject {
		return widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	}
	t.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		o.(*widget.Label).SetText(destColumns[id.Col].title)
	}
	for i, c := range destColumns {
		t.SetColumnWidth(i, c.width)
	}
	return t
}

// destinationState says in a word how mail to a domain is doing.
func destinationState(d engine.Destination) (string, widget.Importance) {
	switch {
	case d.Returned > 0 && d.Sent == 0 && d.Waiting+d.Scheduled+d.Retrying+d.Held == 0:
		return "Returned", widget.DangerImportance
	case d.Retrying > 0:
		return "Retrying", widget.WarningImportance
	case d.Held > 0 && d.Waiting == 0:
		return "Held", widget.WarningImportance
	case d.Waiting > 0:
		return "Sending", widget.MediumImportance
	case d.Scheduled > 0:
		return "Scheduled", widget.MediumImportance
	case d.Returned > 0:
		return "Some returned", widget.WarningImportance
	}
	return "OK", widget.SuccessImportance
}

// destinationCounts lists a domain's mail by state, leaving out zeros.
func destinationCounts(d engine.Destination) string {
	var parts []string
	for _, p := range []struct {
		n    int
		word string
	}{{d.Waiting, "waiting"}, {d.Scheduled, "scheduled"}, {d.Retrying, "to retry"}, {d.Held, "held"}, {d.Sent, "sent"}, {d.Returned, "returned"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.word))
		}
	}
	return strings.Join(parts, ", ")
}

// applyDestinations shows a new destination summary and, before any
// event has, fills the latest problems from the errors it holds, so the
// dashboard explains a stuck queue right after a restart.
func (d *dashboard) applyDestinations(dests []engine.Destination) {
	d.dests = dests
	d.destTable.Refresh()
	if len(dests) == 0 {
		d.destEmpty.Show()
	} else {
		d.destEmpty.Hide()
	}
	if d.seeded {
		return
	}
	d.seeded = true
	withErrors := slices.Clone(dests)
	withErrors = slices.DeleteFunc(withErrors, func(x engine.Destination) bool { return x.LastError == "" })
	// Oldest first: addProblem puts each line on top.
	slices.SortFunc(withErrors, func(a, b engine.Destination) int { return a.LastErrorAt.Compare(b.LastErrorAt) })
	for _, x := range withErrors {
		d.addProblem(x.LastErrorAt, deliveryLine(x.LastRecipient, x.LastErrorFinal, x.LastCode, x.LastError))
	}
}

const (
	spanHour = "Last hour"
	spanDay  = "Last 24 hours"
)

// apply shows a snapshot; it runs on the Fyne goroutine.
func (d *dashboard) apply(s snapshot) {
	mode := "delivering directly to the recipients' mail servers"
	if s.settings.Delivery.Mode == "smarthost" {
		mode = "sending through " + s.settings.Delivery.Smarthost
	}
	if s.listen == "" {
		d.detail.SetText("Not accepting mail: the relay is not listening (see the Log tab, or change the port under Settings). " + capitalise(mode) + ".")
	} else {
		d.detail.SetText("Accepting mail on " + s.listen + ", " + mode + ".")
	}
	if s.err != nil {
		// Keep the last good numbers on screen; they beat zeros.
		d.problem.SetText("Could not read the queue: " + s.err.Error())
		d.problem.Show()
		if d.last.counts == nil {
			d.status.SetText("Status unknown")
		}
		return
	}
	d.problem.Hide()
	d.last = s
	if s.paused {
		d.status.SetText("Sending paused: mail is accepted and waits in the queue")
		d.pauseButton.SetText("Resume sending")
	} else {
		d.status.SetText("Sending")
		d.pauseButton.SetText("Pause sending")
	}
	d.pauseButton.Enable()
	if s.destsRead {
		d.applyDestinations(s.dests)
	}
	midnight := startOfDay(s.now)
	for _, c := range d.cards {
		n := 0
		for _, st := range c.states {
			n += s.counts[st]
		}
		for _, p := range s.points {
			if p.Minute.Before(midnight) {
				continue
			}
			for _, name := range c.today {
				if p.Name == name || strings.HasSuffix(name, ":") && strings.HasPrefix(p.Name, name) {
					n += p.N
				}
			}
		}
		c.value.Text = fmt.Sprint(n)
		c.value.Refresh()
	}
	d.drawChart()
}

// drawChart fills the chart from the last snapshot for the chosen span.
func (d *dashboard) drawChart() {
	if d.last.now.IsZero() {
		return
	}
	span, buckets := time.Hour, 12 // 5-minute bars
	if d.span.Selected == spanDay {
		span, buckets = 24*time.Hour, 24 // hourly bars
	}
	step := span / time.Duration(buckets)
	end := d.last.now.Truncate(step).Add(step)
	start := end.Add(-span)
	values := make([][]float64, buckets)
	for i := range values {
		values[i] = make([]float64, 3)
	}
	for _, p := range d.last.points {
		if p.Minute.Before(start) || !p.Minute.Before(end) {
			continue
		}
		i := int(p.Minute.Sub(start) / step)
		switch p.Name {
		case "sent":
			values[i][0] += float64(p.N)
		case "deferred":
			values[i][1] += float64(p.N)
		case "bounced", "expired":
			values[i][2] += float64(p.N)
		}
	}
	format := "15:04"
	d.chart.SetData(values, start.Format(format), end.Format(format))
}

// onEvent notes problems as they happen, in plain words.
func (d *dashboard) onEvent(ev engine.Event) {
	var line string
	switch {
	case ev.Kind == engine.EventDelivery && ev.State == engine.StateDeferred:
		line = deliveryLine(ev.Recipient, false, ev.Code, ev.Text)
	case ev.Kind == engine.EventDelivery && (ev.State == engine.StateBounced || ev.State == engine.StateExpired):
		line = deliveryLine(ev.Recipient, true, ev.Code, ev.Text)
	case ev.Kind == engine.EventError:
		line = ev.Text
	case ev.Kind == engine.EventRefused:
		line = explainRefusal(ev.Text)
	default:
		return
	}
	d.seeded = true
	d.addProblem(ev.Time, line)
}

// deliveryLine is one failed delivery in words.
func deliveryLine(recipient string, final bool, code int, text string) string {
	if final {
		return "Mail to " + recipient + " was returned to its sender: " + explainDelivery(code, text)
	}
	return "Mail to " + recipient + " is not delivered yet and will be tried again: " + explainDelivery(code, text)
}

// addProblem puts a line at the top of the latest problems.
func (d *dashboard) addProblem(at time.Time, line string) {
	stamp := at.Local().Format("15:04")
	if !startOfDay(at.Local()).Equal(startOfDay(time.Now())) {
		stamp = at.Local().Format("Jan 2 15:04")
	}
	d.recent = append([]string{stamp + "  " + line}, d.recent...)
	if len(d.recent) > maxRecent {
		d.recent = d.recent[:maxRecent]
	}
	// A blank line between problems: each may wrap over several lines.
	d.errors.SetText(strings.Join(d.recent, "\n\n"))
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
