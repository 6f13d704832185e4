package gui

import (
	"context"
	"fmt"
	"io"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/widget"

	"postroom/engine/config"
)

// settingsView is the Settings tab: a page per part of the settings
// document, validated as a whole by config.Settings.Validate with each
// problem shown at its field, saved through the engine.
type settingsView struct {
	u       *UI
	content fyne.CanvasObject
	pages   *container.AppTabs
	fields  []*field
	pageOf  map[*field]int
	lists   map[string]*listEditor // the access lists' editors by key
	rows    map[string]*rowEditor  // the routes' and destination limits' editors by key
	users   *usersView
	// providerRows are the smarthost's rows, shown in smarthost mode only.
	providerRows []*field
	base         config.Settings // what the window does not edit comes from here
	status       *widget.Label
	apply        *widget.Button
	dkim         *dkimPanel
	sources      *widget.SelectEntry
	testRes      *widget.Label
}

var tlsChoices = []choice{
	{"STARTTLS (usually port 587)", "starttls"},
	{"TLS from the start (usually port 465)", "tls"},
	{"None: password sent unencrypted", "none"},
}

var modeChoices = []choice{
	{"Directly to the recipients' mail servers", "mx"},
	{"Through my email provider (smarthost)", "smarthost"},
}

var mxTLSChoices = []choice{
	{"Use encryption when offered", "opportunistic"},
	{"Require encryption with a valid certificate", "required"},
	{"Never use encryption", "none"},
}

