package gui

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"postroom/engine/config"
)

// field is one setting on a settings page: its control, the line under
// it where its error shows, and how it moves between the control and a
// config.Settings. key is the settings key the engine's validation names
// ("listen.port"); errors for "access.blocked_senders[2]" go to the field
// whose key is "access.blocked_senders".
type field struct {
	key     string
	label   string
	control fyne.CanvasObject
	// layout, when not nil, is shown in place of control (a control with
	// a button beside it).
	layout  fyne.CanvasObject
	errLine *widget.Label
	// rowLabel and rowBody are the field's row in its form, set by form;
	// hiding both hides the row.
	rowLabel, rowBody fyne.CanvasObject
	load              func(config.Settings)
	// store writes the control's value into s; an error (a number that is
	// not one) is shown at the field.
	store func(s *config.Settings) error
}

func newField(key, label string, control fyne.CanvasObject) *field {
	e := widget.NewLabel("")
	e.Importance = widget.DangerImportance
	e.Wrapping = fyne.TextWrapWord
	e.Hide()
	return &field{key: key, label: label, control: control, errLine: e}
}

// setError shows (or, with "", hides) the field's error.
func (f *field) setError(msg string) {
	if msg == "" {
		f.errLine.SetText("")
		f.errLine.Hide()
	} else {
		f.errLine.SetText(msg)
		f.errLine.Show()
	}
	if e, ok := f.control.(*widget.Entry); ok {
		if msg == "" {
			e.SetValidationError(nil)
		} else {
			e.SetValidationError(errors.New(msg))
		}
	}
}

// form lays fields out as label | control, with the error under the control
// and an optional hint in small text.
func form(fields []*field, hints map[string]string) fyne.CanvasObject {
	grid := container.New(layout.NewFormLayout())
	for _, f := range fields {
		f.rowLabel = widget.NewLabelWithStyle(f.label, fyne.TextAlignTrailing, fyne.TextStyle{})
		grid.Add(f.rowLabel)
		shown := f.control
		if f.layout != nil {
			shown = f.layout
		}
		col := container.NewVBox(shown)
		if h := hints[f.key]; h != "" {
			hint := widget.NewLabel(h)
			hint.Wrapping = fyne.TextWrapWord
			hint.SizeName = theme.SizeNameCaptionText
			col.Add(hint)
		}
		col.Add(f.errLine)
		f.rowBody = col
		grid.Add(col)
	}
	return grid
}

// textField edits a string setting.
func textField(key, label string, get func(*config.Settings) *string) *field {
	e := widget.NewEntry()
	// No Validator (it would put a tick in every box): errors come from
	// Apply, and this lets SetValidationError mark the entry.
	e.AlwaysShowValidationError = true
	f := newField(key, label, e)
	f.load = func(s config.Settings) { e.SetText(*get(&s)) }
	f.store = func(s *config.Settings) error { *get(s) = strings.TrimSpace(e.Text); return nil }
	return f
}

// passwordField edits a secret string.
func passwordField(key, label string, get func(*config.Settings) *string) *field {
	e := widget.NewPasswordEntry()
	e.AlwaysShowValidationError = true
	f := newField(key, label, e)
	f.load = func(s config.Settings) { e.SetText(*get(&s)) }
	f.store = func(s *config.Settings) error { *get(s) = e.Text; return nil }
	return f
}

// intField edits a whole number; scale divides for display (bytes shown
// as megabytes, say) and multiplies back.
func intField(key, label string, scale int64, get func(*config.Settings) *int64) *field {
	e := widget.NewEntry()
	e.AlwaysShowValidationError = true
	f := newField(key, label, e)
	f.load = func(s config.Settings) { e.SetText(strconv.FormatInt(*get(&s)/scale, 10)) }
	f.store = func(s *config.Settings) error {
		n, err := strconv.ParseInt(strings.TrimSpace(e.Text), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", e.Text)
		}
		*get(s) = n * scale
		return nil
	}
	return f
}

// smallIntField edits an int setting.
func smallIntField(key, label string, get func(*config.Settings) *int) *field {
	e := widget.NewEntry()
	e.AlwaysShowValidationError = true
	f := newField(key, label, e)
	f.load = func(s config.Settings) { e.SetText(strconv.Itoa(*get(&s))) }
	f.store = func(s *config.Settings) error {
		n, err := strconv.Atoi(strings.TrimSpace(e.Text))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", e.Text)
		}
		*get(s) = n
		return nil
	}
	return f
}

// durationField edits a duration written as "5m", "4h", "5d".
func durationField(key, label string, get func(*config.Settings) *config.Duration) *field {
	e := widget.NewEntry()
	e.AlwaysShowValidationError = true
	f := newField(key, label, e)
	f.load = func(s config.Settings) { e.SetText(get(&s).String()) }
	f.store = func(s *config.Settings) error {
		d, err := config.ParseDuration(strings.TrimSpace(e.Text))
		if err != nil {
			return fmt.Errorf("%q is not a duration; write for example 30s, 5m, 4h or 5d", e.Text)
		}
		*get(s) = d
		return nil
	}
	return f
}

// checkField edits an on/off setting; text is the box's own words.
func checkField(key, label, text string, get func(*config.Settings) *bool) *field {
	c := widget.NewCheck(text, nil)
	f := newField(key, label, c)
	f.load = func(s config.Settings) { c.SetChecked(*get(&s)) }
	f.store = func(s *config.Settings) error { *get(s) = c.Checked; return nil }
	return f
}

// choice is one option of a selectField: what the user reads and what the
// settings file holds.
type choice struct{ label, value string }

// selectField picks one of a few values.
func selectField(key, label string, choices []choice, get func(*config.Settings) *string, changed func(value string)) *field {
	labels := make([]string, len(choices))
	for i, c := range choices {
		labels[i] = c.label
	}
	sel := widget.NewSelect(labels, nil)
	f := newField(key, label, sel)
	sel.OnChanged = func(l string) {
		if changed != nil {
			changed(valueOf(choices, l))
		}
	}
	f.load = func(s config.Settings) {
		v := *get(&s)
		for _, c := range choices {
			if c.value == v {
				sel.SetSelected(c.label)
				return
			}
		}
		sel.ClearSelected()
	}
	f.store = func(s *config.Settings) error { *get(s) = valueOf(choices, sel.Selected); return nil }
	return f
}

func valueOf(choices []choice, label string) string {
	for _, c := range choices {
		if c.label == label {
			return c.value
		}
	}
	return ""
}

// fieldFor finds the field an engine validation key belongs to.
func fieldFor(fields []*field, key string) *field {
	if i := strings.IndexByte(key, '['); i >= 0 {
		key = key[:i]
	}
	for _, f := range fields {
		if f.key == key {
			return f
		}
	}
	return nil
}
