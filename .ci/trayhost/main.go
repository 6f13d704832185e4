// Command trayhost checks Postroom's tray menu the way a desktop panel
// sees it. Fyne's tray on Linux (fyne.io/systray) is a StatusNotifierItem
// whose menu is served over com.canonical.dbusmenu; a panel (KDE, XFCE,
// GNOME's AppIndicator extension) owns org.kde.StatusNotifierWatcher, is
// told about the item, reads its menu and sends "clicked" events back.
// trayhost plays that panel on the D-Bus session bus it is started in
// (run it under dbus-run-session, with DISPLAY set to a virtual X server),
// starts the real desktop app on a data directory that holds settings, and
// checks what a user would:
//
//  1. the menu shows Open Postroom, Pause sending, the queue count and Quit;
//  2. closing the window hides it to the tray (the process goes on);
//  3. Open Postroom maps the window again;
//  4. Pause sending pauses the relay: the engine logs it, the menu
//     (after LayoutUpdated, as a panel would re-read it) offers Resume
//     sending and says sending is paused, and the icon changes;
//  5. mail sent while paused shows in the queue count line;
//  6. Quit ends the process with status 0, and the mail is still queued
//     (read with `postroom queue list --json` afterwards).
//
// It exits 0 when every check passed and 1, saying which failed, when one
// did; the app's output is in -log.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	watcherName  = "org.kde.StatusNotifierWatcher"
	watcherPath  = "/StatusNotifierWatcher"
	itemIface    = "org.kde.StatusNotifierItem"
	dbusmenu     = "com.canonical.dbusmenu"
	windowTitle  = "Postroom"
	testSender   = "office@example.com"
	testReceiver = "someone@example.net"
)

type options struct {
	app, data, smtpAddr, logFile, closeWindow string
	timeout                                   time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.app, "app", "", "the desktop app's binary")
	flag.StringVar(&o.data, "data", "", "its data directory, with settings imported")
	flag.StringVar(&o.smtpAddr, "smtp", "", "the host:port the app listens on for SMTP")
	flag.StringVar(&o.logFile, "log", "", "where the app's output goes (default: DATA/../app.log)")
	flag.StringVar(&o.closeWindow, "close-window", "", "a command that asks the window whose id is its last argument to close, as a window manager's close button does")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Second, "how long each step may take")
	flag.Parse()
	if o.app == "" || o.data == "" || o.smtpAddr == "" || o.closeWindow == "" {
		fmt.Fprintln(os.Stderr, "usage: trayhost -app BINARY -data DIR -smtp HOST:PORT -close-window CMD [-log FILE] [-timeout D]")
		os.Exit(2)
	}
	if o.logFile == "" {
		o.logFile = filepath.Join(filepath.Dir(o.data), "app.log")
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "trayhost: FAILED:", err)
		if tail, terr := lastLines(o.logFile, 30); terr == nil {
			fmt.Fprintf(os.Stderr, "trayhost: the app's last output (%s):\n%s", o.logFile, tail)
		}
		os.Exit(1)
	}
	fmt.Println("trayhost: passed")
}

// watcher is the part of org.kde.StatusNotifierWatcher that an item uses:
// it reports each registration (the item's bus name and object path).
type watcher struct {
	registered chan item
}

type item struct{ busName, path string }

// RegisterStatusNotifierItem is called by an item with its object path
// (fyne.io/systray) or its bus name (older libraries).
func (w *watcher) RegisterStatusNotifierItem(sender dbus.Sender, service string) *dbus.Error {
	it := item{busName: string(sender), path: service}
	if !strings.HasPrefix(service, "/") {
		it = item{busName: service, path: "/StatusNotifierItem"}
	}
	select {
	case w.registered <- it:
	default: // a second registration (after a restart of ours) changes nothing here
	}
	return nil
}

// RegisterStatusNotifierHost exists because panels call it on a watcher.
func (w *watcher) RegisterStatusNotifierHost(string) *dbus.Error { return nil }

