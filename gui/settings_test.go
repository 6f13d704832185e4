package gui

import (
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
)

func settingsField(t *testing.T, v *settingsView, key string) *field {
	t.Helper()
	f := fieldFor(v.fields, key)
	if f == nil {
		t.Fatalf("no field for %s", key)
	}
	return f
}

func entryOf(t *testing.T, f *field) *widget.Entry {
	t.Helper()
	switch c := f.control.(type) {
	case *widget.Entry:
		return c
	case *widget.SelectEntry:
		return &c.Entry
	}
	t.Fatalf("%s is not an entry", f.key)
	return nil
}

func setText(h *harness, e *widget.Entry, s string) {
	h.do(func() { e.SetText(s) })
}

func TestSettingsValidationErrorsShowAtTheField(t *testing.T) {
	eng := newFakeEngine(nil)
	h := startUI(t, newApp(t), eng, nil)
	v := h.u.settings

	setText(h, entryOf(t, settingsField(t, v, "listen.port")), "70000")
	setText(h, entryOf(t, settingsField(t, v, "delivery.retry_initial")), "soon")
	h.do(func() { test.Tap(v.apply) })

	h.do(func() {
		port := settingsField(t, v, "listen.port")
		if !port.errLine.Visible() || !strings.Contains(port.errLine.Text, "65535") {
			t.Errorf("port field error %q (visible %v)", port.errLine.Text, port.errLine.Visible())
		}
		retry := settingsField(t, v, "delivery.retry_initial")
		if !retry.errLine.Visible() || !strings.Contains(retry.errLine.Text, "is not a duration") {
			t.Errorf("retry field error %q", retry.errLine.Text)
		}
		if host := settingsField(t, v, "hostname"); host.errLine.Visible() {
			t.Errorf("hostname shows an error although it is fine: %q", host.errLine.Text)
		}
	})
	select {
	case s := <-eng.saves:
		t.Fatalf("invalid settings were saved: %+v", s)
	default:
	}

	// The engine's own validation of a value the form cannot judge alone.
	setText(h, entryOf(t, settingsField(t, v, "delivery.retry_initial")), "5m")
	setText(h, entryOf(t, settingsField(t, v, "listen.port")), "25")
	setText(h, entryOf(t, settingsField(t, v, "delivery.retry_max")), "1m")
	h.do(func() { test.Tap(v.apply) })
	h.do(func() {
		f := settingsField(t, v, "delivery.retry_max")
		if !strings.Contains(f.errLine.Text, "must not be shorter than delivery.retry_initial") {
			t.Errorf("retry_max error %q", f.errLine.Text)
		}
		if v.pages.Selected().Text != "Delivery" {
			t.Errorf("the page with the error is not in front: %q", v.pages.Selected().Text)
		}
	})
}

func TestAccessListRefusesABadEntry(t *testing.T) {
	h := startUI(t, newApp(t), newFakeEngine(nil), nil)
	v := h.u.settings
	var l *listEditor
	h.do(func() {
		// The editor is the field's control's first child's owner; reach it
		// through the entry and button the user sees.
		l = findListEditor(v, "access.trusted_networks")
		l.input.SetText("192.168.1.0/33")
		test.Tap(l.add)
	})
	h.do(func() {
		if !l.problem.Visible() || !strings.Contains(l.problem.Text, "192.168.1.0/33") {
			t.Errorf("bad network: problem %q", l.problem.Text)
		}
		if len(l.items) != 2 {
			t.Errorf("list is %q after a bad entry", l.items)
		}
		l.input.SetText("192.168.1.0/24")
		test.Tap(l.add)
		if l.problem.Visible() || len(l.items) != 3 || l.items[2] != "192.168.1.0/24" {
			t.Errorf("good network: list %q, problem %q", l.items, l.problem.Text)
		}
	})
}

