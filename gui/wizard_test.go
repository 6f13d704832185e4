package gui

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"postroom/engine"
)

func startWizard(t *testing.T) (*harness, *wizard) {
	t.Helper()
	eng := newFakeEngine(nil)
	eng.saved = false
	eng.listen = ""
	eng.portErr = errors.New("port 25 needs administrator rights on this computer")
	h := startUI(t, newApp(t), eng, nil)
	var w *wizard
	h.do(func() { w = h.u.wizard })
	if w == nil {
		t.Fatal("no setup wizard although no settings were ever saved")
	}
	return h, w
}

func TestWizardDirectPath(t *testing.T) {
	h, w := startWizard(t)
	eng := h.eng
	h.do(func() {
		if w.title.Text != stepTitles[0] || w.mode.Selected != modeDirect || !w.provBox.Hidden {
			t.Errorf("first step: %q, mode %q, provider box hidden %v", w.title.Text, w.mode.Selected, w.provBox.Hidden)
		}
		test.Tap(w.next)
	})
	h.until(t, "the offer of port 2525", func() bool { return w.use2525.Visible() })
	h.do(func() {
		if !strings.Contains(w.portNote.Text, "Port 25 cannot be used: port 25 needs administrator rights") {
			t.Errorf("port note %q", w.portNote.Text)
		}
		test.Tap(w.use2525)
		w.networks.SetSelected([]string{w.networks.Options[0]})
		test.Tap(w.next) // to the domain step
		test.Tap(w.next) // Save settings
	})
	s := waitFor(t, eng.saves, "the wizard to save")
	if s.Delivery.Mode != "mx" || s.Listen.Port != 2525 {
		t.Errorf("saved mode %q port %d, want mx on 2525", s.Delivery.Mode, s.Listen.Port)
	}
	if !slices.Contains(s.Access.TrustedNetworks, "192.168.1.0/24") || !slices.Contains(s.Access.TrustedNetworks, "127.0.0.0/8") {
		t.Errorf("trusted networks %q", s.Access.TrustedNetworks)
	}
	waitFor(t, eng.started, "the relay to be started after saving")
	h.until(t, "the test step", func() bool { return w.step == 3 })

	h.do(func() {
		w.to.SetText("owner@example.com")
		test.Tap(w.send)
	})
	if to := waitFor(t, eng.testMails, "SendTestMail"); to != "owner@example.com" {
		t.Errorf("test mail to %q", to)
	}
	h.until(t, "the queued message", func() bool { return strings.HasPrefix(w.progress.Text, "Queued.") })
	eng.events <- engine.Event{Time: time.Now(), Kind: engine.EventDelivery, MessageID: 42, Recipient: "owner@example.com", State: engine.StateSent, Code: 250}
	h.until(t, "the test message to be sent", func() bool { return strings.HasPrefix(w.progress.Text, "✓ Sent") })
	h.do(func() { test.Tap(w.next) })
	h.until(t, "the wizard to close", func() bool { return h.u.wizard == nil })
}

func TestWizardProviderPath(t *testing.T) {
	h, w := startWizard(t)
	eng := h.eng
	eng.set(func(f *fakeEngine) { f.smartErr = errors.New("the provider refused the username or password") })
	h.do(func() {
		w.mode.SetSelected(modeProvider)
		w.provider.SetSelected("Google Workspace / Gmail")
		if w.host.Text != "smtp.gmail.com:587" || w.security.Selected != tlsChoices[0].label {
			t.Errorf("Gmail preset gave %q, %q", w.host.Text, w.security.Selected)
		}
		w.user.SetText("office@example.com")
		w.password.SetText("app-password")
	})
	h.do(func() { w.testConnection() })
	s := waitFor(t, eng.tests, "TestSmarthost")
	if s.Delivery.Smarthost != "smtp.gmail.com:587" || s.Delivery.SmarthostUsername != "office@example.com" || s.Delivery.SmarthostPassword != "app-password" {
		t.Errorf("connection test with %+v", s.Delivery)
	}
	h.until(t, "the test's verdict", func() bool { return strings.HasPrefix(w.testRes.Text, "✗ The provider refused") })

	h.do(func() {
		w.host.SetText("")
		test.Tap(w.next)
		if w.step != 0 || !strings.Contains(w.status.Text, "Enter your provider's server") {
			t.Errorf("an empty server passed step 1 (step %d, %q)", w.step, w.status.Text)
		}
		w.provider.SetSelected("Microsoft 365")
		test.Tap(w.next)
		test.Tap(w.next)
		test.Tap(w.next)
	})
	saved := waitFor(t, eng.saves, "the wizard to save")
	if saved.Delivery.Mode != "smarthost" || saved.Delivery.Smarthost != "smtp.office365.com:587" || saved.Delivery.SmarthostTLS != "starttls" {
		t.Errorf("saved delivery %+v", saved.Delivery)
	}
	h.until(t, "the test step", func() bool { return w.step == 3 })
	h.do(func() {
		w.to.SetText("owner@example.com")
		test.Tap(w.send)
	})
	waitFor(t, eng.testMails, "SendTestMail")
	h.until(t, "the queued message", func() bool { return strings.HasPrefix(w.progress.Text, "Queued.") })
	eng.events <- engine.Event{Time: time.Now(), Kind: engine.EventDelivery, MessageID: 42, State: engine.StateBounced, Code: 550, Text: "550 5.7.1 sender not allowed"}
	h.until(t, "the failure", func() bool { return w.progress.Text == "✗ The message was refused: 550 5.7.1 sender not allowed" })
}
