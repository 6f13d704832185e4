package gui

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"postroom/assets"
	"postroom/engine"
)

func tabNames(u *UI) []string {
	var names []string
	for _, it := range u.tabs.Items {
		names = append(names, it.Text)
	}
	return names
}

func TestMainWindowHasTheFourTabs(t *testing.T) {
	h := startUI(t, newApp(t), newFakeEngine(nil), nil)
	got := tabNames(h.u)
	want := []string{"Dashboard", "Queue", "Settings", "Log"}
	if len(got) != len(want) {
		t.Fatalf("tabs %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("tabs %q, want %q", got, want)
		}
	}
	if h.u.window.Title() != "Postroom" {
		t.Errorf("window title %q", h.u.window.Title())
	}
	if h.u.wizard != nil {
		t.Error("the setup wizard opened although settings were saved")
	}
}

func TestPauseButtonPausesAndResumes(t *testing.T) {
	eng := newFakeEngine(map[string]int{"queued": 1})
	h := startUI(t, newApp(t), eng, nil)
	d := h.u.dash

	h.do(func() { test.Tap(d.pauseButton) })
	if got := waitFor(t, eng.setPaused, "SetPaused"); got != true {
		t.Fatalf("Pause button called SetPaused(%v), want true", got)
	}
	h.until(t, "the paused status", func() bool { return d.pauseButton.Text == "Resume sending" })
	if d.status.Text != "Sending paused: mail is accepted and waits in the queue" {
		t.Errorf("status after pausing: %q", d.status.Text)
	}
	h.do(func() { test.Tap(d.pauseButton) })
	if got := waitFor(t, eng.setPaused, "SetPaused"); got != false {
		t.Fatalf("Resume button called SetPaused(%v), want false", got)
	}
	h.until(t, "the sending status", func() bool { return d.status.Text == "Sending" })
}

func TestPauseFailureShowsErrorAndReenablesButton(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.pauseErr = errors.New("database is locked")
	eng.gate = make(chan struct{})
	h := startUI(t, newApp(t), eng, nil)
	button := h.u.dash.pauseButton
	h.do(func() { test.Tap(button) })
	waitFor(t, eng.setPaused, "SetPaused")
	if !button.Disabled() {
		t.Error("Pause button can be tapped again while SetPaused is in progress")
	}
	close(eng.gate)
	h.until(t, "the button to come back", func() bool { return !button.Disabled() })
	if h.u.window.Canvas().Overlays().Top() == nil {
		t.Error("no error dialog after SetPaused failed")
	}
	if h.u.dash.status.Text != "Sending" {
		t.Errorf("after a failed pause the status is %q", h.u.dash.status.Text)
	}
}

func TestTrayMenu(t *testing.T) {
	eng := newFakeEngine(map[string]int{"queued": 2, "deferred": 1, "sent": 9})
	a := newTrayApp(t)
	h := startUI(t, a, eng, nil)

	labels, items := a.trayItems(t)
	want := []string{"Open Postroom", "Pause sending", "3 messages in queue", "Quit"}
	if len(labels) != len(want) {
		t.Fatalf("tray menu %q, want %q", labels, want)
	}
	for i := range want {
		if labels[i] != want[i] {
			t.Fatalf("tray menu %q, want %q", labels, want)
		}
	}
	if !items["3 messages in queue"].Disabled {
		t.Error("the queue count line in the tray menu can be clicked")
	}
	if a.window != h.u.window {
		t.Error("the window was not handed to the tray")
	}
	if !bytes.Equal(a.trayIcon(), assets.Icon) {
		t.Error("tray icon is not the normal icon while sending")
	}
	items["Pause sending"].Action()
	waitFor(t, eng.setPaused, "SetPaused from the tray")
	h.until(t, "the paused tray icon", func() bool { return bytes.Equal(a.trayIcon(), assets.IconPaused) })
	labels, _ = a.trayItems(t)
	if !contains(labels, "Resume sending") {
		t.Errorf("after pausing the tray menu is %q", labels)
	}

	eng.set(func(f *fakeEngine) { f.countsErr = errors.New("disk I/O error") })
	h.u.Refresh()
	if !bytes.Equal(a.trayIcon(), assets.IconAlert) {
		t.Error("tray icon is not the alert icon while the queue cannot be read")
	}
	if !h.u.dash.problem.Visible() || h.u.dash.problem.Text != "Could not read the queue: disk I/O error" {
		t.Errorf("dashboard problem line %q", h.u.dash.problem.Text)
	}
	items["Quit"].Action()
	waitFor(t, a.quit, "the app to be asked to quit")
}

