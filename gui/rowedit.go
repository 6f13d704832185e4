package gui

import (
	"fmt"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"postroom/engine/config"
)

// rowEditor edits a list of small records (a route: domain and server; a
// destination limit: domain and two numbers) as rows of entries, each
// with a Remove button, and an Add button for a new empty row. The rows
// are checked by the engine's validation on Apply, whose errors name the
// row; the editor itself only reads numbers.
type rowEditor struct {
	columns []string // each column's placeholder
	rows    [][]*widget.Entry
	box     *fyne.Container
	add     *widget.Button
	onEmpty string
}

func newRowEditor(columns []string, addLabel, onEmpty string) *rowEditor {
	r := &rowEditor{columns: columns, box: container.NewVBox(), onEmpty: onEmpty}
	r.add = widget.NewButtonWithIcon(addLabel, theme.ContentAddIcon(), func() { r.addRow(nil) })
	return r
}

func (r *rowEditor) control() fyne.CanvasObject {
	return container.NewVBox(r.box, container.NewHBox(r.add))
}

// set replaces the rows.
func (r *rowEditor) set(rows [][]string) {
	r.rows = nil
	for _, row := range rows {
		r.rows = append(r.rows, r.entries(row))
	}
	r.redraw()
}

func (r *rowEditor) entries(values []string) []*widget.Entry {
	row := make([]*widget.Entry, len(r.columns))
	for i, ph := range r.columns {
		e := widget.NewEntry()
		e.SetPlaceHolder(ph)
		if i < len(values) {
			e.SetText(values[i])
		}
		row[i] = e
	}
	return row
}

func (r *rowEditor) addRow(values []string) {
	r.rows = append(r.rows, r.entries(values))
	r.redraw()
}

func (r *rowEditor) removeRow(row []*widget.Entry) {
	for i, x := range r.rows {
		if x[0] == row[0] {
			r.rows = append(r.rows[:i], r.rows[i+1:]...)
			break
		}
	}
	r.redraw()
}

// values returns the rows' texts, trimmed, without rows left empty.
func (r *rowEditor) values() [][]string {
	var out [][]string
	for _, row := range r.rows {
		vals := make([]string, len(row))
		empty := true
		for i, e := range row {
			vals[i] = strings.TrimSpace(e.Text)
			empty = empty && vals[i] == ""
		}
		if !empty {
			out = append(out, vals)
		}
	}
	return out
}

func (r *rowEditor) redraw() {
	r.box.RemoveAll()
	if len(r.rows) == 0 {
		empty := widget.NewLabel(r.onEmpty)
		empty.Importance = widget.LowImportance
		r.box.Add(empty)
	}
	for _, row := range r.rows {
		cells := container.NewGridWithColumns(len(row))
		for _, e := range row {
			cells.Add(e)
		}
		rm := widget.NewButtonWithIcon("", theme.DeleteIcon(), func() { r.removeRow(row) })
		rm.Importance = widget.LowImportance
		r.box.Add(container.NewBorder(nil, nil, nil, rm, cells))
	}
	r.box.Refresh()
}

// routesField edits [[delivery.routes]]: mail for a domain goes to a
// given server instead of the one its DNS names.
func routesField() (*field, *rowEditor) {
	r := newRowEditor([]string{"Domain, e.g. branch.example.com", "Server, e.g. 192.168.1.5:25"}, "Add route", "None: all mail goes the way chosen above")
	f := newField("delivery.routes", "Special routes", r.control())
	f.load = func(s config.Settings) {
		var rows [][]string
		for _, rt := range s.Delivery.Routes {
			rows = append(rows, []string{rt.Domain, rt.Host})
		}
		r.set(rows)
	}
	f.store = func(s *config.Settings) error {
		s.Delivery.Routes = nil
		for _, v := range r.values() {
			s.Delivery.Routes = append(s.Delivery.Routes, config.Route{Domain: v[0], Host: v[1]})
		}
		return nil
	}
	return f, r
}

// destinationsField edits [[limits.destinations]]: how hard Postroom may
// push mail at one recipient domain.
func destinationsField() (*field, *rowEditor) {
	r := newRowEditor([]string{"Domain, or * for any other", "Connections at once (0 = any)", "Messages per minute (0 = any)"}, "Add domain limit", "None: no limit per domain")
	f := newField("limits.destinations", "Limits per recipient domain", r.control())
	f.load = func(s config.Settings) {
		var rows [][]string
		for _, d := range s.Limits.Destinations {
			rows = append(rows, []string{d.Domain, strconv.Itoa(d.MaxConnections), strconv.Itoa(d.MessagesPerMinute)})
		}
		r.set(rows)
	}
	f.store = func(s *config.Settings) error {
		s.Limits.Destinations = nil
		var bad []string
		for i, v := range r.values() {
			d := config.DestinationLimit{Domain: v[0]}
			var err error
			if d.MaxConnections, err = wholeNumber(v[1]); err != nil {
				bad = append(bad, fmt.Sprintf("row %d, connections: %v", i+1, err))
			}
			if d.MessagesPerMinute, err = wholeNumber(v[2]); err != nil {
				bad = append(bad, fmt.Sprintf("row %d, messages per minute: %v", i+1, err))
			}
			s.Limits.Destinations = append(s.Limits.Destinations, d)
		}
		if len(bad) > 0 {
			return fmt.Errorf("%s", strings.Join(bad, "\n"))
		}
		return nil
	}
	return f, r
}

// wholeNumber reads a count where empty means 0.
func wholeNumber(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	return n, nil
}