func run(o options) error {
	conn, err := dbus.SessionBus()
	if err != nil {
		return fmt.Errorf("no D-Bus session bus (run under dbus-run-session): %w", err)
	}
	w := &watcher{registered: make(chan item, 1)}
	if err := conn.Export(w, watcherPath, watcherName); err != nil {
		return fmt.Errorf("exporting the watcher: %w", err)
	}
	reply, err := conn.RequestName(watcherName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		return fmt.Errorf("cannot own %s (reply %v): %v; is a real panel running on this bus?", watcherName, reply, err)
	}
	// Subscribe before the app starts, so no LayoutUpdated is missed.
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(dbusmenu), dbus.WithMatchMember("LayoutUpdated")); err != nil {
		return fmt.Errorf("subscribing to LayoutUpdated: %w", err)
	}
	signals := make(chan *dbus.Signal, 64)
	conn.Signal(signals)

	logOut, err := os.Create(o.logFile)
	if err != nil {
		return err
	}
	defer logOut.Close()
	app, err := startApp(o, logOut)
	if err != nil {
		return err
	}
	defer app.stop() // when a check failed; a no-op once the app ended
	fmt.Printf("trayhost: started %s (pid %d)\n", o.app, app.cmd.Process.Pid)

	var it item
	select {
	case it = <-w.registered:
	case <-app.done:
		return fmt.Errorf("the app exited (%v) before its tray icon registered", app.err)
	case <-time.After(o.timeout):
		return fmt.Errorf("the tray icon did not register with %s within %s", watcherName, o.timeout)
	}
	fmt.Printf("trayhost: item registered: %s %s\n", it.busName, it.path)

	m, err := openMenu(conn, it)
	if err != nil {
		return err
	}
	h := &host{conn: conn, item: conn.Object(it.busName, dbus.ObjectPath(it.path)), menu: m, signals: signals, timeout: o.timeout}

	// 1. What the menu shows at first. Fyne fills it after registering,
	// so wait for the entries (as a panel does, on LayoutUpdated).
	entries, err := h.waitFor("the menu with Open Postroom, Pause sending, a queue count and Quit", func(es []entry) bool {
		return find(es, "Open Postroom") != nil && find(es, "Pause sending") != nil &&
			findMatch(es, queueLine) != nil && find(es, "Quit") != nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("trayhost: menu: %s\n", describe(entries))
	if count := findMatch(entries, queueLine); count.enabled {
		return fmt.Errorf("the queue count line %q can be clicked; it is information only", count.label)
	}

	// 2. The window is up; its close button hides it to the tray.
	winID, err := waitWindow(app, o.timeout, true)
	if err != nil {
		return err
	}
	fmt.Printf("trayhost: window %s is mapped\n", winID)
	closeCmd := strings.Fields(o.closeWindow)
	if out, err := exec.Command(closeCmd[0], append(closeCmd[1:], winID)...).CombinedOutput(); err != nil {
		return fmt.Errorf("asking the window to close: %v: %s", err, out)
	}
	if _, err := waitWindow(app, o.timeout, false); err != nil {
		if app.ended() {
			return fmt.Errorf("the close button ended the app (%v) although a tray is showing; it should hide the window", app.err)
		}
		return fmt.Errorf("after the close button: %w", err)
	}
	fmt.Println("trayhost: the close button hid the window; the app runs on")

	// 3. Open Postroom brings it back.
	if err := h.click("Open Postroom"); err != nil {
		return err
	}
	if _, err := waitWindow(app, o.timeout, true); err != nil {
		return fmt.Errorf("after Open Postroom: %w", err)
	}
	fmt.Println("trayhost: Open Postroom mapped the window again")

	// 4. Pause sending.
	activeIcon, err := h.icon()
	if err != nil {
		return err
	}
	if err := h.click("Pause sending"); err != nil {
		return err
	}
	entries, err = h.waitFor("Resume sending and \"Sending is paused\" in the menu", func(es []entry) bool {
		return find(es, "Resume sending") != nil && find(es, "Sending is paused") != nil && find(es, "Pause sending") == nil
	})
	if err != nil {
		return err
	}
	if err := waitLog(o.logFile, o.timeout, regexp.MustCompile(`msg="sending paused by the user" paused=true`)); err != nil {
		return err
	}
	fmt.Printf("trayhost: paused; menu: %s\n", describe(entries))
	if err := h.waitIconChange(activeIcon); err != nil {
		return err
	}
	fmt.Println("trayhost: the icon changed to the paused one")

	// 5. Mail accepted while paused waits and is counted.
	msg := "From: " + testSender + "\r\nTo: " + testReceiver + "\r\nSubject: tray check\r\n\r\nWaits while sending is paused.\r\n"
	if err := sendPlain(o.smtpAddr, msg); err != nil {
		return fmt.Errorf("sending a test message to %s: %w", o.smtpAddr, err)
	}
	if _, err := h.waitFor("\"1 message in queue\" in the menu", func(es []entry) bool {
		return find(es, "1 message in queue") != nil
	}); err != nil {
		return err
	}
	fmt.Println("trayhost: the menu counts the message sent while paused")

	// 6. Quit.
	if err := h.click("Quit"); err != nil {
		return err
	}
	select {
	case <-app.done:
		if app.err != nil {
			return fmt.Errorf("after Quit the app ended with %v, not status 0", app.err)
		}
	case <-time.After(o.timeout):
		return fmt.Errorf("the app still runs %s after Quit", o.timeout)
	}
	fmt.Println("trayhost: Quit ended the app with status 0")
	return checkQueue(o)
}

// appProcess is the desktop app this program started.
type appProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it ended
	err  error         // how it ended (Wait's error); read after done
}

