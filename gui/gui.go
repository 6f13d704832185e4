// Package gui owns Postroom's desktop screens: the main window and the system
// tray menu. It never opens the database; everything it shows comes from the
// Engine interface declared here, so it is tested with a small fake engine
// and the fyne.io/fyne/v2/test driver, without OpenGL.
//
// This is the placeholder window: status, counts by state and a Pause/Resume
// button. Widgets are changed only inside fyne.Do, from Refresh.
package gui

import (
	"context"
	"fmt"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/widget"

	"postroom/assets"
)

// Engine is what the window needs from the mail engine. It is declared here,
// with its consumer, so the GUI is tested against a fake.
type Engine interface {
	// QueueCounts returns the number of recipients in each state: "queued",
	// "deferred", "held", "scheduled", "sending", "sent", "bounced", "expired".
	// A missing state counts as zero.
	QueueCounts(ctx context.Context) (map[string]int, error)
	// Paused reports whether sending is paused (intake goes on regardless).
	Paused(ctx context.Context) (bool, error)
	// SetPaused stops or restarts all sending; the engine keeps it across restarts.
	SetPaused(ctx context.Context, paused bool) error
	// ListenAddr is the SMTP listening address, e.g. "0.0.0.0:25"; empty
	// when the engine is not listening.
	ListenAddr() string
}

// engineTimeout bounds every engine call made for the window, so a stuck
// engine shows as an error instead of a frozen refresh loop.
const engineTimeout = 5 * time.Second

// defaultPollInterval is how often the placeholder window re-reads the
// engine. The real dashboard will follow the engine's event stream instead.
const defaultPollInterval = 3 * time.Second

// countRow is one line of the counts table: a plain-words name for a group
// of engine states.
type countRow struct {
	label  string
	states []string
}

// countRows (read-only) groups the engine's states the way a user thinks about mail:
// scheduled and in-flight mail has not been sent yet, and expired mail was
// returned to its sender just like bounced mail.
var countRows = [...]countRow{
	{"Waiting to be sent", []string{"queued", "scheduled", "sending"}},
	{"Waiting to retry", []string{"deferred"}},
	{"Held", []string{"held"}},
	{"Sent", []string{"sent"}},
	{"Returned to sender", []string{"bounced", "expired"}},
}

// inQueueStates (read-only) are the states counted as "in queue" in the tray menu.
var inQueueStates = [...]string{"queued", "deferred", "held", "scheduled", "sending"}

// trayHost is what the desktop offers for a tray icon; platformTray returns
// the real one and tests use a fake.
type trayHost interface {
	// available reports whether a tray icon can be set up at all.
	available() bool
	// showing reports whether a tray icon is visible to the user right now.
	showing() bool
}

// UI is the desktop front end: one window and, where the platform has one,
// a system tray icon with a menu.
type UI struct {
	app  fyne.App
	eng  Engine
	desk desktop.App // nil when the app has no system tray
	tray trayHost

	pollInterval time.Duration

	// refreshMu serialises Refresh so engine snapshots reach the widgets in
	// the order they were read: a slow, older read never overwrites a newer one.
	refreshMu sync.Mutex

	// Widgets and the state below are touched only on the Fyne goroutine
	// (inside fyne.Do or widget callbacks).
	window      fyne.Window
	status      *widget.Label
	listen      *widget.Label
	problem     *widget.Label
	counts      [len(countRows)]*widget.Label
	pauseButton *widget.Button

	trayMenu      *fyne.Menu
	trayPause     *fyne.MenuItem
	trayCount     *fyne.MenuItem
	trayIcon      trayIcon // the icon last given to the tray
	paused        bool
	inQueue       int  // recipients not yet sent, bounced or expired
	toggling      bool // a SetPaused call is in flight
	haveSnapshot  bool // at least one read succeeded
	lastReadError bool // the latest read failed

	// refreshed, when not nil, runs on the Fyne goroutine after each change
	// to the widgets made from another goroutine (a Refresh, or a failed
	// pause). Tests use it to wait without sleeping.
	refreshed func()
}

// New returns the UI for the engine; nothing is shown until ShowAndRun.
func New(a fyne.App, eng Engine) *UI {
	return newUI(a, eng, platformTray())
}

