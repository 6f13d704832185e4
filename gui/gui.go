// Package gui owns Postroom's desktop screens: the main window with its
// Dashboard, Queue, Settings and Log tabs, the first-run setup wizard and
// the system tray menu. It never opens the database; everything it shows
// comes from the Engine interface declared here, so it is tested with a
// small fake engine and the fyne.io/fyne/v2/test driver, without OpenGL.
//
// Threading: widgets are changed only on Fyne's goroutine, inside fyne.Do
// or widget callbacks. One goroutine (watch) consumes the engine's event
// stream and the log ring; it reads the engine and hands the results to
// the widgets with fyne.Do. Callbacks that must call the engine start a
// goroutine of their own, so a slow disk never freezes the window.
package gui

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/driver/desktop"

	"postroom/assets"
	"postroom/engine"
	"postroom/engine/config"
	"postroom/engine/dkim"
)

// Engine is what the window needs from the mail engine; *engine.Engine
// implements it. It is declared here, with its consumer, so the GUI is
// tested against a fake.
type Engine interface {
	// QueueCounts returns the number of recipients in each state; a
	// missing state counts as zero.
	QueueCounts(ctx context.Context) (map[string]int, error)
	Paused(ctx context.Context) (bool, error)
	SetPaused(ctx context.Context, paused bool) error
	// ListenAddr is the SMTP listening address; "" when not listening.
	ListenAddr() string
	// Start starts a relay that is not running (after the wizard or
	// settings fixed what kept it from starting).
	Start(ctx context.Context) error
	Subscribe(buffer int) (<-chan engine.Event, func())
	Stats(ctx context.Context, since time.Time) ([]engine.CounterPoint, error)

	// Destinations summarises the newest mail by recipient domain.
	Destinations(ctx context.Context, since time.Time, limit int) ([]engine.Destination, error)

	List(ctx context.Context, f engine.QueueFilter) ([]engine.QueueRow, error)
	Show(ctx context.Context, id int64) (*engine.MessageDetail, error)
	// BodyPreview is up to maxRunes characters of a message's text.
	BodyPreview(ctx context.Context, id int64, maxRunes int) (string, error)
	// Apply runs a queue action on a message; at is the time for
	// "schedule".
	Apply(ctx context.Context, action string, id int64, at time.Time) error
	// CountMatching counts the recipients a filter selects, at most limit
	// (capped: there are more).
	CountMatching(ctx context.Context, f engine.QueueFilter, limit int) (n int, capped bool, err error)
	// ApplyMatching runs a queue action on every recipient a filter
	// selects; those being sent are skipped.
	ApplyMatching(ctx context.Context, action string, f engine.QueueFilter) (changed, skipped int, err error)

	Settings() config.Settings
	SaveSettings(ctx context.Context, s config.Settings) error
	SettingsSaved(ctx context.Context) (bool, error)
	TestSmarthost(ctx context.Context, s config.Settings) error
	SendTestMail(ctx context.Context, to string) (int64, error)
	LocalNetworks() ([]engine.LocalNetwork, error)
	CanListen(address string, port int) error

	Users(ctx context.Context) ([]engine.User, error)
	AddUser(ctx context.Context, name, password string) error
	RemoveUser(ctx context.Context, name string) error
	SetPassword(ctx context.Context, name, password string) error
	SetUserQuota(ctx context.Context, name string, perHour, perDay int) error
	// UserUsage is how many messages a user sent in the last hour and day.
	UserUsage(ctx context.Context, name string) (engine.UserUsage, error)

	GenerateDKIM(ctx context.Context, domain, selector string, algo dkim.Algorithm) (dkim.Key, error)
	DNSRecords(ctx context.Context, domain, reportAddress string) ([]dkim.Record, error)
	CheckDNS(ctx context.Context, domain string) ([]dkim.Check, error)
}

// LogSource is where the Log tab reads the engine's log lines;
// *engine.LogRing implements it.
type LogSource interface {
	Since(seq uint64) []engine.LogLine
	Changed() <-chan struct{}
}

// engineTimeout bounds every engine call made for the window, so a stuck
// engine shows as an error instead of a frozen view.
const engineTimeout = 10 * time.Second

