package engine

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postroom/engine/config"
	"postroom/storage"
)

// ehloAt says EHLO to the server at addr and returns its SIZE limit.
func ehloAt(t *testing.T, addr string) (size string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	_, size = c.Extension("SIZE")
	return size
}

// Saved limits reach the running intake at once; a session already open
// goes on under the old ones and its message is still taken.
func TestSavedSettingsReachTheRunningIntake(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hop := newNextHop(t)
	s := testSettings(hop)
	r := startRelay(t, s, Options{}, "")
	addr := r.e.ListenAddr()

	early, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if err := early.Hello("client.test"); err != nil {
		t.Fatal(err)
	}

	s.Hostname = "renamed.test"
	s.Limits.MaxMessageBytes = 12345
	if err := r.e.SaveSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	if size := ehloAt(t, addr); size != "12345" {
		t.Errorf("a new session is offered SIZE %s, want the saved 12345", size)
	}
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	if m := hop.wait(); !strings.Contains(string(m.Data), "by renamed.test") {
		t.Errorf("mail taken after the change names the old host:\n%s", m.Data)
	}

	// The session opened before the change still works.
	if err := early.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(simpleBody)); err != nil {
		t.Fatalf("the session opened before the change failed: %v", err)
	}
	hop.wait()
}

// A new port takes over without a restart; a port that cannot be opened
// changes nothing.
func TestPortChangeWithoutRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, st, s := startOnOwnPort(t)
	oldAddr := e.ListenAddr()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := s
	taken.Listen.Port = busy.Addr().(*net.TCPAddr).Port
	err = e.SaveSettings(ctx, taken)
	if err == nil || !strings.Contains(err.Error(), "cannot listen") {
		t.Fatalf("saving a port in use: %v, want a 'cannot listen' error", err)
	}
	if got, _, _ := LoadSettings(ctx, st); got.Listen.Port != s.Listen.Port {
		t.Fatalf("the refused port %d was saved", got.Listen.Port)
	}
	ehloAt(t, oldAddr) // still served

	moved := s
	moved.Listen.Port = freeLocalPort(t)
	if err := e.SaveSettings(ctx, moved); err != nil {
		t.Fatal(err)
	}
	newAddr := e.ListenAddr()
	if newAddr == oldAddr || !strings.HasSuffix(newAddr, ":"+strconv.Itoa(moved.Listen.Port)) {
		t.Fatalf("listening on %s after moving to port %d", newAddr, moved.Listen.Port)
	}
	ehloAt(t, newAddr)
	if c, err := net.Dial("tcp", oldAddr); err == nil {
		c.Close()
		t.Fatalf("the old port %s still accepts connections", oldAddr)
	}
}

// startOnOwnPort starts an engine that opens its listening socket itself
// (no Options.Listener), on a free port of 127.0.0.1.
func startOnOwnPort(t *testing.T) (*Engine, *storage.Store, config.Settings) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := storage.Open(ctx, filepath.Join(dir, storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := New(Options{Store: st, SpoolDir: dir})
	s := testSettings(nil)
	s.Listen.Port = freeLocalPort(t)
	if err := e.SaveSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(ctx) })
	return e, st, s
}

func freeLocalPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Settings saved by another program that name a port in use leave the
// relay listening where it was: nothing crashes, nothing stops.
func TestReloadWithABusyPortKeepsServing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, st, s := startOnOwnPort(t)
	oldAddr := e.ListenAddr()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := s
	taken.Listen.Port = busy.Addr().(*net.TCPAddr).Port
	taken.Limits.MaxMessageBytes = 54321 // the rest of the change still applies
	doc, err := taken.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SaveSettings(ctx, string(doc), time.Now()); err != nil { // as `config import` does
		t.Fatal(err)
	}
	e.reloadSettings(ctx)
	if got := e.ListenAddr(); got != oldAddr {
		t.Fatalf("listening on %q after a failed move, want still %s", got, oldAddr)
	}
	if size := ehloAt(t, oldAddr); size != "54321" {
		t.Errorf("SIZE %s after the reload, want the new 54321", size)
	}
}

// Shutdown also ends the sessions of an intake that a settings change
// replaced.
func TestShutdownEndsSessionsOfReplacedIntake(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testSettings(nil)
	r := startRelay(t, s, Options{}, "")
	early, err := smtp.Dial(r.e.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if err := early.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	s.Hostname = "renamed.test"
	if err := r.e.SaveSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	r.stop()
	if err := early.Noop(); err == nil {
		t.Fatal("a session of the replaced intake is still served after Shutdown")
	}
}