func startApp(o options, out *os.File) (*appProcess, error) {
	cmd := exec.Command(o.app, "--data", o.data)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", o.app, err)
	}
	p := &appProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *appProcess) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop kills the app unless it ended, and waits for it.
func (p *appProcess) stop() {
	if !p.ended() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// sendPlain submits msg without STARTTLS: the app's certificate is
// self-signed, and smtp.SendMail would insist on verifying it.
func sendPlain(addr, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(testSender); err != nil {
		return err
	}
	if err := c.Rcpt(testReceiver); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// queueLine is the tray's count of mail in the queue.
var queueLine = regexp.MustCompile(`^\d+ messages? in queue$`)

// checkQueue reads the queue with the command line after the app ended:
// the message sent while paused must still be there, unsent.
func checkQueue(o options) error {
	out, err := exec.Command(o.app, "queue", "list", "--json", "--data", o.data).Output()
	if err != nil {
		return fmt.Errorf("postroom queue list: %w", err)
	}
	var rows []struct {
		Sender, Recipient, State string
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		return fmt.Errorf("reading postroom queue list --json: %w: %s", err, out)
	}
	for _, r := range rows {
		if r.Sender == testSender && r.Recipient == testReceiver {
			if r.State == "sent" || r.State == "bounced" || r.State == "expired" {
				return fmt.Errorf("the message sent while paused is %s; it should still wait", r.State)
			}
			fmt.Printf("trayhost: after Quit the queue still holds the message (%s)\n", r.State)
			return nil
		}
	}
	return fmt.Errorf("after Quit the queue has no message from %s to %s: %s", testSender, testReceiver, out)
}

// openMenu finds the item's menu object from its Menu property.
func openMenu(conn *dbus.Conn, it item) (dbus.BusObject, error) {
	obj := conn.Object(it.busName, dbus.ObjectPath(it.path))
	v, err := obj.GetProperty(itemIface + ".Menu")
	if err != nil {
		return nil, fmt.Errorf("reading the item's Menu property: %w", err)
	}
	path, ok := v.Value().(dbus.ObjectPath)
	if !ok || !path.IsValid() {
		return nil, fmt.Errorf("the item's Menu property is %v, not an object path", v)
	}
	return conn.Object(it.busName, path), nil
}

// host reads and clicks the menu.
type host struct {
	conn    *dbus.Conn
	item    dbus.BusObject
	menu    dbus.BusObject
	signals chan *dbus.Signal
	timeout time.Duration
}

// entry is one line of the menu.
type entry struct {
	id      int32
	label   string
	kind    string // "separator" or ""
	enabled bool
}

func find(es []entry, label string) *entry {
	for i := range es {
		if es[i].label == label && es[i].kind != "separator" {
			return &es[i]
		}
	}
	return nil
}

func findMatch(es []entry, re *regexp.Regexp) *entry {
	for i := range es {
		if re.MatchString(es[i].label) {
			return &es[i]
		}
	}
	return nil
}

func describe(es []entry) string {
	var parts []string
	for _, e := range es {
		switch {
		case e.kind == "separator":
			parts = append(parts, "---")
		case !e.enabled:
			parts = append(parts, "("+e.label+")")
		default:
			parts = append(parts, e.label)
		}
	}
	return strings.Join(parts, " | ")
}

// read returns the menu's top-level entries, in order, as GetLayout gives
// them to a panel. Hidden entries are left out, as a panel leaves them out.
func (h *host) read() ([]entry, error) {
	var revision uint32
	var root struct {
		ID       int32
		Props    map[string]dbus.Variant
		Children []dbus.Variant
	}
	call := h.menu.Call(dbusmenu+".GetLayout", 0, int32(0), int32(-1), []string{})
	if err := call.Store(&revision, &root); err != nil {
		return nil, fmt.Errorf("GetLayout: %w", err)
	}
	var es []entry
	for _, c := range root.Children {
		fields, ok := c.Value().([]any)
		if !ok || len(fields) != 3 {
			return nil, fmt.Errorf("GetLayout: a child is %T, not (ia{sv}av)", c.Value())
		}
		id, _ := fields[0].(int32)
		props, _ := fields[1].(map[string]dbus.Variant)
		e := entry{id: id, enabled: true}
		if v, ok := props["label"]; ok {
			e.label, _ = v.Value().(string)
		}
		if v, ok := props["type"]; ok {
			e.kind, _ = v.Value().(string)
		}
		if v, ok := props["enabled"]; ok {
			e.enabled, _ = v.Value().(bool)
		}
		if v, ok := props["visible"]; ok {
			if visible, _ := v.Value().(bool); !visible {
				continue
			}
		}
		es = append(es, e)
	}
	return es, nil
}

// icon returns a digest of the item's icon (its IconPixmap property).
func (h *host) icon() ([32]byte, error) {
	v, err := h.item.GetProperty(itemIface + ".IconPixmap")
	if err != nil {
		return [32]byte{}, fmt.Errorf("reading the item's IconPixmap: %w", err)
	}
	var pixmaps []struct {
		W, H int32
		Pix  []byte
	}
	if err := dbus.Store([]any{v.Value()}, &pixmaps); err != nil {
		return [32]byte{}, fmt.Errorf("the item's IconPixmap is %s, not a(iiay): %w", v.Signature(), err)
	}
	if len(pixmaps) == 0 || len(pixmaps[0].Pix) == 0 {
		return [32]byte{}, errors.New("the item has no icon")
	}
	digest := sha256.New()
	for _, p := range pixmaps {
		fmt.Fprintf(digest, "%dx%d:", p.W, p.H)
		digest.Write(p.Pix)
	}
	return [32]byte(digest.Sum(nil)), nil
}

// waitIconChange waits until the icon differs from before.
func (h *host) waitIconChange(before [32]byte) error {
	deadline := time.Now().Add(h.timeout)
	for {
		now, err := h.icon()
		if err != nil {
			return err
		}
		if now != before {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the tray icon did not change within %s", h.timeout)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not a timing assertion
	}
}

// waitFor reads the menu until ok says it is as wanted, re-reading it on
// each LayoutUpdated signal (which is all a panel has to go by), and
// fails after the timeout with what the menu showed last.
func (h *host) waitFor(what string, ok func([]entry) bool) ([]entry, error) {
	deadline := time.After(h.timeout)
	for {
		es, err := h.read()
		if err != nil {
			return nil, err
		}
		if ok(es) {
			return es, nil
		}
		select {
		case <-h.signals:
		case <-deadline:
			return nil, fmt.Errorf("waited %s for %s; the menu shows: %s", h.timeout, what, describe(es))
		}
	}
}

// click sends a "clicked" event to the entry labelled label, as a panel
// does when the user picks it.
func (h *host) click(label string) error {
	es, err := h.read()
	if err != nil {
		return err
	}
	e := find(es, label)
	if e == nil {
		return fmt.Errorf("no %q in the menu: %s", label, describe(es))
	}
	if !e.enabled {
		return fmt.Errorf("%q is disabled in the menu", label)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	call := h.menu.CallWithContext(ctx, dbusmenu+".Event", 0, e.id, "clicked", dbus.MakeVariant(""), uint32(time.Now().Unix()))
	if call.Err != nil {
		return fmt.Errorf("clicking %q: %w", label, call.Err)
	}
	fmt.Printf("trayhost: clicked %q\n", label)
	return nil
}

// waitWindow waits until the window titled Postroom is mapped (viewable)
// or not, and returns its id; it gives up at once when the app ends. The app cannot announce it, so xwininfo is
// asked every tenth of a second until the timeout.
func waitWindow(app *appProcess, timeout time.Duration, mapped bool) (string, error) {
	want := "IsViewable"
	if !mapped {
		want = "IsUnMapped"
	}
	idRe := regexp.MustCompile(`Window id: (0x[0-9a-f]+)`)
	stateRe := regexp.MustCompile(`Map State: (\w+)`)
	deadline := time.Now().Add(timeout)
	last := "no window"
	for {
		out, err := exec.Command("xwininfo", "-name", windowTitle).CombinedOutput()
		if err == nil {
			id, state := idRe.FindSubmatch(out), stateRe.FindSubmatch(out)
			if id != nil && state != nil {
				last = string(state[1])
				if last == want {
					return string(id[1]), nil
				}
			}
		}
		if app.ended() {
			return "", fmt.Errorf("the app ended (%v) while the window %q was to become %s (last seen: %s)", app.err, windowTitle, want, last)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the window %q is not %s within %s (last seen: %s)", windowTitle, want, timeout, last)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not a timing assertion
	}
}

// waitLog waits until the app's output has a line matching re.
func waitLog(file string, timeout time.Duration, re *regexp.Regexp) error {
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if re.Match(sc.Bytes()) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the app's output has no line matching " + re.String())
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not a timing assertion
	}
}

func lastLines(file string, n int) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, ""), nil
}