func TestSettingsApplySavesThroughTheEngineAndCancelRestores(t *testing.T) {
	eng := newFakeEngine(nil)
	h := startUI(t, newApp(t), eng, nil)
	v := h.u.settings
	host := entryOf(t, settingsField(t, v, "hostname"))
	setText(h, host, "mail.example.com")
	h.do(func() {
		l := findListEditor(v, "access.blocked_senders")
		l.input.SetText("@spam.example")
		test.Tap(l.add)
		test.Tap(v.apply)
	})
	s := waitFor(t, eng.saves, "SaveSettings")
	if s.Hostname != "mail.example.com" || len(s.Access.BlockedSenders) != 1 || s.Access.BlockedSenders[0] != "@spam.example" {
		t.Errorf("saved hostname %q, blocked senders %q", s.Hostname, s.Access.BlockedSenders)
	}
	h.until(t, "the saved message", func() bool { return v.status.Text == "Settings saved and in effect." })

	setText(h, host, "typo")
	h.do(func() {
		v.revert()
		if host.Text != "mail.example.com" {
			t.Errorf("Cancel left %q in the host name", host.Text)
		}
	})
}

func TestSettingsImportAndExport(t *testing.T) {
	eng := newFakeEngine(nil)
	h := startUI(t, newApp(t), eng, nil)
	v := h.u.settings
	h.do(func() {
		if err := v.importDoc("bad.toml", []byte("[listen]\nport = \"x\"\n")); err == nil {
			t.Error("a bad file was imported")
		}
		err := v.importDoc("office.toml", []byte("hostname = \"relay.office.example\"\n[delivery]\nmode = \"smarthost\"\nsmarthost = \"smtp.zoho.com:587\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := entryOf(t, settingsField(t, v, "delivery.smarthost")).Text; got != "smtp.zoho.com:587" {
			t.Errorf("imported smarthost shows %q", got)
		}
		doc, ok := v.exportDoc()
		if !ok || !strings.Contains(string(doc), `hostname = "relay.office.example"`) {
			t.Errorf("export: %v\n%s", ok, doc)
		}
	})
	select {
	case <-eng.saves:
		t.Error("importing saved the settings before Apply")
	default:
	}
}

func findListEditor(v *settingsView, key string) *listEditor { return v.lists[key] }

func TestSecurityPageSavesCertificatesPortsAndLogin(t *testing.T) {
	eng := newFakeEngine(nil)
	h := startUI(t, newApp(t), eng, nil)
	v := h.u.settings
	sub := settingsField(t, v, "listen.submission_port")
	if v.pages.Items[v.pageOf[sub]].Text != "Security" {
		t.Fatalf("the submission port is on page %q, want Security", v.pages.Items[v.pageOf[sub]].Text)
	}
	setText(h, entryOf(t, sub), "99999")
	h.do(func() { test.Tap(v.apply) })
	h.do(func() {
		if !sub.errLine.Visible() || v.pages.Selected().Text != "Security" {
			t.Errorf("bad submission port: error %q, page in front %q", sub.errLine.Text, v.pages.Selected().Text)
		}
	})
	setText(h, entryOf(t, sub), "587")
	setText(h, entryOf(t, settingsField(t, v, "listen.tls_cert")), "/etc/ssl/relay.pem")
	setText(h, entryOf(t, settingsField(t, v, "listen.tls_key")), "/etc/ssl/relay.key")
	h.do(func() {
		settingsField(t, v, "listen.auth_without_tls").control.(*widget.Check).SetChecked(true)
		test.Tap(v.apply)
	})
	s := waitFor(t, eng.saves, "SaveSettings")
	if s.Listen.SubmissionPort != 587 || s.Listen.TLSCert != "/etc/ssl/relay.pem" || s.Listen.TLSKey != "/etc/ssl/relay.key" || !s.Listen.AuthWithoutTLS {
		t.Errorf("saved listen settings %+v", s.Listen)
	}
}

func TestRoutesAndDomainLimitsAreEditedAsRows(t *testing.T) {
	eng := newFakeEngine(nil)
	h := startUI(t, newApp(t), eng, nil)
	v := h.u.settings
	routes, limits := v.rows["delivery.routes"], v.rows["limits.destinations"]
	h.do(func() {
		test.Tap(routes.add)
		routes.rows[0][0].SetText("branch.example.com")
		routes.rows[0][1].SetText("192.168.1.5") // no port: the engine refuses it
		test.Tap(limits.add)
		limits.rows[0][0].SetText("gmail.com")
		limits.rows[0][1].SetText("two")
		limits.rows[0][2].SetText("30")
		test.Tap(v.apply)
	})
	h.do(func() {
		lim := settingsField(t, v, "limits.destinations")
		if !strings.Contains(lim.errLine.Text, `row 1, connections: "two" is not a whole number`) {
			t.Errorf("domain limit error %q", lim.errLine.Text)
		}
		rt := settingsField(t, v, "delivery.routes")
		if !rt.errLine.Visible() || !strings.Contains(rt.errLine.Text, "192.168.1.5") {
			t.Errorf("route error %q (visible %v)", rt.errLine.Text, rt.errLine.Visible())
		}
	})
	h.do(func() {
		routes.rows[0][1].SetText("192.168.1.5:25")
		limits.rows[0][1].SetText("2")
		test.Tap(routes.add) // an empty row is left out
		test.Tap(v.apply)
	})
	s := waitFor(t, eng.saves, "SaveSettings")
	if len(s.Delivery.Routes) != 1 || s.Delivery.Routes[0].Domain != "branch.example.com" || s.Delivery.Routes[0].Host != "192.168.1.5:25" {
		t.Errorf("saved routes %+v", s.Delivery.Routes)
	}
	if len(s.Limits.Destinations) != 1 || s.Limits.Destinations[0].MaxConnections != 2 || s.Limits.Destinations[0].MessagesPerMinute != 30 {
		t.Errorf("saved domain limits %+v", s.Limits.Destinations)
	}
	// Removing the row and cancelling brings it back.
	h.do(func() {
		var rm *widget.Button
		walk(routes.box, func(b *widget.Button) {
			if b.Text == "" && rm == nil {
				rm = b // the first row's
			}
		})
		test.Tap(rm)
		if len(routes.values()) != 0 {
			t.Errorf("routes after Remove: %q", routes.values())
		}
		v.revert()
		if got := routes.values(); len(got) != 1 || got[0][0] != "branch.example.com" {
			t.Errorf("Cancel restored routes %q", got)
		}
	})
}

// In direct mode the provider's server, login and test button are not on
// the page at all; choosing the provider brings them, and going back to
// direct mode takes them away again.
func TestProviderFieldsShowOnlyForTheProviderPath(t *testing.T) {
	eng := newFakeEngine(nil)
	h := startUI(t, newApp(t), eng, nil)
	v := h.u.settings
	mode := settingsField(t, v, "delivery.mode").control.(*widget.Select)
	shown := func(key string) bool {
		f := settingsField(t, v, key)
		return f.rowLabel.Visible() && f.rowBody.Visible()
	}
	providerKeys := []string{"delivery.smarthost", "delivery.smarthost_username", "delivery.smarthost_password", "delivery.smarthost_tls"}
	h.do(func() {
		mode.SetSelected(modeChoices[0].label)
		for _, k := range providerKeys {
			if shown(k) {
				t.Errorf("direct mode shows %s", k)
			}
		}
		if !shown("delivery.tls") {
			t.Error("direct mode hides the encryption to mail servers")
		}
		mode.SetSelected(modeChoices[1].label)
		for _, k := range providerKeys {
			if !shown(k) {
				t.Errorf("provider mode hides %s", k)
			}
		}
		mode.SetSelected(modeChoices[0].label)
		if shown("delivery.smarthost") {
			t.Error("back in direct mode the provider's server still shows")
		}
	})
}