// DNS and connection tests take longer than a queue read.
const networkTimeout = 45 * time.Second

// refreshDelay gathers a burst of events (a batch delivered at once) into
// one re-read of the engine.
const refreshDelay = 300 * time.Millisecond

// clockInterval re-reads the dashboard now and then although nothing
// happened, because its chart's time axis moves on and queue commands run
// in another process publish no events here.
const clockInterval = 30 * time.Second

// trayHost is what the desktop offers for a tray icon; platformTray returns
// the real one and tests use a fake.
type trayHost interface {
	available() bool // a tray icon can be set up at all
	showing() bool   // a tray icon is visible to the user right now
}

// UI is the desktop front end.
type UI struct {
	app  fyne.App
	eng  Engine
	logs LogSource // may be nil
	desk desktop.App
	tray trayHost

	// bg counts the goroutines started for engine calls (goBG).
	bg sync.WaitGroup
	// uiMu is held while do runs a function (see do).
	uiMu sync.Mutex
	// refreshMu serialises refresh so snapshots reach the widgets in the
	// order they were read.
	refreshMu sync.Mutex
	// destsReadAt is when the destination summary was last read (by
	// eng2snapshot, under refreshMu).
	destsReadAt time.Time
	// queueShowing is set while the Queue tab is in front, so events also
	// re-read the queue page (read by the watcher goroutine).
	queueShowing atomic.Bool

	// Touched only on the Fyne goroutine.
	window   fyne.Window
	tabs     *container.AppTabs
	dash     *dashboard
	queue    *queueView
	settings *settingsView
	logView  *logView
	wizard   *wizard

	trayMenu    *fyne.Menu
	trayOpen    *fyne.MenuItem
	trayPause   *fyne.MenuItem
	trayCount   *fyne.MenuItem
	trayProblem *fyne.MenuItem // says what is wrong; left out when nothing is
	trayQuit    *fyne.MenuItem
	trayIcon    trayIcon
	paused      bool
	inQueue     int
	failing     bool // the latest read failed, mail is bouncing, or the queue is stuck
	stuck       bool
	// waitingSince is when the window first saw unsent mail waiting
	// without a pause (zero: none waits).
	waitingSince    time.Time
	lastStuckNotice time.Time

	// refreshed, when not nil, runs on the Fyne goroutine after each
	// change made from another goroutine. Tests wait on it.
	refreshed func()
}

// New returns the UI; nothing is shown until ShowAndRun. logs may be nil.
func New(a fyne.App, eng Engine, logs LogSource) *UI {
	return newUI(a, eng, logs, platformTray())
}

func newUI(a fyne.App, eng Engine, logs LogSource, tray trayHost) *UI {
	u := &UI{app: a, eng: eng, logs: logs, tray: tray}
	if desk, ok := a.(desktop.App); ok && tray.available() {
		u.desk = desk
	}
	return u
}

// done tells a test that the widgets changed.
func (u *UI) done() {
	if u.refreshed != nil {
		u.refreshed()
	}
}

// ShowAndRun builds and shows the window (and the setup wizard when no
// settings were ever saved), sets up the tray icon where there is one, and
// runs the Fyne event loop until the user quits.
func (u *UI) ShowAndRun() {
	ctx, cancel := context.WithCancel(context.Background())
	var watching sync.WaitGroup
	u.start(ctx, &watching)
	u.app.Run()
	cancel()
	watching.Wait()
	u.Wait()
}

// start builds the window, reads the engine once and starts the watcher.
func (u *UI) start(ctx context.Context, watching *sync.WaitGroup) {
	u.build()
	// Subscribe before the first read so nothing between the two is lost.
	events, unsubscribe := u.eng.Subscribe(256)
	// Before Run, fyne.Do executes at once on this goroutine: the window
	// never flashes empty counts.
	u.Refresh()
	u.window.Show()
	u.maybeShowWizard()
	watching.Go(func() {
		defer unsubscribe()
		u.watch(ctx, events)
	})
}

// maybeShowWizard opens the setup wizard when no settings were ever saved.
func (u *UI) maybeShowWizard() {
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	saved, err := u.eng.SettingsSaved(ctx)
	if err == nil && !saved {
		u.showWizard()
	}
}

