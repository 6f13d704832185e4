package engine

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"postroom/storage"
)

func TestTestSmarthostLogsIn(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	hop.Auth = map[string]string{"office@example.org": "secret"}
	r := startRelay(t, testSettings(nil), Options{}, "")

	s := r.e.Settings()
	s.Delivery.Smarthost = hop.addr()
	s.Delivery.SmarthostTLS = "none"
	s.Delivery.SmarthostUsername = "office@example.org"
	s.Delivery.SmarthostPassword = "secret"
	if err := r.e.TestSmarthost(context.Background(), s); err != nil {
		t.Fatalf("test with the right password failed: %v", err)
	}
	if hop.connections() != 1 {
		t.Errorf("the test made %d connections, want 1", hop.connections())
	}

	s.Delivery.SmarthostPassword = "wrong"
	err := r.e.TestSmarthost(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "refused the username or password") {
		t.Errorf("test with a wrong password: %v, want it to say the password was refused", err)
	}
}

func TestTestSmarthostSaysWhenNothingAnswers(t *testing.T) {
	t.Parallel()
	r := startRelay(t, testSettings(nil), Options{}, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	s := r.e.Settings()
	s.Delivery.Smarthost = closed
	s.Delivery.SmarthostTLS = "none"
	err = r.e.TestSmarthost(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "nothing answers at "+closed) {
		t.Errorf("test against a closed port: %v, want \"nothing answers at %s\"", err, closed)
	}
	s.Delivery.Smarthost = ""
	if err := r.e.TestSmarthost(context.Background(), s); err == nil || !strings.Contains(err.Error(), "no server is filled in") {
		t.Errorf("test without a server: %v", err)
	}
}

func TestSendTestMailIsDeliveredAndCounted(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startRelay(t, testSettings(hop), Options{}, "")
	ctx := context.Background()
	since := time.Now().Add(-time.Minute)

	id, err := r.e.SendTestMail(ctx, "owner@example.net")
	if err != nil {
		t.Fatal(err)
	}
	got := hop.wait()
	if got.From != "postmaster@relay.test" || len(got.To) != 1 || got.To[0] != "owner@example.net" {
		t.Errorf("test message went from %q to %v", got.From, got.To)
	}
	if !bytes.Contains(got.Data, []byte("Subject: Postroom test message")) {
		t.Errorf("test message has no subject line:\n%s", got.Data)
	}
	r.waitFor("the test message to be sent", func(rows []storage.Row) bool {
		return len(rows) == 1 && rows[0].MessageID == id && rows[0].State == StateSent
	})
	points, err := r.e.Stats(ctx, since)
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, p := range points {
		if p.Name == "sent" {
			sent += p.N
		}
	}
	if sent != 1 {
		t.Errorf("Stats counts %d sent, want 1 (points %+v)", sent, points)
	}

	if _, err := r.e.SendTestMail(ctx, "not an address"); err == nil {
		t.Error("a test message to \"not an address\" was queued")
	}
}

func TestSettingsSaved(t *testing.T) {
	t.Parallel()
	r := startRelay(t, testSettings(nil), Options{}, "")
	saved, err := r.e.SettingsSaved(context.Background())
	if err != nil || !saved {
		t.Errorf("SettingsSaved = %v, %v after saving, want true", saved, err)
	}
	st, err := storage.Open(context.Background(), t.TempDir()+"/"+storage.FileName)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	saved, err = New(Options{Store: st}).SettingsSaved(context.Background())
	if err != nil || saved {
		t.Errorf("SettingsSaved = %v, %v on a new store, want false", saved, err)
	}
}

func TestCanListen(t *testing.T) {
	t.Parallel()
	r := startRelay(t, testSettings(nil), Options{}, "")
	_, port, _ := net.SplitHostPort(r.e.ListenAddr())
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	if err := r.e.CanListen("127.0.0.1", p); err != nil {
		t.Errorf("CanListen on the relay's own port: %v, want nil", err)
	}
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := r.e.CanListen("127.0.0.1", other.Addr().(*net.TCPAddr).Port); err == nil || !strings.Contains(err.Error(), "another program already uses port") {
		t.Errorf("CanListen on a port in use: %v", err)
	}
	if _, err := r.e.LocalNetworks(); err != nil {
		t.Errorf("LocalNetworks: %v", err)
	}
}

func TestLogRingKeepsLatestLines(t *testing.T) {
	t.Parallel()
	ring := NewLogRing(3)
	var out bytes.Buffer
	log := slog.New(ring.Handler(slog.NewTextHandler(&out, nil))).With("component", "test")
	for i := range 5 {
		log.Info("line", "n", i, "text", "two words")
	}
	log.Debug("hidden")
	select {
	case <-ring.Changed():
	default:
		t.Error("no change notice after logging")
	}
	lines := ring.Since(0)
	if len(lines) != 3 || lines[0].Seq != 3 || lines[2].Seq != 5 {
		t.Fatalf("ring holds %+v, want lines 3 to 5", lines)
	}
	if want := `component=test n=4 text="two words"`; lines[2].Attrs != want {
		t.Errorf("attrs %q, want %q", lines[2].Attrs, want)
	}
	if got := ring.Since(4); len(got) != 1 || got[0].Seq != 5 {
		t.Errorf("Since(4) = %+v", got)
	}
	if !strings.Contains(out.String(), "n=4") || strings.Count(out.String(), "\n") != 5 {
		t.Errorf("the real handler got:\n%s", out.String())
	}
}