func newUI(a fyne.App, eng Engine, tray trayHost) *UI {
	u := &UI{app: a, eng: eng, tray: tray, pollInterval: defaultPollInterval}
	if desk, ok := a.(desktop.App); ok && tray.available() {
		u.desk = desk
	}
	return u
}

// ShowAndRun builds and shows the window, sets up the tray icon where there
// is one, and runs the Fyne event loop until the user quits. While a tray
// icon is showing, closing the window only hides it, because the relay keeps
// working in the background; without one, closing the window quits.
func (u *UI) ShowAndRun() {
	u.build()
	// The first read is synchronous so the window never flashes empty counts;
	// before Run, fyne.Do executes immediately on this goroutine.
	u.Refresh()

	ctx, cancel := context.WithCancel(context.Background())
	var polling sync.WaitGroup
	polling.Go(func() { u.poll(ctx) })

	u.window.Show()
	u.app.Run()

	cancel()
	polling.Wait()
}

// Refresh re-reads the queue counts and the paused state from the engine and
// updates the widgets through fyne.Do. It calls the engine, so call it from a
// goroutine of your own, not from a widget callback.
func (u *UI) Refresh() {
	u.refreshMu.Lock()
	defer u.refreshMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	snap := snapshot{listen: u.eng.ListenAddr()}
	snap.counts, snap.err = u.eng.QueueCounts(ctx)
	if snap.err == nil {
		snap.paused, snap.err = u.eng.Paused(ctx)
	}
	fyne.Do(func() { u.apply(snap) })
}

// snapshot is one read of the engine's state.
type snapshot struct {
	counts map[string]int
	paused bool
	listen string
	err    error
}

// poll refreshes the window every pollInterval until ctx ends.
func (u *UI) poll(ctx context.Context) {
	ticker := time.NewTicker(u.pollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			u.Refresh()
		}
	}
}

// build creates the window and the tray menu.
func (u *UI) build() {
	w := u.app.NewWindow("Postroom")
	u.window = w
	// The app icon too: a plain `go build` carries no FyneApp.toml metadata,
	// and the window manager, task bar and default tray icon use it.
	icon := fyne.NewStaticResource("icon.png", assets.Icon)
	u.app.SetIcon(icon)
	w.SetIcon(icon)

	u.status = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	u.listen = widget.NewLabel("")
	u.problem = widget.NewLabel("")
	u.problem.Importance = widget.DangerImportance
	u.problem.Wrapping = fyne.TextWrapWord
	u.problem.Hide()

	table := container.New(layout.NewFormLayout())
	for i, row := range countRows {
		u.counts[i] = widget.NewLabelWithStyle("0", fyne.TextAlignTrailing, fyne.TextStyle{})
		table.Add(widget.NewLabel(row.label))
		table.Add(u.counts[i])
	}

	u.pauseButton = widget.NewButton("Pause sending", u.togglePaused)

	note := widget.NewLabel("This is an early version of the window: the full dashboard " +
		"(queue, settings and logs) is coming.")
	note.Wrapping = fyne.TextWrapWord
	note.Importance = widget.LowImportance

	w.SetContent(container.NewVBox(
		u.status,
		u.listen,
		u.problem,
		widget.NewSeparator(),
		table,
		widget.NewSeparator(),
		container.NewHBox(u.pauseButton),
		note,
	))
	w.Resize(fyne.NewSize(420, 380))

	if u.desk == nil {
		w.SetMaster()
		return
	}
	u.trayPause = fyne.NewMenuItem("Pause sending", u.togglePaused)
	u.trayCount = fyne.NewMenuItem(messagesInQueue(0), nil)
	u.trayCount.Disabled = true
	u.trayMenu = fyne.NewMenu("Postroom",
		fyne.NewMenuItem("Open Postroom", func() {
			w.Show()
			w.RequestFocus()
		}),
		u.trayPause,
		fyne.NewMenuItemSeparator(),
		u.trayCount,
		fyne.NewMenuItemSeparator(),
		fyne.NewMenuItem("Quit", u.app.Quit),
	)
	u.desk.SetSystemTrayMenu(u.trayMenu)
	u.setTrayIcon(trayActive)
	u.desk.SetSystemTrayWindow(w)
	// After SetSystemTrayWindow, which installs a plain Hide.
	w.SetCloseIntercept(u.closeRequested)
}