func newSettingsView(u *UI) *settingsView {
	v := &settingsView{u: u, pageOf: map[*field]int{}, lists: map[string]*listEditor{}, rows: map[string]*rowEditor{}}
	v.status = widget.NewLabel("")
	v.status.Wrapping = fyne.TextWrapWord

	listening := []*field{
		textField("hostname", "Host name", func(s *config.Settings) *string { return &s.Hostname }),
		textField("listen.address", "Listen on address", func(s *config.Settings) *string { return &s.Listen.Address }),
		smallIntField("listen.port", "SMTP port", func(s *config.Settings) *int { return &s.Listen.Port }),
	}
	listenHints := map[string]string{
		"hostname":       "The name Postroom gives itself when it talks to other mail servers.",
		"listen.address": "0.0.0.0 accepts mail on every network of this computer; 127.0.0.1 only from this computer.",
		"listen.port":    "25 is the standard. Use 2525 if another program has 25 or it needs administrator rights.",
	}

	certField := v.fileField("listen.tls_cert", "Certificate file", func(s *config.Settings) *string { return &s.Listen.TLSCert })
	keyField := v.fileField("listen.tls_key", "Private key file", func(s *config.Settings) *string { return &s.Listen.TLSKey })
	security := []*field{
		smallIntField("listen.submission_port", "Port for logging in (submission)", func(s *config.Settings) *int { return &s.Listen.SubmissionPort }),
		smallIntField("listen.tls_port", "Port with encryption from the start", func(s *config.Settings) *int { return &s.Listen.TLSPort }),
		certField,
		keyField,
		checkField("listen.auth_without_tls", "Unencrypted login", "Let programs on this computer log in without encryption",
			func(s *config.Settings) *bool { return &s.Listen.AuthWithoutTLS }),
	}
	securityHints := map[string]string{
		"listen.submission_port":  "587 for programs that log in with a user name and password (see Users); they switch on encryption first. 0 turns it off.",
		"listen.tls_port":         "465 for programs that want encryption from the first byte; 0 turns it off.",
		"listen.tls_cert":         "The certificate (PEM file) Postroom shows to programs that send through it, e.g. from your domain's certificate provider. Leave both files empty and Postroom makes one itself; programs may then warn once that they do not know it.",
		"listen.tls_key":          "The private key (PEM file) that belongs to the certificate.",
		"listen.auth_without_tls": "Only for connections from this computer itself, where nobody can listen in. Logins from other computers always need encryption.",
	}

	trusted := v.listField("access.trusted_networks", "May send without logging in",
		"Add a network, e.g. 192.168.1.0/24, or one address", "Only this computer", true, func(s *config.Settings) *[]string { return &s.Access.TrustedNetworks })
	blocked := v.listField("access.blocked_networks", "Blocked networks",
		"Add a network, e.g. 203.0.113.0/24", "None", true, func(s *config.Settings) *[]string { return &s.Access.BlockedNetworks })
	allowS := v.listField("access.allowed_senders", "Allowed senders",
		"Add @domain or name@domain", "Any sender", false, func(s *config.Settings) *[]string { return &s.Access.AllowedSenders })
	blockS := v.listField("access.blocked_senders", "Blocked senders",
		"Add @domain or name@domain", "None", false, func(s *config.Settings) *[]string { return &s.Access.BlockedSenders })
	allowR := v.listField("access.allowed_recipients", "Allowed recipients",
		"Add @domain or name@domain", "Any recipient", false, func(s *config.Settings) *[]string { return &s.Access.AllowedRecipients })
	blockR := v.listField("access.blocked_recipients", "Blocked recipients",
		"Add @domain or name@domain", "None", false, func(s *config.Settings) *[]string { return &s.Access.BlockedRecipients })
	access := []*field{trusted, blocked, allowS, blockS, allowR, blockR}
	accessHints := map[string]string{
		"access.trusted_networks": "Computers and devices on these networks may send mail through Postroom. This computer always may.",
		"access.blocked_senders":  "A block always wins over an allow.",
	}

	destinations, destRows := destinationsField()
	v.rows["limits.destinations"] = destRows
	limits := []*field{
		intField("limits.max_message_bytes", "Largest message (MB)", 1<<20, func(s *config.Settings) *int64 { return &s.Limits.MaxMessageBytes }),
		smallIntField("limits.max_recipients", "Recipients per message", func(s *config.Settings) *int { return &s.Limits.MaxRecipients }),
		smallIntField("limits.max_connections", "Connections at once", func(s *config.Settings) *int { return &s.Limits.MaxConnections }),
		smallIntField("limits.max_connections_per_ip", "Connections per computer", func(s *config.Settings) *int { return &s.Limits.MaxConnectionsPerIP }),
		durationField("limits.idle_timeout", "Disconnect silent clients after", func(s *config.Settings) *config.Duration { return &s.Limits.IdleTimeout }),
		smallIntField("limits.rate_limit", "Send at most (messages)", func(s *config.Settings) *int { return &s.Limits.RateLimit }),
		durationField("limits.rate_window", "…per", func(s *config.Settings) *config.Duration { return &s.Limits.RateWindow }),
		destinations,
		smallIntField("limits.min_data_rate", "Slowest sending accepted (bytes/s)", func(s *config.Settings) *int { return &s.Limits.MinDataRate }),
		smallIntField("limits.max_line_length", "Longest line (characters)", func(s *config.Settings) *int { return &s.Limits.MaxLineLength }),
		checkField("limits.strict_line_endings", "Malformed line endings", "Refuse mail with malformed line endings instead of repairing it",
			func(s *config.Settings) *bool { return &s.Limits.StrictLineEndings }),
	}
	limitHints := map[string]string{
		"limits.rate_limit":          "0 means no limit. Mail over the limit waits in the queue; it is not refused.",
		"limits.idle_timeout":        "Durations: 30s, 5m, 4h, 5d.",
		"limits.destinations":        "Some providers accept only so much mail at once from one sender. Mail over a limit waits in the queue.",
		"limits.min_data_rate":       "A program that sends slower than this is disconnected; 0 turns the check off.",
		"limits.strict_line_endings": "Repairing is kinder to old devices; refusing protects against a trick called SMTP smuggling.",
	}

	v.testRes = widget.NewLabel("")
	v.testRes.Wrapping = fyne.TextWrapWord
	routes, routeRows := routesField()
	v.rows["delivery.routes"] = routeRows
	delivery := []*field{
		selectField("delivery.mode", "Send mail", modeChoices, func(s *config.Settings) *string { return &s.Delivery.Mode }, v.modeChanged),
		textField("delivery.smarthost", "Provider's server", func(s *config.Settings) *string { return &s.Delivery.Smarthost }),
		textField("delivery.smarthost_username", "Username", func(s *config.Settings) *string { return &s.Delivery.SmarthostUsername }),
		passwordField("delivery.smarthost_password", "Password", func(s *config.Settings) *string { return &s.Delivery.SmarthostPassword }),
		selectField("delivery.smarthost_tls", "Security", tlsChoices, func(s *config.Settings) *string { return &s.Delivery.SmarthostTLS }, nil),
		selectField("delivery.tls", "Encryption to mail servers", mxTLSChoices, func(s *config.Settings) *string { return &s.Delivery.TLS }, nil),
		v.sourceField(),
		durationField("delivery.queue_scan_interval", "Check the queue every", func(s *config.Settings) *config.Duration { return &s.Delivery.QueueScanInterval }),
		durationField("delivery.retry_initial", "First retry after", func(s *config.Settings) *config.Duration { return &s.Delivery.RetryInitial }),
		durationField("delivery.retry_max", "Longest wait between retries", func(s *config.Settings) *config.Duration { return &s.Delivery.RetryMax }),
		durationField("delivery.queue_lifetime", "Give up and return mail after", func(s *config.Settings) *config.Duration { return &s.Delivery.QueueLifetime }),
		durationField("delivery.keep_finished", "Keep sent and returned mail for", func(s *config.Settings) *config.Duration { return &s.Delivery.KeepFinished }),
		durationField("delivery.connect_timeout", "Connection timeout", func(s *config.Settings) *config.Duration { return &s.Delivery.ConnectTimeout }),
		smallIntField("delivery.max_connections", "Connections out at once", func(s *config.Settings) *int { return &s.Delivery.MaxConnections }),
		textField("delivery.resolver", "DNS server", func(s *config.Settings) *string { return &s.Delivery.Resolver }),
		routes,
	}
	deliveryHints := map[string]string{
		"delivery.smarthost":      "host:port, for example smtp.gmail.com:587.",
		"delivery.source_ip":      "Which of this computer's addresses outgoing mail leaves from; empty for any.",
		"delivery.resolver":       "Empty uses this computer's DNS; or host:port of a DNS server.",
		"delivery.retry_max":      "Durations: 30s, 5m, 4h, 5d.",
		"delivery.queue_lifetime": "After this the sender gets a message saying delivery failed.",
		"delivery.keep_finished":  "How long the Queue tab keeps showing delivered and returned mail; 0 keeps it for ever.",
		"delivery.routes":         "Mail for these domains goes straight to the server given, e.g. a mail server in your office.",
	}
	testButton := widget.NewButton("Test connection to the provider", v.testConnection)
	// The test button sits in the form under the provider's fields, in a
	// row of its own that holds no setting.
	testRow := newField("", "", container.NewBorder(nil, nil, testButton, nil, v.testRes))
	v.providerRows = append(append([]*field(nil), delivery[1:5]...), testRow)
	deliveryPage := append(append(append([]*field(nil), delivery[:5]...), testRow), delivery[5:]...)

	v.dkim = newDKIMPanel(u)
	v.users = newUsersView(u)
	v.pages = container.NewAppTabs(
		container.NewTabItem("Listening", container.NewVScroll(form(listening, listenHints))),
		container.NewTabItem("Access", container.NewVScroll(form(access, accessHints))),
		container.NewTabItem("Limits", container.NewVScroll(form(limits, limitHints))),
		container.NewTabItem("Delivery", container.NewVScroll(form(deliveryPage, deliveryHints))),
		container.NewTabItem("Security", container.NewVScroll(form(security, securityHints))),
		container.NewTabItem("Users", container.NewVScroll(v.users.content)),
		container.NewTabItem("DKIM & DNS", container.NewVScroll(v.dkim.content)),
	)
	v.pages.OnSelected = func(t *container.TabItem) {
		if t.Text == "Users" {
			u.goBG(v.users.reload)
		}
	}
	pageIndex := map[string]int{}
	for i, t := range v.pages.Items {
		pageIndex[t.Text] = i
	}
	for _, p := range []struct {
		page   string
		fields []*field
	}{{"Listening", listening}, {"Access", access}, {"Limits", limits}, {"Delivery", delivery}, {"Security", security}} {
		for _, f := range p.fields {
			v.fields = append(v.fields, f)
			v.pageOf[f] = pageIndex[p.page]
		}
	}

	v.apply = widget.NewButton("Apply", v.applySettings)
	v.apply.Importance = widget.HighImportance
	cancel := widget.NewButton("Cancel", v.revert)
	imp := widget.NewButton("Import…", v.importFile)
	exp := widget.NewButton("Export…", v.exportFile)
	wiz := widget.NewButton("Setup wizard…", u.showWizard)
	bar := container.NewBorder(nil, nil, container.NewHBox(imp, exp, wiz), container.NewHBox(cancel, v.apply), v.status)
	v.content = container.NewBorder(nil, bar, nil, nil, v.pages)
	v.revert()
	return v
}