// watch is the one place that follows the engine: events, log lines and a
// slow clock. Engine reads happen here; widgets change through fyne.Do.
func (u *UI) watch(ctx context.Context, events <-chan engine.Event) {
	clock := time.NewTicker(clockInterval)
	defer clock.Stop()
	var logChanged <-chan struct{}
	var lastLog uint64
	if u.logs != nil {
		logChanged = u.logs.Changed()
		lastLog = u.readLogs(lastLog)
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			u.do(func() { u.onEvent(ev) })
			if !pending {
				pending = true
				debounce.Reset(refreshDelay)
			}
		case <-debounce.C:
			pending = false
			u.Refresh()
		case <-clock.C:
			u.Refresh()
		case <-logChanged:
			lastLog = u.readLogs(lastLog)
		}
	}
}

func (u *UI) readLogs(after uint64) uint64 {
	lines := u.logs.Since(after)
	if len(lines) == 0 {
		return after
	}
	u.do(func() {
		u.logView.add(lines)
		u.done()
	})
	return lines[len(lines)-1].Seq
}

// onEvent runs on the Fyne goroutine for every event.
func (u *UI) onEvent(ev engine.Event) {
	u.dash.onEvent(ev)
	if u.wizard != nil {
		u.wizard.onEvent(ev)
	}
	if ev.Kind == engine.EventBounce || ev.Kind == engine.EventDelivery && (ev.State == engine.StateBounced || ev.State == engine.StateExpired) {
		u.notifyBounce(ev)
	}
	u.done()
}

// Refresh re-reads what the dashboard (and, when in front, the queue or
// users page) shows and updates the widgets through fyne.Do. It calls
// the engine, so call it from a goroutine of your own, not from a widget
// callback.
func (u *UI) Refresh() {
	u.refreshMu.Lock()
	defer u.refreshMu.Unlock()
	snap := u.eng2snapshot()
	u.do(func() {
		u.dash.apply(snap)
		u.applyTray(snap)
		u.done()
	})
	if u.queueShowing.Load() {
		u.queue.reload()
	}
	u.settings.users.refreshIfShown()
}

// build creates the window, its tabs and the tray menu.
func (u *UI) build() {
	w := u.app.NewWindow("Postroom")
	u.window = w
	icon := fyne.NewStaticResource("icon.png", assets.Icon)
	u.app.SetIcon(icon)
	w.SetIcon(icon)

	u.dash = newDashboard(u)
	u.queue = newQueueView(u)
	u.settings = newSettingsView(u)
	u.logView = newLogView()
	u.tabs = container.NewAppTabs(
		container.NewTabItem("Dashboard", u.dash.content),
		container.NewTabItem("Queue", u.queue.content),
		container.NewTabItem("Settings", u.settings.content),
		container.NewTabItem("Log", u.logView.content),
	)
	u.tabs.OnSelected = func(t *container.TabItem) {
		showing := t.Text == "Queue"
		u.queueShowing.Store(showing)
		if showing {
			u.goBG(u.queue.reload)
		}
	}
	w.SetContent(u.tabs)
	w.Resize(fyne.NewSize(1120, 720))

	if u.desk == nil {
		w.SetMaster()
		return
	}
	u.trayOpen = fyne.NewMenuItem("Open Postroom", func() {
		w.Show()
		w.RequestFocus()
	})
	u.trayPause = fyne.NewMenuItem("Pause sending", u.togglePaused)
	u.trayCount = fyne.NewMenuItem(messagesInQueue(0), nil)
	u.trayCount.Disabled = true
	u.trayProblem = fyne.NewMenuItem("", func() {
		w.Show()
		w.RequestFocus()
		u.tabs.SelectIndex(0)
	})
	u.trayQuit = fyne.NewMenuItem("Quit", u.app.Quit)
	u.trayMenu = fyne.NewMenu("Postroom", u.trayItems()...)
	u.desk.SetSystemTrayMenu(u.trayMenu)
	u.setTrayIcon(trayActive)
	u.desk.SetSystemTrayWindow(w)
	// After SetSystemTrayWindow, which installs a plain Hide.
	w.SetCloseIntercept(u.closeRequested)
}