// closeRequested handles the window's close button when a tray was set up.
// Whether a tray host is running is asked at this moment, not at start: the
// desktop's panel may start after Postroom does at login, or be gone.
func (u *UI) closeRequested() {
	if u.tray.showing() {
		u.window.Hide()
		return
	}
	u.app.Quit()
}

// togglePaused runs on the Fyne goroutine (button or tray menu) and hands
// the engine call to a goroutine so the window stays responsive.
func (u *UI) togglePaused() {
	if u.toggling {
		return
	}
	u.toggling = true
	u.pauseButton.Disable()
	want := !u.paused
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
		defer cancel()
		if err := u.eng.SetPaused(ctx, want); err != nil {
			verb := "pause"
			if !want {
				verb = "resume"
			}
			fyne.Do(func() {
				u.toggling = false
				u.pauseButton.Enable()
				dialog.ShowError(fmt.Errorf("could not %s sending: %w", verb, err), u.window)
				u.done()
			})
			return
		}
		u.Refresh()
	}()
}

// apply shows a snapshot; it runs on the Fyne goroutine.
func (u *UI) apply(s snapshot) {
	if u.toggling {
		u.toggling = false
		u.pauseButton.Enable()
	}
	if s.listen == "" {
		u.listen.SetText("Not listening for mail")
	} else {
		u.listen.SetText("Listening on " + s.listen)
	}

	if s.err != nil {
		// Keep the last good numbers on screen; they are more useful than zeros.
		u.problem.SetText("Could not read the queue: " + s.err.Error())
		u.problem.Show()
		u.lastReadError = true
		if !u.haveSnapshot {
			u.status.SetText("Status unknown")
		}
		u.updateTray()
		u.done()
		return
	}
	u.problem.Hide()
	u.lastReadError = false
	u.haveSnapshot = true
	u.paused = s.paused

	if s.paused {
		u.status.SetText("Sending paused")
		u.pauseButton.SetText("Resume sending")
	} else {
		u.status.SetText("Sending")
		u.pauseButton.SetText("Pause sending")
	}
	for i, row := range countRows {
		n := 0
		for _, state := range row.states {
			n += s.counts[state]
		}
		u.counts[i].SetText(fmt.Sprint(n))
	}
	u.inQueue = 0
	for _, state := range inQueueStates {
		u.inQueue += s.counts[state]
	}
	u.updateTray()
	u.done()
}

// trayIcon names the tray picture in use.
type trayIcon int

const (
	trayNone trayIcon = iota
	trayActive
	trayPaused
	trayAlert
)

// updateTray brings the tray icon and menu labels in line with the window.
// The menu is only re-sent when a label changed because the Linux tray
// rebuilds the whole menu on every set, which would close it under the user.
func (u *UI) updateTray() {
	if u.desk == nil {
		return
	}
	switch {
	case u.lastReadError:
		u.setTrayIcon(trayAlert)
	case u.paused:
		u.setTrayIcon(trayPaused)
	default:
		u.setTrayIcon(trayActive)
	}

	pauseLabel := "Pause sending"
	if u.paused {
		pauseLabel = "Resume sending"
	}
	countLabel := messagesInQueue(u.inQueue)
	if u.trayPause.Label == pauseLabel && u.trayCount.Label == countLabel {
		return
	}
	u.trayPause.Label = pauseLabel
	u.trayCount.Label = countLabel
	u.desk.SetSystemTrayMenu(u.trayMenu)
}

// setTrayIcon changes the tray picture when it differs from the one shown.
func (u *UI) setTrayIcon(icon trayIcon) {
	if icon == u.trayIcon {
		return
	}
	u.trayIcon = icon
	switch icon {
	case trayPaused:
		u.desk.SetSystemTrayIcon(fyne.NewStaticResource("tray-paused.png", assets.IconPaused))
	case trayAlert:
		u.desk.SetSystemTrayIcon(fyne.NewStaticResource("tray-alert.png", assets.IconAlert))
	default:
		u.desk.SetSystemTrayIcon(fyne.NewStaticResource("tray.png", assets.Icon))
	}
}

func (u *UI) done() {
	if u.refreshed != nil {
		u.refreshed()
	}
}

// messagesInQueue is the tray menu's count line.
func messagesInQueue(n int) string {
	if n == 1 {
		return "1 message in queue"
	}
	return fmt.Sprintf("%d messages in queue", n)
}