func TestClosingWindowHidesItOnlyWhileTrayShows(t *testing.T) {
	a := newTrayApp(t)
	h := startUI(t, a, newFakeEngine(nil), nil)
	h.u.closeRequested()
	select {
	case <-a.quit:
		t.Fatal("closing the window quit the app although the tray icon is showing")
	default:
	}
	h.u.tray = fakeTray{isShowing: false}
	h.u.closeRequested()
	select {
	case <-a.quit:
	default:
		t.Fatal("closing the window did not quit the app although no tray icon is showing")
	}
}

func TestNoTrayWithoutTrayHost(t *testing.T) {
	a := newTrayApp(t)
	u := newUI(a, newFakeEngine(nil), nil, noTray{})
	u.build()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.menu != nil || a.icon != nil {
		t.Error("a tray menu or icon was set up although the desktop has no tray")
	}
}

// noTray is a desktop where no tray can be set up (no D-Bus session bus).
type noTray struct{}

func (noTray) available() bool { return false }
func (noTray) showing() bool   { return false }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestTrayAndNotificationWhenMailIsStuck(t *testing.T) {
	eng := newFakeEngine(map[string]int{"deferred": 4})
	now := time.Now()
	// Attempts failed in the last half hour and none succeeded.
	eng.points = []engine.CounterPoint{{Name: "deferred", Minute: now.Add(-10 * time.Minute), N: 4}}
	a := newTrayApp(t)
	var h *harness
	test.AssertNotificationSent(t, fyne.NewNotification("Postroom: mail is not going out",
		"4 messages are waiting and nothing was sent in the last 30 minutes. Open Postroom to see why."), func() {
		h = startUI(t, a, eng, nil)
	})
	if !bytes.Equal(a.trayIcon(), assets.IconAlert) {
		t.Error("the tray icon does not show that mail is stuck")
	}
	labels, _ := a.trayItems(t)
	if !contains(labels, "Problem: nothing sent for 30 minutes") {
		t.Errorf("tray menu %q does not say mail is stuck", labels)
	}
	// Once said, not again on every refresh.
	test.AssertNotificationSent(t, nil, func() { h.u.Refresh() })

	// Mail goes out again: the problem line and the alert go away.
	eng.set(func(f *fakeEngine) {
		f.counts = map[string]int{"deferred": 0}
		f.points = append(f.points, engine.CounterPoint{Name: "sent", Minute: now, N: 4})
	})
	h.u.Refresh()
	labels, _ = a.trayItems(t)
	if contains(labels, "Problem: nothing sent for 30 minutes") || !bytes.Equal(a.trayIcon(), assets.Icon) {
		t.Errorf("after mail went out the tray menu is %q", labels)
	}

	// A bounce in the last hour shows too.
	eng.set(func(f *fakeEngine) {
		f.points = append(f.points, engine.CounterPoint{Name: "bounced", Minute: now.Add(-5 * time.Minute), N: 2})
	})
	h.u.Refresh()
	labels, _ = a.trayItems(t)
	if !contains(labels, "Problem: 2 messages returned in the last hour") || !bytes.Equal(a.trayIcon(), assets.IconAlert) {
		t.Errorf("after bounces the tray menu is %q", labels)
	}
}

func TestPausedQueueIsNotStuck(t *testing.T) {
	eng := newFakeEngine(map[string]int{"deferred": 4})
	eng.paused = true
	eng.points = []engine.CounterPoint{{Name: "deferred", Minute: time.Now().Add(-10 * time.Minute), N: 4}}
	a := newTrayApp(t)
	test.AssertNotificationSent(t, nil, func() { startUI(t, a, eng, nil) })
	labels, _ := a.trayItems(t)
	if !contains(labels, "Sending is paused") || !bytes.Equal(a.trayIcon(), assets.IconPaused) {
		t.Errorf("paused tray menu %q", labels)
	}
}