// closeRequested handles the window's close button when a tray was set
// up. Whether a tray host runs is asked now, not at start: the panel may
// start after Postroom at login, or be gone.
func (u *UI) closeRequested() {
	if u.tray.showing() {
		u.window.Hide()
		return
	}
	u.app.Quit()
}

// togglePaused runs on the Fyne goroutine (button or tray menu).
func (u *UI) togglePaused() {
	want := !u.paused
	u.dash.pauseButton.Disable()
	u.goBG(func() {
		ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
		defer cancel()
		if err := u.eng.SetPaused(ctx, want); err != nil {
			verb := "pause"
			if !want {
				verb = "resume"
			}
			u.do(func() {
				u.dash.pauseButton.Enable()
				dialog.ShowError(fmt.Errorf("could not %s sending: %w", verb, err), u.window)
				u.done()
			})
			return
		}
		u.Refresh()
	})
}

// notifyBounce tells the user, at most once every few minutes, that mail
// was returned to its sender.
func (u *UI) notifyBounce(ev engine.Event) {
	now := time.Now()
	if now.Sub(u.dash.lastNotice) < notifyInterval {
		return
	}
	u.dash.lastNotice = now
	text := "A message could not be delivered and was returned to its sender."
	if ev.Recipient != "" {
		text = "Mail to " + ev.Recipient + " could not be delivered: " + ev.Text
	}
	u.app.SendNotification(fyne.NewNotification("Postroom", text))
}

// notifyInterval keeps a wave of bounces from flooding the desktop.
const notifyInterval = 5 * time.Minute

// trayIcon names the tray picture in use.
type trayIcon int

const (
	trayNone trayIcon = iota
	trayActive
	trayPaused
	trayAlert
)

// stuckAfter is how long mail may wait, with attempts failing and none
// succeeding, before Postroom calls the queue stuck.
const stuckAfter = 30 * time.Minute

// stuckNoticeInterval spaces the "queue is stuck" notifications.
const stuckNoticeInterval = time.Hour

// health is what the tray says about mail beyond the counts.
type health struct {
	waiting  int  // unsent mail that is due or will retry
	returned int  // returned to its senders in the last hour
	stuck    bool // mail waits, attempts fail and nothing went out for stuckAfter
}

// judgeHealth reads a snapshot for the tray. Mail counts as stuck when
// mail waits, sending is not paused, nothing was sent for stuckAfter and
// either attempts failed in that time or the window saw mail waiting for
// all of it (since is when it first did; zero when it did not).
func judgeHealth(s snapshot, since time.Time) health {
	h := health{waiting: s.counts["queued"] + s.counts["deferred"] + s.counts["sending"]}
	var sent, deferred int
	for _, p := range s.points {
		if !p.Minute.Before(s.now.Add(-time.Hour)) && (p.Name == "bounced" || p.Name == "expired") {
			h.returned += p.N
		}
		if p.Minute.Before(s.now.Add(-stuckAfter)) {
			continue
		}
		switch p.Name {
		case "sent":
			sent += p.N
		case "deferred":
			deferred += p.N
		}
	}
	waitedLong := !since.IsZero() && s.now.Sub(since) >= stuckAfter
	h.stuck = h.waiting > 0 && !s.paused && sent == 0 && (deferred > 0 || waitedLong)
	return h
}

