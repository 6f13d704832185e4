package gui

// These tests do not call t.Parallel: fyne/v2/test installs each test app as
// Fyne's process-wide current app (fyne.CurrentApp), which fyne.Do and
// widget rendering use, so two GUI tests cannot safely overlap.

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"postroom/assets"
)

// waitTimeout bounds every wait for the GUI to react; generous because the
// race detector on a loaded machine is slow.
const waitTimeout = 10 * time.Second

// fakeEngine is an in-memory Engine whose SetPaused calls are observable.
type fakeEngine struct {
	mu        sync.Mutex
	counts    map[string]int
	paused    bool
	listen    string
	countsErr error
	pauseErr  error
	setPaused chan bool     // receives every SetPaused argument
	gate      chan struct{} // when not nil, SetPaused returns only once it is closed
}

func newFakeEngine(counts map[string]int) *fakeEngine {
	return &fakeEngine{counts: counts, listen: "127.0.0.1:2525", setPaused: make(chan bool, 10)}
}

func (f *fakeEngine) QueueCounts(context.Context) (map[string]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.countsErr != nil {
		return nil, f.countsErr
	}
	out := make(map[string]int, len(f.counts))
	for k, v := range f.counts {
		out[k] = v
	}
	return out, nil
}

func (f *fakeEngine) Paused(context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused, nil
}

func (f *fakeEngine) SetPaused(_ context.Context, paused bool) error {
	f.mu.Lock()
	err := f.pauseErr
	if err == nil {
		f.paused = paused
	}
	gate := f.gate
	f.mu.Unlock()
	f.setPaused <- paused
	if gate != nil {
		<-gate
	}
	return err
}

func (f *fakeEngine) ListenAddr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listen
}

func (f *fakeEngine) set(fn func(f *fakeEngine)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// trayApp is a test app with a system tray: the plain test app is not a
// desktop.App, so this records what the GUI gives the tray and whether the
// app was asked to quit.
type trayApp struct {
	fyne.App
	mu     sync.Mutex
	menu   *fyne.Menu
	icon   fyne.Resource
	window fyne.Window
	quit   chan struct{}
}

var _ desktop.App = (*trayApp)(nil)

func newTrayApp(t *testing.T) *trayApp {
	return &trayApp{App: test.NewTempApp(t), quit: make(chan struct{}, 1)}
}

func (a *trayApp) SetSystemTrayMenu(m *fyne.Menu) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.menu = m
}

func (a *trayApp) SetSystemTrayIcon(r fyne.Resource) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.icon = r
}

func (a *trayApp) SetSystemTrayWindow(w fyne.Window) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.window = w
}

func (a *trayApp) Quit() { a.quit <- struct{}{} }

// trayItems returns the labels of the tray menu and its items by label.
func (a *trayApp) trayItems(t *testing.T) ([]string, map[string]*fyne.MenuItem) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.menu == nil {
		t.Fatal("no tray menu was set")
	}
	var labels []string
	items := map[string]*fyne.MenuItem{}
	for _, it := range a.menu.Items {
		if it.IsSeparator {
			continue
		}
		labels = append(labels, it.Label)
		items[it.Label] = it
	}
	return labels, items
}

func (a *trayApp) trayIcon() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.icon == nil {
		return nil
	}
	return a.icon.Content()
}

// fakeTray is a desktop whose tray host is or is not running.
type fakeTray struct{ isShowing bool }

func (fakeTray) available() bool { return true }
func (f fakeTray) showing() bool { return f.isShowing }

