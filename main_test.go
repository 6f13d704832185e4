package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// These tests build the real binary (the headless variant, which needs no
// cgo) and drive it as a user or a script would.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func postroomBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short mode: builds and runs the whole binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "postroom-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "postroom")
		cmd := exec.Command("go", "build", "-tags", "headless,migrated_fynedo", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// hop is a next-hop SMTP server for the binary's deliveries. Messages are
// recorded by their Message-ID; when gate is set, DATA is acknowledged only
// once the gate opens.
type hop struct {
	ln   net.Listener
	mu   sync.Mutex
	got  map[string]int
	gate chan struct{}
	more chan struct{}
}

func newHop(t *testing.T, gated bool) *hop {
	h := &hop{got: map[string]int{}, more: make(chan struct{}, 1000)}
	if gated {
		h.gate = make(chan struct{})
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &hopSession{h: h}, nil }))
	srv.Domain = "hop.test"
	srv.ErrorLog = discardLogger{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *hop) open() { close(h.gate) }

// waitAll waits until every ID has arrived at least once.
func (h *hop) waitAll(t *testing.T, ids []string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		h.mu.Lock()
		missing := 0
		for _, id := range ids {
			if h.got[id] == 0 {
				missing++
			}
		}
		h.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-h.more:
		case <-deadline:
			t.Fatalf("%d of %d messages never arrived at the next hop", missing, len(ids))
		}
	}
}

type hopSession struct{ h *hop }

func (s *hopSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *hopSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *hopSession) Reset()                               {}
func (s *hopSession) Logout() error                        { return nil }
func (s *hopSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.h.gate != nil {
		<-s.h.gate
	}
	id := ""
	for _, line := range strings.Split(string(data), "\r\n") {
		if v, ok := strings.CutPrefix(line, "Message-ID: "); ok {
			id = v
			break
		}
	}
	s.h.mu.Lock()
	s.h.got[id]++
	s.h.mu.Unlock()
	s.h.more <- struct{}{}
	return nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// server is a running `postroom serve`.
type server struct {
	cmd    *exec.Cmd
	addr   string
	stderr *bytes.Buffer
}

func writeConfig(t *testing.T, dir string, port int, hopAddr string) string {
	t.Helper()
	path := filepath.Join(dir, "postroom.toml")
	doc := fmt.Sprintf(`hostname = "relay.test"
[listen]
address = "127.0.0.1"
port = %d
[delivery]
queue_scan_interval = "1s"
retry_initial = "1s"
[[delivery.routes]]
domain = "example.net"
host = %q
`, port, hopAddr)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startServe(t *testing.T, bin, dataDir string, args ...string) *server {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"serve", "--data", dataDir}, args...)...)
	cmd.Stderr = &syncWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &stderr}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return s
}

// waitListening waits until the server accepts SMTP on addr.
func (s *server) waitListening(t *testing.T, addr string) {
	t.Helper()
	s.addr = addr
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if s.cmd.ProcessState != nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling a port that is not open yet
	}
	t.Fatalf("postroom serve did not listen on %s; stderr:\n%s", addr, s.stderr.String())
}

func (s *server) stderrText() string {
	w := s.cmd.Stderr.(*syncWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return s.stderr.String()
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func sendMessage(addr, id string) error {
	body := fmt.Sprintf("From: a@example.org\r\nTo: b@example.net\r\nSubject: test %s\r\nMessage-ID: %s\r\n\r\nHello.\r\n", id, id)
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
}

func runCLI(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

func TestServeRelaysAndQueueListShowsIt(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	h := newHop(t, false)
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeConfig(t, dir, port, h.ln.Addr().String())
	srv := startServe(t, bin, dir, "--config", cfg)
	srv.waitListening(t, fmt.Sprintf("127.0.0.1:%d", port))
	if err := sendMessage(srv.addr, "<whole-binary@example.org>"); err != nil {
		t.Fatal(err)
	}
	h.waitAll(t, []string{"<whole-binary@example.org>"})

	var rows []map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := runCLI(t, bin, "queue", "list", "--json", "--data", dir)
		if err != nil {
			t.Fatalf("queue list: %v\n%s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("queue list --json is not a JSON array: %v\n%s", err, out)
		}
		if len(rows) == 1 && rows[0]["state"] == "sent" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // the engine records "sent" just after the hop's 250
	}
	if len(rows) != 1 {
		t.Fatalf("queue list has %d rows, want 1: %v", len(rows), rows)
	}
	row := rows[0]
	for _, key := range []string{"id", "sender", "recipient", "state", "attempts", "next_attempt", "last_code", "last_error"} {
		if _, ok := row[key]; !ok {
			t.Errorf("queue list --json lacks %q", key)
		}
	}
	if row["state"] != "sent" || row["sender"] != "a@example.org" || row["recipient"] != "b@example.net" || row["last_code"] != float64(250) {
		t.Errorf("row = %v", row)
	}

	// A graceful stop on SIGTERM.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM; stderr:\n%s", err, srv.stderr.String())
	}
}

func TestKillAfterAcceptLosesNothing(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	h := newHop(t, true) // holds every delivery until the relay is dead
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeConfig(t, dir, port, h.ln.Addr().String())
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := startServe(t, bin, dir, "--config", cfg)
	srv.waitListening(t, addr)

	var ids []string
	for i := 0; i < 30; i++ {
		id := fmt.Sprintf("<crash-%d@example.org>", i)
		if err := sendMessage(addr, id); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	// Every message got its 250. Now the power goes.
	srv.cmd.Process.Signal(syscall.SIGKILL)
	srv.cmd.Wait()
	h.open()

	srv2 := startServe(t, bin, dir)
	srv2.waitListening(t, addr)
	h.waitAll(t, ids)
}

func TestCommandLineUsage(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		args     []string
		wantCode int
		wantText string
	}{
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"queue", "list", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"queue", "retry"}, 2, "usage: queue retry ID"},
		{[]string{"queue", "schedule", "1", "tomorrow"}, 2, "RFC 3339"},
		{[]string{"queue", "list", "--help"}, 0, "Usage: postroom queue"},
		{[]string{"version"}, 0, "postroom "},
		{[]string{"queue", "retry", "42", "--data", dir}, 1, "not found"},
		{[]string{"queue", "list", "--data", dir, "--json"}, 0, "[]"},
		// The data directory may come before the command, as in `postroom --data DIR`.
		{[]string{"--data", dir, "queue", "list", "--json"}, 0, "[]"},
		{[]string{"--data=" + dir, "queue", "retry", "42"}, 1, "not found"},
		{[]string{"--data", dir, "frobnicate"}, 2, "unknown command"},
		{[]string{}, 1, "headless"},
	} {
		out, err := runCLI(t, bin, tc.args...)
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.wantCode || !strings.Contains(out, tc.wantText) {
			t.Errorf("postroom %v: exit %d, output %q; want exit %d containing %q", tc.args, code, out, tc.wantCode, tc.wantText)
		}
	}
}