// applyTray brings the tray icon and menu in line with a snapshot, and
// tells the user once when the queue gets stuck. The menu is only re-sent
// when a label changed because the Linux tray rebuilds the whole menu on
// every set, closing it under the user.
func (u *UI) applyTray(s snapshot) {
	var h health
	if s.err == nil {
		u.paused = s.paused
		u.inQueue = 0
		for _, st := range inQueueStates {
			u.inQueue += s.counts[st]
		}
		if s.counts["queued"]+s.counts["deferred"] == 0 || s.paused {
			u.waitingSince = time.Time{}
		} else if u.waitingSince.IsZero() {
			u.waitingSince = s.now
		}
		h = judgeHealth(s, u.waitingSince)
		if h.stuck && !u.stuck {
			u.notifyStuck(h, s.now)
		}
		u.stuck = h.stuck
	}
	u.failing = s.err != nil || h.returned > 0 || h.stuck
	if u.desk == nil {
		return
	}
	switch {
	case u.failing:
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
	problem := ""
	switch {
	case s.err != nil:
		problem = "Problem: the queue cannot be read"
	case h.stuck:
		problem = "Problem: nothing sent for " + fmt.Sprint(int(stuckAfter.Minutes())) + " minutes"
	case h.returned > 0:
		problem = "Problem: " + plural(h.returned, "message") + " returned in the last hour"
	case u.paused:
		problem = "Sending is paused"
	}
	if u.trayPause.Label == pauseLabel && u.trayCount.Label == countLabel && u.trayProblem.Label == problem {
		return
	}
	u.trayPause.Label = pauseLabel
	u.trayCount.Label = countLabel
	u.trayProblem.Label = problem
	u.trayMenu.Items = u.trayItems()
	u.desk.SetSystemTrayMenu(u.trayMenu)
}

// trayItems are the tray menu's lines; the problem line only when there
// is one.
func (u *UI) trayItems() []*fyne.MenuItem {
	items := []*fyne.MenuItem{u.trayOpen, u.trayPause, fyne.NewMenuItemSeparator(), u.trayCount}
	if u.trayProblem.Label != "" {
		items = append(items, u.trayProblem)
	}
	return append(items, fyne.NewMenuItemSeparator(), u.trayQuit)
}

// notifyStuck tells the user, at most once an hour, that mail is not
// going out.
func (u *UI) notifyStuck(h health, now time.Time) {
	if !u.lastStuckNotice.IsZero() && now.Sub(u.lastStuckNotice) < stuckNoticeInterval {
		return
	}
	u.lastStuckNotice = now
	u.app.SendNotification(fyne.NewNotification("Postroom: mail is not going out",
		fmt.Sprintf("%s waiting and nothing was sent in the last %d minutes. Open Postroom to see why.",
			capitalise(plural(h.waiting, "message")+" are"), int(stuckAfter.Minutes()))))
}

func (u *UI) setTrayIcon(icon trayIcon) {
	if u.trayIcon == icon {
		return
	}
	u.trayIcon = icon
	var res fyne.Resource
	switch icon {
	case trayPaused:
		res = fyne.NewStaticResource("icon-paused.png", assets.IconPaused)
	case trayAlert:
		res = fyne.NewStaticResource("icon-alert.png", assets.IconAlert)
	default:
		res = fyne.NewStaticResource("icon.png", assets.Icon)
	}
	u.desk.SetSystemTrayIcon(res)
}

// inQueueStates (read-only) are the states counted as "in queue".
var inQueueStates = [...]string{"queued", "deferred", "held", "scheduled", "sending"}

func messagesInQueue(n int) string {
	if n == 1 {
		return "1 message in queue"
	}
	return fmt.Sprintf("%d messages in queue", n)
}

// background runs fn on a goroutine with a timeout and hands its error
// to then on the Fyne goroutine.
func (u *UI) background(timeout time.Duration, fn func(ctx context.Context) error, then func(error)) {
	u.goBG(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := fn(ctx)
		u.do(func() {
			then(err)
			u.done()
		})
	})
}

// do runs fn on the Fyne goroutine. The lock changes nothing in the real
// app, where fyne.Do already runs everything on one goroutine; the test
// driver runs fyne.Do on the caller's goroutine, and the lock keeps two
// updates from interleaving there too.
func (u *UI) do(fn func()) {
	fyne.Do(func() {
		u.uiMu.Lock()
		defer u.uiMu.Unlock()
		fn()
	})
}

// doAndWait is do that returns once fn has run.
func (u *UI) doAndWait(fn func()) {
	fyne.DoAndWait(func() {
		u.uiMu.Lock()
		defer u.uiMu.Unlock()
		fn()
	})
}

// goBG runs fn on a goroutine of its own, counted so that Wait (and the
// tests) know when the window's background work has ended.
func (u *UI) goBG(fn func()) { u.bg.Go(fn) }

// Wait returns once every background goroutine the window started has
// ended.
func (u *UI) Wait() { u.bg.Wait() }
