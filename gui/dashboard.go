package gui

import (
	"context"
	"fmt"
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
	err      error
}

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
	last        snapshot
	lastNotice  time.Time
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

	header := container.NewBorder(nil, nil, nil, container.NewCenter(d.pauseButton), container.NewVBox(d.status, d.detail))
	chartBox := container.NewBorder(
		container.NewHBox(widget.NewLabelWithStyle("Mail per interval", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), layout.NewSpacer(), d.span),
		d.chart.Legend(), nil, nil, d.chart)
	d.content = container.NewBorder(
		container.NewVBox(header, d.problem, widget.NewSeparator(), grid),
		container.NewVBox(widget.NewSeparator(),
			widget.NewLabelWithStyle("Latest problems", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
			d.errors),
		nil, nil,
		container.NewPadded(chartBox),
	)
	return d
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
		line = "Mail to " + ev.Recipient + " could not be delivered yet and will be tried again: " + ev.Text
	case ev.Kind == engine.EventDelivery && (ev.State == engine.StateBounced || ev.State == engine.StateExpired):
		line = "Mail to " + ev.Recipient + " was returned to its sender: " + ev.Text
	case ev.Kind == engine.EventError:
		line = ev.Text
	case ev.Kind == engine.EventRefused:
		line = "Refused: " + ev.Text
	default:
		return
	}
	line = ev.Time.Local().Format("15:04") + "  " + line
	d.recent = append([]string{line}, d.recent...)
	if len(d.recent) > maxRecent {
		d.recent = d.recent[:maxRecent]
	}
	d.errors.SetText(strings.Join(d.recent, "\n"))
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