// start runs ShowAndRun (which returns at once: the test app's Run is a
// no-op) and returns the window and a channel signalled after each refresh.
func start(t *testing.T, a fyne.App, eng Engine) (*UI, fyne.Window, chan struct{}) {
	t.Helper()
	refreshed := make(chan struct{}, 100)
	u := newUI(a, eng, fakeTray{isShowing: true})
	u.refreshed = func() { refreshed <- struct{}{} }
	u.ShowAndRun()
	// The test driver keeps a blank window of its own; look for ours.
	var ours []fyne.Window
	for _, w := range a.Driver().AllWindows() {
		if w.Title() == "Postroom" {
			ours = append(ours, w)
		}
	}
	if len(ours) != 1 {
		t.Fatalf("got %d windows titled Postroom, want 1", len(ours))
	}
	waitFor(t, refreshed, "the first refresh")
	return u, ours[0], refreshed
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// texts returns, in order, the text of every label and button the window
// shows (hidden ones left out), as a user reading it top to bottom sees them.
func texts(w fyne.Window) []string {
	var out []string
	var walk func(o fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		if !o.Visible() {
			return
		}
		switch v := o.(type) {
		case *widget.Label:
			out = append(out, v.Text)
		case *widget.Button:
			out = append(out, v.Text)
		case *fyne.Container:
			for _, c := range v.Objects {
				walk(c)
			}
		}
	}
	walk(w.Content())
	return out
}

// rowValue finds the label with the given text and returns the text that
// follows it: the count next to a row name.
func rowValue(t *testing.T, w fyne.Window, name string) string {
	t.Helper()
	all := texts(w)
	for i, s := range all {
		if s == name && i+1 < len(all) {
			return all[i+1]
		}
	}
	t.Fatalf("no row %q in window; it shows %q", name, all)
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func findButton(t *testing.T, w fyne.Window, text string) *widget.Button {
	t.Helper()
	var found *widget.Button
	var walk func(o fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		switch v := o.(type) {
		case *widget.Button:
			if v.Text == text {
				found = v
			}
		case *fyne.Container:
			for _, c := range v.Objects {
				walk(c)
			}
		}
	}
	walk(w.Content())
	if found == nil {
		t.Fatalf("no %q button; window shows %q", text, texts(w))
	}
	return found
}

func TestWindowShowsCountsByState(t *testing.T) {
	eng := newFakeEngine(map[string]int{
		"queued": 3, "scheduled": 1, "sending": 1,
		"deferred": 2, "held": 4, "sent": 120,
		"bounced": 1, "expired": 2,
	})
	_, w, _ := start(t, test.NewTempApp(t), eng)

	if w.Title() != "Postroom" {
		t.Errorf("window title %q, want Postroom", w.Title())
	}
	want := map[string]string{
		"Waiting to be sent": "5", // queued + scheduled + sending
		"Waiting to retry":   "2",
		"Held":               "4",
		"Sent":               "120",
		"Returned to sender": "3", // bounced + expired
	}
	for row, n := range want {
		if got := rowValue(t, w, row); got != n {
			t.Errorf("%s shows %q, want %q", row, got, n)
		}
	}
	shown := texts(w)
	for _, s := range []string{"Sending", "Listening on 127.0.0.1:2525", "Pause sending"} {
		if !contains(shown, s) {
			t.Errorf("window does not show %q; it shows %q", s, shown)
		}
	}
}

func TestWindowSaysWhenNotListening(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.listen = ""
	_, w, _ := start(t, test.NewTempApp(t), eng)
	if shown := texts(w); !contains(shown, "Not listening for mail") {
		t.Errorf("window shows %q, want a line saying it is not listening", shown)
	}
	if got := rowValue(t, w, "Waiting to be sent"); got != "0" {
		t.Errorf("empty queue shows %q waiting, want 0", got)
	}
}

func TestPauseButtonPausesAndResumes(t *testing.T) {
	eng := newFakeEngine(map[string]int{"queued": 1})
	_, w, refreshed := start(t, test.NewTempApp(t), eng)

	test.Tap(findButton(t, w, "Pause sending"))
	if got := waitFor(t, eng.setPaused, "SetPaused"); got != true {
		t.Fatalf("Pause button called SetPaused(%v), want true", got)
	}
	waitFor(t, refreshed, "the refresh after pausing")
	shown := texts(w)
	if !contains(shown, "Sending paused") || contains(shown, "Sending") {
		t.Errorf("after pausing the window shows %q, want status \"Sending paused\"", shown)
	}

	test.Tap(findButton(t, w, "Resume sending"))
	if got := waitFor(t, eng.setPaused, "SetPaused"); got != false {
		t.Fatalf("Resume button called SetPaused(%v), want false", got)
	}
	waitFor(t, refreshed, "the refresh after resuming")
	if shown := texts(w); !contains(shown, "Sending") || !contains(shown, "Pause sending") {
		t.Errorf("after resuming the window shows %q", shown)
	}
}

func TestPauseFailureKeepsStateAndReenablesButton(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.pauseErr = errors.New("database is locked")
	eng.gate = make(chan struct{})
	_, w, refreshed := start(t, test.NewTempApp(t), eng)

	button := findButton(t, w, "Pause sending")
	test.Tap(button)
	waitFor(t, eng.setPaused, "SetPaused")
	if !button.Disabled() {
		t.Error("Pause button can be tapped again while SetPaused is in progress")
	}
	close(eng.gate)
	waitFor(t, refreshed, "the failure to be shown")
	if button.Disabled() {
		t.Error("Pause button stays disabled after SetPaused failed")
	}
	if shown := texts(w); !contains(shown, "Sending") {
		t.Errorf("after a failed pause the window shows %q, want it still sending", shown)
	}
	overlay := w.Canvas().Overlays().Top()
	if overlay == nil {
		t.Fatal("no error dialog after SetPaused failed")
	}
}

func TestReadErrorIsShownAndKeepsLastCounts(t *testing.T) {
	eng := newFakeEngine(map[string]int{"held": 7})
	a := newTrayApp(t)
	u, w, refreshed := start(t, a, eng)

	eng.set(func(f *fakeEngine) { f.countsErr = errors.New("disk I/O error") })
	u.Refresh()
	waitFor(t, refreshed, "the failed refresh")

	if got := rowValue(t, w, "Held"); got != "7" {
		t.Errorf("after a failed read Held shows %q, want the last good 7", got)
	}
	if shown := texts(w); !contains(shown, "Could not read the queue: disk I/O error") {
		t.Errorf("window shows %q, want the read error", shown)
	}
	if !bytes.Equal(a.trayIcon(), assets.IconAlert) {
		t.Error("tray icon is not the alert icon while the queue cannot be read")
	}

	eng.set(func(f *fakeEngine) { f.countsErr = nil })
	u.Refresh()
	waitFor(t, refreshed, "the recovered refresh")
	for _, s := range texts(w) {
		if s == "Could not read the queue: disk I/O error" {
			t.Error("error still shown after the engine recovered")
		}
	}
	if !bytes.Equal(a.trayIcon(), assets.Icon) {
		t.Error("tray icon did not return to normal after the engine recovered")
	}
}

func TestTrayMenu(t *testing.T) {
	eng := newFakeEngine(map[string]int{"queued": 2, "deferred": 1, "sent": 9})
	a := newTrayApp(t)
	_, w, refreshed := start(t, a, eng)

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
	if a.window != w {
		t.Error("the window was not handed to the tray (tapping the icon would not show it)")
	}
	if !bytes.Equal(a.trayIcon(), assets.Icon) {
		t.Error("tray icon is not the normal icon while sending")
	}

	items["Pause sending"].Action()
	if got := waitFor(t, eng.setPaused, "SetPaused from the tray"); got != true {
		t.Fatalf("tray Pause called SetPaused(%v), want true", got)
	}
	waitFor(t, refreshed, "the refresh after pausing")
	labels, items = a.trayItems(t)
	if !contains(labels, "Resume sending") {
		t.Errorf("after pausing the tray menu is %q, want a Resume sending item", labels)
	}
	if !bytes.Equal(a.trayIcon(), assets.IconPaused) {
		t.Error("tray icon is not the paused icon after pausing")
	}

	eng.set(func(f *fakeEngine) { f.counts = map[string]int{"queued": 1} })
	items["Resume sending"].Action()
	waitFor(t, eng.setPaused, "SetPaused from the tray")
	waitFor(t, refreshed, "the refresh after resuming")
	labels, items = a.trayItems(t)
	if !contains(labels, "1 message in queue") || !contains(labels, "Pause sending") {
		t.Errorf("after resuming the tray menu is %q", labels)
	}

	items["Quit"].Action()
	waitFor(t, a.quit, "the app to be asked to quit")
}

func TestPollingPicksUpChanges(t *testing.T) {
	eng := newFakeEngine(map[string]int{"sent": 1})
	u, w, _ := start(t, test.NewTempApp(t), eng)

	// Read the Sent row inside each update, on the goroutine that changes
	// the widgets, so the test never reads them while the poller writes.
	sentShown := make(chan string, 1)
	u.refreshed = func() {
		select {
		case sentShown <- rowValue(t, w, "Sent"):
		default: // the test has not taken the previous value yet
		}
	}
	u.pollInterval = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var polling sync.WaitGroup
	polling.Go(func() { u.poll(ctx) })
	defer func() {
		cancel()
		polling.Wait()
	}()

	eng.set(func(f *fakeEngine) { f.counts = map[string]int{"sent": 2} })
	deadline := time.After(waitTimeout)
	for {
		select {
		case got := <-sentShown:
			if got == "2" {
				return
			}
		case <-deadline:
			t.Fatal("polling never showed the new Sent count")
		}
	}
}

func TestClosingWindowHidesItOnlyWhileTrayShows(t *testing.T) {
	a := newTrayApp(t)
	u, _, _ := start(t, a, newFakeEngine(nil))

	u.closeRequested()
	select {
	case <-a.quit:
		t.Fatal("closing the window quit the app although the tray icon is showing")
	default:
	}

	u.tray = fakeTray{isShowing: false}
	u.closeRequested()
	select {
	case <-a.quit:
	default:
		t.Fatal("closing the window did not quit the app although no tray icon is showing")
	}
}

func TestNoTrayWithoutTrayHost(t *testing.T) {
	a := newTrayApp(t)
	u := newUI(a, newFakeEngine(nil), noTray{})
	u.ShowAndRun()
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
