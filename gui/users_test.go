package gui

import (
	"errors"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"postroom/engine"
)

// openUsers brings the Users page to the front and waits for the list.
func openUsers(t *testing.T, h *harness) *usersView {
	t.Helper()
	v := h.u.settings
	h.do(func() {
		h.u.tabs.SelectIndex(2)
		for i, it := range v.pages.Items {
			if it.Text == "Users" {
				v.pages.SelectIndex(i)
			}
		}
	})
	return v.users
}

// confirm taps the button labelled label in the dialog on top.
func confirm(t *testing.T, h *harness, label string) {
	t.Helper()
	var btn *widget.Button
	h.do(func() {
		top := h.u.window.Canvas().Overlays().Top()
		if top == nil {
			t.Fatal("no dialog is open")
		}
		walk(top, func(b *widget.Button) {
			if b.Text == label {
				btn = b
			}
		})
	})
	if btn == nil {
		t.Fatalf("no %q button in the dialog", label)
	}
	h.do(func() { test.Tap(btn) })
}

func TestUsersPageAddsAndRemovesThroughTheEngine(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.users = []engine.User{{Name: "scanner", PerHour: 20}}
	h := startUI(t, newApp(t), eng, nil)
	v := openUsers(t, h)
	h.until(t, "the user list", func() bool { return len(v.users) == 1 })
	if v.rowButtons["scanner"] == nil {
		t.Fatal("the user scanner has no buttons")
	}
	if got := quotaWords(v.users[0]); got != "at most 20 messages an hour" {
		t.Errorf("scanner's limit reads %q", got)
	}

	// The engine's refusal shows at the field it is about, and what was
	// typed stays.
	eng.set(func(f *fakeEngine) { f.userErr = errors.New("the password is too short: use at least 8 characters") })
	h.do(func() {
		v.name.SetText("office@example.com")
		v.pass.SetText("short")
		test.Tap(v.add)
	})
	if c := waitFor(t, eng.userCalls, "AddUser"); c.op != "add" || c.name != "office@example.com" || c.password != "short" {
		t.Errorf("Add user called %+v", c)
	}
	h.until(t, "the password error", func() bool { return v.passErr.Visible() })
	if !strings.Contains(v.passErr.Text, "too short") || v.nameErr.Visible() || v.name.Text != "office@example.com" {
		t.Errorf("password error %q, name error shown %v, name kept %q", v.passErr.Text, v.nameErr.Visible(), v.name.Text)
	}

	eng.set(func(f *fakeEngine) { f.userErr = nil })
	h.do(func() {
		v.pass.SetText("long enough secret")
		test.Tap(v.add)
	})
	waitFor(t, eng.userCalls, "AddUser")
	h.until(t, "the new user in the list", func() bool { return len(v.users) == 2 && v.rowButtons["office@example.com"] != nil })
	if v.name.Text != "" || v.pass.Text != "" || v.passErr.Visible() {
		t.Errorf("after adding: name %q, password left in the box %v, error shown %v", v.name.Text, v.pass.Text != "", v.passErr.Visible())
	}

	h.do(func() { test.Tap(v.rowButtons["scanner"]["remove"]) })
	select {
	case c := <-eng.userCalls:
		t.Fatalf("Remove acted before it was confirmed: %+v", c)
	default:
	}
	confirm(t, h, "Yes")
	if c := waitFor(t, eng.userCalls, "RemoveUser"); c.op != "remove" || c.name != "scanner" {
		t.Errorf("Remove called %+v", c)
	}
	h.until(t, "the list without scanner", func() bool { return len(v.users) == 1 && v.users[0].Name == "office@example.com" })
}

