package gui

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
)

// pickerItems lists what the dialog on top shows as tappable entries with
// a text (the file picker's files and folders, its buttons), by text. It
// reads the widgets' renderers, so it sees only what is laid out.
func pickerItems(h *harness) map[string]fyne.Tappable {
	items := map[string]fyne.Tappable{}
	var visit func(o fyne.CanvasObject, tappable fyne.Tappable)
	visit = func(o fyne.CanvasObject, tappable fyne.Tappable) {
		if o == nil || !o.Visible() {
			return
		}
		if tp, ok := o.(fyne.Tappable); ok {
			tappable = tp
		}
		switch v := o.(type) {
		case *widget.Label:
			if tappable != nil && v.Text != "" {
				items[v.Text] = tappable
			}
		case *widget.Button:
			items[v.Text] = v
		case *fyne.Container:
			for _, c := range v.Objects {
				visit(c, tappable)
			}
		case fyne.Widget:
			for _, c := range test.WidgetRenderer(v).Objects() {
				visit(c, tappable)
			}
		}
	}
	h.do(func() {
		if top := h.u.window.Canvas().Overlays().Top(); top != nil {
			visit(top, nil)
		}
	})
	return items
}

// eventually polls cond until it holds or waitTimeout passes; the file
// dialog lists its folder without telling the window.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not a timing assertion
	}
}

func TestBrowseFillsTheFileChosenInThePicker(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"cert2026.pem", "private.key", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := startUI(t, newApp(t), newFakeEngine(nil), nil)
	cert := settingsField(t, h.u.settings, "listen.tls_cert")
	// The picker opens in the folder of the file named in the field.
	setText(h, entryOf(t, cert), filepath.Join(dir, "cert2025.pem"))
	var browse *widget.Button
	h.do(func() {
		walk(cert.layout, func(b *widget.Button) {
			if b.Text == "Browse…" {
				browse = b
			}
		})
	})
	if browse == nil {
		t.Fatal("the certificate field has no Browse… button")
	}
	h.do(func() { test.Tap(browse) })

	// The grid view shows names without their extension, the list view
	// with it.
	name := func(items map[string]fyne.Tappable, base, ext string) fyne.Tappable {
		if it, ok := items[base]; ok {
			return it
		}
		return items[base+ext]
	}
	var items map[string]fyne.Tappable
	eventually(t, "the certificate in the picker", func() bool {
		items = pickerItems(h)
		return name(items, "cert2026", ".pem") != nil
	})
	if name(items, "private", ".key") == nil {
		t.Errorf("the picker leaves out the key file; it shows %v", slices.Sorted(maps.Keys(items)))
	}
	if name(items, "notes", ".txt") != nil {
		t.Error("the picker offers notes.txt, which is no certificate or key")
	}
	open, ok := items["Choose"]
	if !ok {
		t.Fatalf("the picker has no Choose button; it shows %v", slices.Sorted(maps.Keys(items)))
	}
	h.do(func() {
		name(items, "cert2026", ".pem").Tapped(&fyne.PointEvent{})
		open.Tapped(&fyne.PointEvent{})
	})
	want := filepath.Join(dir, "cert2026.pem")
	eventually(t, "the chosen file in the field", func() bool {
		var got string
		h.do(func() { got = entryOf(t, cert).Text })
		return got == want
	})
	h.do(func() {
		if top := h.u.window.Canvas().Overlays().Top(); top != nil {
			t.Error("the picker is still open after Choose")
		}
	})
}

func TestPickerStartsInTheFolderOfTheFileNamed(t *testing.T) {
	dir := t.TempDir()
	if got := pickerStart(filepath.Join(dir, "relay.pem")); got == nil || got.Path() != dir {
		t.Errorf("for a file in %s the picker starts in %v", dir, got)
	}
	for _, path := range []string{"", "  ", "relay.pem", filepath.Join(dir, "gone", "relay.pem")} {
		if got := pickerStart(path); got != nil {
			t.Errorf("for %q the picker starts in %v, want its own default", path, got)
		}
	}
}
