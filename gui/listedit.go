package gui

import (
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"postroom/engine/config"
	"postroom/engine/policy"
)

// listEditor edits one access list: the entries, each with a Remove
// button, and an entry line with Add that checks the new entry before it
// joins the list.
type listEditor struct {
	items   []string
	box     *fyne.Container
	input   *widget.Entry
	add     *widget.Button
	problem *widget.Label
	check   func(string) error
	onEmpty string // what an empty list means, shown in its place
}

// listField makes an access-list field. networks says whether entries are
// networks (checked with policy.ParseNetwork) or addresses and domains
// (policy.ParseAddressEntry).
func listField(key, label, placeholder, onEmpty string, networks bool, get func(*config.Settings) *[]string) (*field, *listEditor) {
	l := &listEditor{box: container.NewVBox(), onEmpty: onEmpty}
	if networks {
		l.check = func(s string) error { _, err := policy.ParseNetwork(s); return err }
	} else {
		l.check = func(s string) error { _, err := policy.ParseAddressEntry(s); return err }
	}
	l.input = widget.NewEntry()
	l.input.SetPlaceHolder(placeholder)
	l.input.OnSubmitted = func(string) { l.addEntry() }
	l.add = widget.NewButtonWithIcon("Add", theme.ContentAddIcon(), l.addEntry)
	l.problem = widget.NewLabel("")
	l.problem.Importance = widget.DangerImportance
	l.problem.Wrapping = fyne.TextWrapWord
	l.problem.Hide()
	control := container.NewVBox(l.box, container.NewBorder(nil, nil, nil, l.add, l.input), l.problem)
	f := newField(key, label, control)
	f.load = func(s config.Settings) { l.set(*get(&s)) }
	f.store = func(s *config.Settings) error {
		if len(l.items) == 0 {
			*get(s) = nil
		} else {
			*get(s) = slices.Clone(l.items)
		}
		return nil
	}
	return f, l
}

func (l *listEditor) set(items []string) {
	l.items = slices.Clone(items)
	l.redraw()
}

// addEntry checks the typed entry and adds it; a bad one is explained
// under the input and not added.
func (l *listEditor) addEntry() {
	v := strings.TrimSpace(l.input.Text)
	if v == "" {
		return
	}
	if err := l.check(v); err != nil {
		l.problem.SetText(v + ": " + err.Error())
		l.problem.Show()
		return
	}
	l.problem.Hide()
	if !slices.Contains(l.items, v) {
		l.items = append(l.items, v)
	}
	l.input.SetText("")
	l.redraw()
}

func (l *listEditor) remove(v string) {
	l.items = slices.DeleteFunc(l.items, func(s string) bool { return s == v })
	l.redraw()
}

func (l *listEditor) redraw() {
	l.box.RemoveAll()
	if len(l.items) == 0 {
		empty := widget.NewLabel(l.onEmpty)
		empty.Importance = widget.LowImportance
		l.box.Add(empty)
	}
	for _, item := range l.items {
		v := item
		rm := widget.NewButtonWithIcon("", theme.DeleteIcon(), func() { l.remove(v) })
		rm.Importance = widget.LowImportance
		l.box.Add(container.NewBorder(nil, nil, nil, rm, widget.NewLabel(v)))
	}
	l.box.Refresh()
}