// modeChanged shows the provider's fields only when mail goes through the
// provider: greyed-out empty boxes in direct mode read as something still
// to fill in.
func (v *settingsView) modeChanged(mode string) {
	for _, f := range v.providerRows {
		if f.rowLabel == nil { // before the form is built
			continue
		}
		if mode == "smarthost" {
			f.rowLabel.Show()
			f.rowBody.Show()
		} else {
			f.rowLabel.Hide()
			f.rowBody.Hide()
		}
	}
}

// listField makes an access-list field and remembers its editor.
func (v *settingsView) listField(key, label, placeholder, onEmpty string, networks bool, get func(*config.Settings) *[]string) *field {
	f, l := listField(key, label, placeholder, onEmpty, networks, get)
	v.lists[key] = l
	return f
}

// sourceField offers this machine's addresses as the source address,
// while still allowing one to be typed.
func (v *settingsView) sourceField() *field {
	options := []string{""}
	if nets, err := v.u.eng.LocalNetworks(); err == nil {
		for _, n := range nets {
			options = append(options, n.Address)
		}
	}
	e := widget.NewSelectEntry(options)
	e.AlwaysShowValidationError = true
	v.sources = e
	f := newField("delivery.source_ip", "Send from address", e)
	f.load = func(s config.Settings) { e.SetText(s.Delivery.SourceIP) }
	f.store = func(s *config.Settings) error { s.Delivery.SourceIP = strings.TrimSpace(e.Text); return nil }
	return f
}

