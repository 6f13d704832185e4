package gui

import (
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"postroom/engine"
)

// maxLogLines bounds what the Log tab keeps; the ring in the engine
// package is the source, this is the view.
const maxLogLines = 2000

// logView is the Log tab: the engine's log, newest at the bottom, with a
// filter. It changes only on the Fyne goroutine.
type logView struct {
	content fyne.CanvasObject
	lines   []string
	shown   []string
	filter  *widget.Entry
	list    *widget.List
	follow  *widget.Check
}

func newLogView() *logView {
	v := &logView{}
	v.filter = widget.NewEntry()
	v.filter.SetPlaceHolder("Filter: show only lines containing…")
	v.filter.OnChanged = func(string) { v.apply() }
	v.follow = widget.NewCheck("Follow new lines", nil)
	v.follow.SetChecked(true)
	v.list = widget.NewList(
		func() int { return len(v.shown) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.TextStyle.Monospace = true
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i < len(v.shown) {
				o.(*widget.Label).SetText(v.shown[i])
			}
		},
	)
	v.content = container.NewBorder(container.NewBorder(nil, nil, nil, v.follow, v.filter), nil, nil, nil, v.list)
	return v
}

func (v *logView) add(lines []engine.LogLine) {
	for _, l := range lines {
		v.lines = append(v.lines, l.String())
	}
	if over := len(v.lines) - maxLogLines; over > 0 {
		v.lines = append([]string(nil), v.lines[over:]...)
	}
	v.apply()
}

func (v *logView) apply() {
	f := strings.ToLower(strings.TrimSpace(v.filter.Text))
	v.shown = v.shown[:0]
	for _, l := range v.lines {
		if f == "" || strings.Contains(strings.ToLower(l), f) {
			v.shown = append(v.shown, l)
		}
	}
	v.list.Refresh()
	if v.follow.Checked && len(v.shown) > 0 {
		v.list.ScrollToBottom()
	}
}