func TestUsersPageSetsPasswordAndLimits(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.users = []engine.User{{Name: "scanner"}}
	h := startUI(t, newApp(t), eng, nil)
	v := openUsers(t, h)
	h.until(t, "the user list", func() bool { return v.rowButtons["scanner"] != nil })

	h.do(func() { test.Tap(v.rowButtons["scanner"]["password"]) })
	h.do(func() {
		v.dialogEntries[0].SetText("new secret 1")
		v.dialogEntries[1].SetText("new secret 2")
	})
	if err := v.dialogEntries[1].Validate(); err == nil {
		t.Error("two different passwords are accepted")
	}
	h.do(func() { v.dialogEntries[1].SetText("new secret 1") })
	confirm(t, h, "Set password")
	if c := waitFor(t, eng.userCalls, "SetPassword"); c.op != "password" || c.name != "scanner" || c.password != "new secret 1" {
		t.Errorf("Set password called %+v", c)
	}

	h.do(func() { test.Tap(v.rowButtons["scanner"]["quota"]) })
	h.do(func() {
		v.dialogEntries[0].SetText("50")
		v.dialogEntries[1].SetText("400")
	})
	confirm(t, h, "Set limits")
	if c := waitFor(t, eng.userCalls, "SetUserQuota"); c.op != "quota" || c.perHour != 50 || c.perDay != 400 {
		t.Errorf("Set limits called %+v", c)
	}
	h.until(t, "the new limits", func() bool { return len(v.users) == 1 && v.users[0].PerDay == 400 })
}

func TestUsersPageShowsWhatEachUserSent(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.users = []engine.User{{Name: "office"}, {Name: "scanner", PerHour: 20, PerDay: 100}}
	eng.usage = map[string]engine.UserUsage{"scanner": {LastHour: 12, LastDay: 40}, "office": {LastHour: 3, LastDay: 7}}
	h := startUI(t, newApp(t), eng, nil)
	v := openUsers(t, h)
	line := func(name string) string { return v.usageLabels[name].Text }
	h.until(t, "the users' usage", func() bool { return v.usageLabels["scanner"] != nil && strings.Contains(line("scanner"), "12") })
	if got, want := line("scanner"), "12 of 20 sent in the last hour · 40 of 100 in the last 24 hours"; got != want {
		t.Errorf("scanner's line reads %q, want %q", got, want)
	}
	if got, want := line("office"), "no limit · 3 sent in the last hour · 7 in the last 24 hours"; got != want {
		t.Errorf("office's line reads %q, want %q", got, want)
	}
	if v.usageLabels["scanner"].Importance == widget.WarningImportance {
		t.Error("scanner's line warns although it is below its limits")
	}

	// Mail arrives: the engine's event makes the page count again, and a
	// user who reached a limit is marked.
	eng.set(func(f *fakeEngine) { f.usage["scanner"] = engine.UserUsage{LastHour: 20, LastDay: 41} })
	eng.events <- engine.Event{Time: time.Now(), Kind: engine.EventReceived, MessageID: 8}
	h.until(t, "scanner's new count", func() bool { return strings.HasPrefix(line("scanner"), "20 of 20 ") })
	if v.usageLabels["scanner"].Importance != widget.WarningImportance {
		t.Error("scanner's line does not warn at its hourly limit")
	}

	// When counting fails the page still lists the users with their limits.
	eng.set(func(f *fakeEngine) { f.usageErr = errors.New("database is locked") })
	h.do(func() { h.u.goBG(v.reload) })
	h.until(t, "the error", func() bool { return strings.Contains(v.status.Text, "database is locked") })
	if got := line("scanner"); got != "at most 20 messages an hour and 100 messages a day" {
		t.Errorf("without counts scanner's line reads %q", got)
	}
	eng.set(func(f *fakeEngine) { f.usageErr = nil })
	h.do(func() { h.u.goBG(v.reload) })
	h.until(t, "the counts back", func() bool { return strings.HasPrefix(line("scanner"), "20 of 20 ") })
	if v.status.Text != "" {
		t.Errorf("after a good read the page still says %q", v.status.Text)
	}
}