// fileField is a text field for a file path with a Browse… button.
func (v *settingsView) fileField(key, label string, get func(*config.Settings) *string) *field {
	f := textField(key, label, get)
	e := f.control.(*widget.Entry)
	browse := widget.NewButton("Browse…", func() {
		d := dialog.NewFileOpen(func(r fyne.URIReadCloser, err error) {
			if err != nil || r == nil {
				return
			}
			r.Close()
			e.SetText(r.URI().Path())
		}, v.u.window)
		d.SetFilter(storage.NewExtensionFileFilter([]string{".pem", ".crt", ".key", ".cer"}))
		if dir := pickerStart(e.Text); dir != nil {
			d.SetLocation(dir)
		}
		d.SetTitleText(label)
		d.SetConfirmText("Choose")
		// Certificate files are named after long host names, which the
		// grid view cuts short; the list shows them whole. A user who
		// switches to the grid keeps it (Fyne remembers the choice).
		d.SetView(dialog.ListView)
		d.Resize(fyne.NewSize(760, 480))
		d.Show()
	})
	// The entry stays the field's control (errors mark it); the button
	// sits beside it.
	f.layout = container.NewBorder(nil, nil, nil, browse, e)
	return f
}

// revert shows the settings in effect, dropping unsaved changes.
func (v *settingsView) revert() {
	v.load(v.u.eng.Settings())
	v.status.SetText("")
}

func (v *settingsView) load(s config.Settings) {
	v.base = s
	for _, f := range v.fields {
		f.load(s)
		f.setError("")
	}
	v.dkim.suggest(s.Hostname)
}

// collect reads the pages into settings and validates them, showing each
// problem at its field. ok is false when there was any.
func (v *settingsView) collect() (config.Settings, bool) {
	s := v.base
	ok := true
	for _, f := range v.fields {
		f.setError("")
		if err := f.store(&s); err != nil {
			f.setError(err.Error())
			ok = false
		}
	}
	// Validate even when a field could not be read (it keeps its old
	// value), so every problem shows at once.
	if err := s.Validate(); err != nil {
		v.showErrors(err)
		return s, false
	}
	if !ok {
		v.showFirstError()
		v.status.SetText("Some settings need fixing; see the red lines.")
	}
	return s, ok
}

// showErrors puts the engine's validation errors at their fields.
func (v *settingsView) showErrors(err error) {
	ve, ok := config.AsValidationError(err)
	if !ok {
		v.status.SetText("The settings were not saved: " + err.Error())
		return
	}
	var unplaced []string
	msgs := map[*field][]string{}
	for _, fe := range ve.Errors {
		f := fieldFor(v.fields, fe.Key)
		msg := fe.Reason
		if strings.Contains(fe.Key, "[") && fe.Value != "" {
			msg = fe.Value + ": " + fe.Reason
		}
		if f == nil {
			unplaced = append(unplaced, fe.String())
			continue
		}
		msgs[f] = append(msgs[f], msg)
	}
	for f, m := range msgs {
		f.setError(strings.Join(m, "\n"))
	}
	v.showFirstError()
	text := "Some settings need fixing; see the red lines."
	if len(unplaced) > 0 {
		text += " Also: " + strings.Join(unplaced, "; ")
	}
	v.status.SetText(text)
}

