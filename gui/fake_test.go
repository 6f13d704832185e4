package gui

// These tests do not call t.Parallel: fyne/v2/test installs each test app as
// Fyne's process-wide current app (fyne.CurrentApp), which fyne.Do and
// widget rendering use, so two GUI tests cannot safely overlap.

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"postroom/engine"
	"postroom/engine/config"
	"postroom/engine/dkim"
)

// waitTimeout bounds every wait for the GUI to react.
const waitTimeout = 10 * time.Second

// applied is one queue action the fake engine was asked to do.
type applied struct {
	action string
	id     int64
	at     time.Time
}

// userCall is one user operation the fake engine was asked to do.
type userCall struct {
	op, name, password string
	perHour, perDay    int
}

// fakeEngine is an in-memory Engine whose calls are observable.
type fakeEngine struct {
	mu        sync.Mutex
	counts    map[string]int
	paused    bool
	listen    string
	countsErr error
	pauseErr  error
	points    []engine.CounterPoint
	rows      []engine.QueueRow
	lists     []engine.QueueFilter
	dests     []engine.Destination
	preview   string
	users     []engine.User
	userErr   error
	usage     map[string]engine.UserUsage // by user name; missing = none sent
	usageErr  error
	applyErr  error
	settings  config.Settings
	saved     bool
	smartErr  error
	networks  []engine.LocalNetwork
	portErr   error
	events    chan engine.Event
	gate      chan struct{} // when not nil, SetPaused returns only once it is closed

	setPaused chan bool
	applied   chan applied
	matched   chan matchedCall // ApplyMatching's calls
	saves     chan config.Settings
	tests     chan config.Settings
	testMails chan string
	shown     chan int64
	started   chan struct{}
	userCalls chan userCall
}

func newFakeEngine(counts map[string]int) *fakeEngine {
	s := config.Default()
	s.Hostname = "relay.example.com"
	return &fakeEngine{
		counts: counts, listen: "127.0.0.1:2525", settings: s, saved: true,
		events:    make(chan engine.Event, 100),
		setPaused: make(chan bool, 10), applied: make(chan applied, 100), matched: make(chan matchedCall, 10),
		saves: make(chan config.Settings, 10), tests: make(chan config.Settings, 10),
		testMails: make(chan string, 10), shown: make(chan int64, 10), started: make(chan struct{}, 10),
		userCalls: make(chan userCall, 10),
		networks:  []engine.LocalNetwork{{Interface: "eth0", Address: "192.168.1.20", Network: "192.168.1.0/24"}},
	}
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

func (f *fakeEngine) Start(context.Context) error {
	f.mu.Lock()
	f.listen = "0.0.0.0:2525"
	f.mu.Unlock()
	f.started <- struct{}{}
	return nil
}

func (f *fakeEngine) Subscribe(int) (<-chan engine.Event, func()) { return f.events, func() {} }

func (f *fakeEngine) Stats(context.Context, time.Time) ([]engine.CounterPoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]engine.CounterPoint(nil), f.points...), nil
}

func (f *fakeEngine) List(_ context.Context, filter engine.QueueFilter) ([]engine.QueueRow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = append(f.lists, filter)
	return fakeList(f.rows, filter), nil
}

func (f *fakeEngine) Show(_ context.Context, id int64) (*engine.MessageDetail, error) {
	f.shown <- id
	d := &engine.MessageDetail{Header: []byte("Subject: invoice " + time.Unix(id, 0).UTC().Format("15:04:05") + "\r\nFrom: shop@example.org\r\n")}
	d.Message.ID = id
	d.Message.Sender = "shop@example.org"
	return d, nil
}

func (f *fakeEngine) CountMatching(_ context.Context, filter engine.QueueFilter, limit int) (int, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.rows {
		if fakeMatches(r, filter) {
			n++
		}
	}
	return min(n, limit), n > limit, nil
}

func (f *fakeEngine) ApplyMatching(_ context.Context, action string, filter engine.QueueFilter) (int, int, error) {
	f.matched <- matchedCall{action, filter}
	f.mu.Lock()
	defer f.mu.Unlock()
	changed, skipped := 0, 0
	for _, r := range fakeMatching(f.rows, filter) {
		if r.State == engine.StateSending {
			skipped++
		} else {
			changed++
		}
	}
	return changed, skipped, f.applyErr
}

func (f *fakeEngine) Apply(_ context.Context, action string, id int64, at time.Time) error {
	f.applied <- applied{action, id, at}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applyErr
}

func (f *fakeEngine) BodyPreview(_ context.Context, id int64, _ int) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.preview, nil
}

func (f *fakeEngine) Destinations(context.Context, time.Time, int) ([]engine.Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]engine.Destination(nil), f.dests...), nil
}

func (f *fakeEngine) Users(context.Context) ([]engine.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]engine.User(nil), f.users...), nil
}

func (f *fakeEngine) UserUsage(_ context.Context, name string) (engine.UserUsage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.usage[name], f.usageErr
}

// userOp records a user operation and applies it with fn unless the test
// set an error.
func (f *fakeEngine) userOp(c userCall, fn func()) error {
	f.userCalls <- c
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.userErr != nil {
		return f.userErr
	}
	fn()
	return nil
}