func TestConfigImportRefusesBadFileAndChangesNothing(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("hostname = \"relay.example.com\"\n[limits]\nmax_recipients = 7\n"), 0o600)
	if out, err := runCLI(t, bin, "config", "import", good, "--data", dir); err != nil {
		t.Fatalf("import of a good file: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("hostname = \"relay.example.com\"\n[listen]\nport = 99999\n"), 0o600)
	out, err := runCLI(t, bin, "config", "import", bad, "--data", dir)
	if err == nil || !strings.Contains(out, "listen.port") || !strings.Contains(out, "99999") {
		t.Fatalf("bad import: err %v, output %q; want a failure naming listen.port and 99999", err, out)
	}
	exported, err := runCLI(t, bin, "config", "export", "--data", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(exported, "max_recipients = 7") || !strings.Contains(exported, "port = 25") {
		t.Fatalf("export after a refused import does not show the good settings:\n%s", exported)
	}
}

func TestDKIMGenerateThenDNS(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	dir := t.TempDir()
	out, err := runCLI(t, bin, "dkim", "generate", "example.com", "--selector", "s1", "--algo", "ed25519", "--data", dir)
	if err != nil {
		t.Fatalf("dkim generate: %v\n%s", err, out)
	}
	for _, want := range []string{"s1._domainkey.example.com.", "v=DKIM1; k=ed25519; p=", "_dmarc.example.com.", "v=spf1"} {
		if !strings.Contains(out, want) {
			t.Errorf("generate output lacks %q:\n%s", want, out)
		}
	}
	again, err := runCLI(t, bin, "dkim", "dns", "--data", dir, "example.com")
	if err != nil || again != out[strings.Index(out, "\n\n")+2:] {
		t.Errorf("dkim dns does not print the same records: %v\n%s", err, again)
	}
	if out, err := runCLI(t, bin, "dkim", "dns", "other.example", "--data", dir); err == nil || !strings.Contains(out, "no DKIM key") {
		t.Errorf("dns for a domain without a key: %v %q", err, out)
	}
}

// The first Ctrl-C stops gracefully (a client in the middle of a message
// gets a few seconds); a second one ends the process at once.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	h := newHop(t, false)
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := startServe(t, bin, dir, "--config", writeConfig(t, dir, port, h.ln.Addr().String()))
	srv.waitListening(t, addr)

	// A client in the middle of DATA holds up the graceful stop.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
	// Signal only once the relay is in DATA: before that, the session may
	// not even be accepted yet, and closing the listener would end it.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for 354: %v", err)
		}
		if strings.HasPrefix(line, "354") {
			break
		}
	}
	fmt.Fprint(c, "Subject: half\r\n")

	srv.cmd.Process.Signal(os.Interrupt)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(srv.stderrText(), "stopping (signal received)") {
		if time.Now().After(deadline) {
			t.Fatalf("no stop after the first signal; stderr:\n%s", srv.stderrText())
		}
		time.Sleep(10 * time.Millisecond) // polling the log of another process
	}
	srv.cmd.Process.Signal(os.Interrupt)
	err = srv.cmd.Wait()
	ws, _ := srv.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Fatalf("after a second Ctrl-C postroom ended with %v, want it killed by the signal; stderr:\n%s", err, srv.stderrText())
	}
}

// Two relays on one queue would send mail twice: the second is refused,
// whatever port it was told to use.
func TestSecondServeOnTheSameDataIsRefused(t *testing.T) {
	t.Parallel()
	bin := postroomBinary(t)
	h := newHop(t, false)
	dir := t.TempDir()
	port := freePort(t)
	srv := startServe(t, bin, dir, "--config", writeConfig(t, dir, port, h.ln.Addr().String()))
	srv.waitListening(t, fmt.Sprintf("127.0.0.1:%d", port))

	other := writeConfig(t, t.TempDir(), freePort(t), h.ln.Addr().String())
	out, err := runCLI(t, bin, "serve", "--data", dir, "--config", other)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(out, "another running Postroom") {
		t.Fatalf("second serve on the same data: %v, output:\n%s\nwant exit 1 saying another Postroom serves the queue", err, out)
	}
	// Its --config was not imported: the first relay keeps its port.
	exported, err := runCLI(t, bin, "config", "export", "--data", dir)
	if err != nil || !strings.Contains(exported, fmt.Sprintf("port = %d", port)) {
		t.Fatalf("settings after the refused second serve (%v):\n%s", err, exported)
	}
}