// showFirstError brings the first page with a problem to the front.
func (v *settingsView) showFirstError() {
	for _, f := range v.fields {
		if f.errLine.Visible() {
			v.pages.SelectIndex(v.pageOf[f])
			return
		}
	}
}

// applySettings validates and saves; a relay that was not running (its
// port could not be opened) is started with the new settings.
func (v *settingsView) applySettings() {
	s, ok := v.collect()
	if !ok {
		return
	}
	v.apply.Disable()
	v.status.SetText("Saving…")
	old := v.u.eng.Settings()
	var started error
	v.u.background(engineTimeout, func(ctx context.Context) error {
		if err := v.u.eng.SaveSettings(ctx, s); err != nil {
			return err
		}
		if v.u.eng.ListenAddr() == "" {
			started = v.u.eng.Start(ctx)
		}
		return nil
	}, func(err error) {
		v.apply.Enable()
		if err != nil {
			v.showErrors(err)
			return
		}
		v.base = s
		msg := "Settings saved and in effect."
		switch {
		case started != nil:
			msg = "Settings saved, but Postroom still cannot accept mail: " + started.Error()
		case old.Listen != s.Listen && v.u.eng.ListenAddr() != "":
			msg = "Settings saved and in effect. Postroom now accepts mail on " + v.u.eng.ListenAddr() + "."
		}
		v.status.SetText(msg)
		v.u.goBG(v.u.Refresh)
	})
}

// testConnection tries the provider with what the Delivery page holds now.
func (v *settingsView) testConnection() {
	s := v.base
	for _, f := range v.fields {
		_ = f.store(&s)
	}
	v.testRes.SetText("Connecting to " + s.Delivery.Smarthost + "…")
	v.u.background(networkTimeout, func(ctx context.Context) error {
		return v.u.eng.TestSmarthost(ctx, s)
	}, func(err error) {
		if err != nil {
			v.testRes.Importance = widget.DangerImportance
			v.testRes.SetText("✗ " + capitalise(err.Error()))
			return
		}
		v.testRes.Importance = widget.SuccessImportance
		v.testRes.SetText("✓ Connected, secured and logged in: the provider accepts these settings.")
	})
}

// importDoc reads a settings file into the pages; nothing is saved until
// Apply.
func (v *settingsView) importDoc(name string, doc []byte) error {
	s, err := config.Parse(doc)
	if err != nil {
		return err
	}
	v.load(s)
	v.status.SetText("Loaded " + name + ". Press Apply to use these settings, or Cancel to keep the current ones.")
	return nil
}

// exportDoc returns the pages' settings as TOML.
func (v *settingsView) exportDoc() ([]byte, bool) {
	s, ok := v.collect()
	if !ok {
		return nil, false
	}
	doc, err := s.Encode()
	if err != nil {
		v.status.SetText("Could not write the settings: " + err.Error())
		return nil, false
	}
	return doc, true
}

func (v *settingsView) importFile() {
	d := dialog.NewFileOpen(func(r fyne.URIReadCloser, err error) {
		if err != nil || r == nil {
			return
		}
		defer r.Close()
		doc, err := io.ReadAll(r)
		if err == nil {
			err = v.importDoc(r.URI().Name(), doc)
		}
		if err != nil {
			dialog.ShowError(fmt.Errorf("%s was not loaded:\n%w", r.URI().Name(), err), v.u.window)
		}
	}, v.u.window)
	d.SetFilter(storage.NewExtensionFileFilter([]string{".toml"}))
	d.Show()
}

func (v *settingsView) exportFile() {
	doc, ok := v.exportDoc()
	if !ok {
		return
	}
	d := dialog.NewFileSave(func(w fyne.URIWriteCloser, err error) {
		if err != nil || w == nil {
			return
		}
		defer w.Close()
		if _, err := w.Write(doc); err != nil {
			dialog.ShowError(err, v.u.window)
			return
		}
		v.status.SetText("Settings written to " + w.URI().Name() + ".")
	}, v.u.window)
	d.SetFileName("postroom.toml")
	d.Show()
}