func (f *fakeEngine) AddUser(_ context.Context, name, password string) error {
	return f.userOp(userCall{op: "add", name: name, password: password}, func() {
		f.users = append(f.users, engine.User{Name: name})
	})
}

func (f *fakeEngine) RemoveUser(_ context.Context, name string) error {
	return f.userOp(userCall{op: "remove", name: name}, func() {
		f.users = slices.DeleteFunc(f.users, func(u engine.User) bool { return u.Name == name })
	})
}

func (f *fakeEngine) SetPassword(_ context.Context, name, password string) error {
	return f.userOp(userCall{op: "password", name: name, password: password}, func() {})
}

func (f *fakeEngine) SetUserQuota(_ context.Context, name string, perHour, perDay int) error {
	return f.userOp(userCall{op: "quota", name: name, perHour: perHour, perDay: perDay}, func() {
		for i := range f.users {
			if f.users[i].Name == name {
				f.users[i].PerHour, f.users[i].PerDay = perHour, perDay
			}
		}
	})
}

func (f *fakeEngine) Settings() config.Settings {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.settings
}

func (f *fakeEngine) SaveSettings(_ context.Context, s config.Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	f.mu.Lock()
	f.settings, f.saved = s, true
	f.mu.Unlock()
	f.saves <- s
	return nil
}

func (f *fakeEngine) SettingsSaved(context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saved, nil
}

func (f *fakeEngine) TestSmarthost(_ context.Context, s config.Settings) error {
	f.tests <- s
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.smartErr
}

func (f *fakeEngine) SendTestMail(_ context.Context, to string) (int64, error) {
	f.testMails <- to
	if !strings.Contains(to, "@") {
		return 0, errors.New("not an email address")
	}
	return 42, nil
}

func (f *fakeEngine) LocalNetworks() ([]engine.LocalNetwork, error) { return f.networks, nil }

func (f *fakeEngine) CanListen(string, int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.portErr
}

func (f *fakeEngine) GenerateDKIM(_ context.Context, domain, selector string, algo dkim.Algorithm) (dkim.Key, error) {
	return dkim.Key{Domain: domain, Selector: "s1", Algorithm: algo}, nil
}

func (f *fakeEngine) DNSRecords(_ context.Context, domain, _ string) ([]dkim.Record, error) {
	return []dkim.Record{{Name: "s1._domainkey." + domain, Type: "TXT", Value: "v=DKIM1; k=rsa; p=AAAA", Purpose: "The key."}}, nil
}

func (f *fakeEngine) CheckDNS(context.Context, string) ([]dkim.Check, error) {
	return []dkim.Check{{Record: "DKIM", OK: true, Message: "published"}, {Record: "SPF", OK: false, Message: "missing"}}, nil
}

func (f *fakeEngine) set(fn func(f *fakeEngine)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

var _ Engine = (*fakeEngine)(nil)

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

// fakeLogs is a LogSource fed by the test.
type fakeLogs struct {
	mu      sync.Mutex
	lines   []engine.LogLine
	changed chan struct{}
}

func (l *fakeLogs) Since(seq uint64) []engine.LogLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []engine.LogLine
	for _, x := range l.lines {
		if x.Seq > seq {
			out = append(out, x)
		}
	}
	return out
}

func (l *fakeLogs) Changed() <-chan struct{} { return l.changed }

func (l *fakeLogs) add(msg string) {
	l.mu.Lock()
	l.lines = append(l.lines, engine.LogLine{Seq: uint64(len(l.lines) + 1), Time: time.Now(), Message: msg})
	l.mu.Unlock()
	l.changed <- struct{}{}
}

// harness is a started UI with a signal after each change to its widgets.
type harness struct {
	u       *UI
	eng     *fakeEngine
	changed chan struct{}
}

// startUI builds and shows the window, and runs the watcher until the
// test ends (the test app's Run returns at once, so ShowAndRun is not
// used).
func startUI(t *testing.T, a fyne.App, eng *fakeEngine, logs LogSource) *harness {
	t.Helper()
	changed := make(chan struct{}, 1)
	u := newUI(a, eng, logs, fakeTray{isShowing: true})
	u.refreshed = func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	u.start(ctx, &wg)
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		u.Wait()
	})
	return &harness{u: u, eng: eng, changed: changed}
}

// until waits, without sleeping, for cond to hold. Every change the UI
// makes off the Fyne goroutine ends with a signal on changed (buffered, so
// one sent between a check of cond and the wait is not lost).
func (h *harness) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	check := func() bool {
		h.u.uiMu.Lock()
		defer h.u.uiMu.Unlock()
		return cond()
	}
	for !check() {
		select {
		case <-h.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
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

func newApp(t *testing.T) fyne.App { return test.NewTempApp(t) }

// walk calls fn for every button under o.
func walk(o fyne.CanvasObject, fn func(*widget.Button)) {
	switch v := o.(type) {
	case *widget.Button:
		fn(v)
	case *fyne.Container:
		for _, c := range v.Objects {
			walk(c, fn)
		}
	case fyne.Widget:
		r := test.WidgetRenderer(v)
		for _, c := range r.Objects() {
			walk(c, fn)
		}
	}
}

// do runs fn (a tap, a selection) the way the UI's own updates run, so the
// test never touches widgets while a background update does.
func (h *harness) do(fn func()) {
	h.u.uiMu.Lock()
	defer h.u.uiMu.Unlock()
	fn()
}
