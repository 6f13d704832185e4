package gui

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/widget"

	"postroom/engine"
	"postroom/engine/config"
)

// provider is a preset for a well-known email provider's SMTP service.
type provider struct {
	name, host, tls, userHint string
}

// providers (read-only) are the presets the wizard offers.
var providers = []provider{
	{"Google Workspace / Gmail", "smtp.gmail.com:587", "starttls", "your full address; with 2-step verification, an app password"},
	{"Microsoft 365", "smtp.office365.com:587", "starttls", "your full Microsoft 365 address"},
	{"Zoho", "smtp.zoho.com:587", "starttls", "your full Zoho address"},
	{"Amazon SES", "email-smtp.us-east-1.amazonaws.com:587", "starttls", "the SMTP username from the SES console (change the region in the server if yours differs)"},
	{"SendGrid", "smtp.sendgrid.net:587", "starttls", "the word apikey; the password is your API key"},
	{"Mailgun", "smtp.mailgun.org:587", "starttls", "the SMTP login from Mailgun's domain settings"},
	{"Other", "", "starttls", "as your provider tells you"},
}

const (
	modeDirect   = "Directly to the recipients' mail servers"
	modeProvider = "Through my email provider"
	port25       = "25, the standard port"
	port2525     = "2525, for when 25 cannot be used"
)

// wizard is the first-run setup: how mail leaves, who may send, the
// domain's DNS, and a test message. It edits a copy of the settings and
// saves them once, before the test message.
type wizard struct {
	u      *UI
	window fyne.Window
	s      config.Settings
	step   int
	steps  []fyne.CanvasObject
	body   *fyne.Container
	title  *widget.Label
	back   *widget.Button
	next   *widget.Button
	status *widget.Label

	// step 1
	mode     *widget.RadioGroup
	provBox  *fyne.Container
	provider *widget.Select
	host     *widget.Entry
	security *widget.Select
	user     *widget.Entry
	userHint *widget.Label
	password *widget.Entry
	testRes  *widget.Label

	// step 2
	networks  *widget.CheckGroup
	netValues map[string]string // check label -> network
	port      *widget.RadioGroup
	portNote  *widget.Label
	use2525   *widget.Button

	// step 3
	dkim *dkimPanel

	// step 4
	to       *widget.Entry
	send     *widget.Button
	progress *widget.Label
	testID   int64
	saved    bool
}

var stepTitles = []string{
	"1 of 4: How should mail leave this office?",
	"2 of 4: Who may send mail through Postroom?",
	"3 of 4: Your domain (optional)",
	"4 of 4: Send a test email",
}

// showWizard opens the setup wizard (again, from Settings).
func (u *UI) showWizard() {
	if u.wizard != nil {
		u.wizard.window.Show()
		u.wizard.window.RequestFocus()
		return
	}
	w := newWizard(u)
	u.wizard = w
	w.window.SetOnClosed(func() { u.wizard = nil })
	w.window.Show()
}

func newWizard(u *UI) *wizard {
	w := &wizard{u: u, s: u.eng.Settings(), netValues: map[string]string{}}
	w.window = u.app.NewWindow("Set up Postroom")
	w.title = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	w.status = widget.NewLabel("")
	w.status.Wrapping = fyne.TextWrapWord
	w.status.Importance = widget.DangerImportance
	w.steps = []fyne.CanvasObject{w.stepMode(), w.stepAccess(), w.stepDomain(), w.stepTest()}
	w.body = container.NewStack()
	w.back = widget.NewButton("Back", func() { w.show(w.step - 1) })
	w.next = widget.NewButton("Next", w.forward)
	w.next.Importance = widget.HighImportance
	buttons := container.NewHBox(layout.NewSpacer(), w.back, w.next)
	w.window.SetContent(container.NewBorder(
		container.NewVBox(w.title, widget.NewSeparator()),
		container.NewVBox(w.status, buttons), nil, nil,
		container.NewVScroll(w.body)))
	w.window.Resize(fyne.NewSize(720, 660))
	w.show(0)
	return w
}

func (w *wizard) show(step int) {
	w.step = step
	w.title.SetText(stepTitles[step])
	w.body.Objects = []fyne.CanvasObject{w.steps[step]}
	w.body.Refresh()
	w.status.SetText("")
	w.back.Hidden = step == 0 || step == 3
	w.back.Refresh()
	switch step {
	case 2:
		w.next.SetText("Save settings")
	case 3:
		w.next.SetText("Finish")
	default:
		w.next.SetText("Next")
	}
	if step == 1 {
		w.checkPort()
	}
}

// forward checks the step and moves on; leaving step 3 saves.
func (w *wizard) forward() {
	switch w.step {
	case 0:
		if err := w.readMode(); err != "" {
			w.status.SetText(err)
			return
		}
	case 1:
		w.readAccess()
	case 2:
		w.save()
		return
	case 3:
		w.window.Close()
		return
	}
	w.show(w.step + 1)
}

// stepMode: directly, or through a provider with a preset.
func (w *wizard) stepMode() fyne.CanvasObject {
	intro := widget.NewLabel("Postroom can hand mail straight to each recipient's mail server, or pass it to the email provider you already use. " +
		"If your internet provider blocks outgoing port 25 (many do for homes and small offices), or you use Gmail, Microsoft 365 or similar for your mailboxes, choose your provider.")
	intro.Wrapping = fyne.TextWrapWord
	names := make([]string, len(providers))
	for i, p := range providers {
		names[i] = p.name
	}
	w.host = widget.NewEntry()
	w.host.SetPlaceHolder("smtp.example.com:587")
	w.security = widget.NewSelect([]string{tlsChoices[0].label, tlsChoices[1].label, tlsChoices[2].label}, nil)
	w.user = widget.NewEntry()
	w.userHint = widget.NewLabel("")
	w.userHint.Wrapping = fyne.TextWrapWord
	w.password = widget.NewPasswordEntry()
	w.provider = widget.NewSelect(names, w.pickProvider)
	w.testRes = widget.NewLabel("")
	w.testRes.Wrapping = fyne.TextWrapWord
	test := widget.NewButton("Test connection", w.testConnection)
	w.provBox = container.NewVBox(
		container.New(layout.NewFormLayout(),
			widget.NewLabel("Provider"), w.provider,
			widget.NewLabel("Server"), w.host,
			widget.NewLabel("Security"), w.security,
			widget.NewLabel("Username"), container.NewVBox(w.user, w.userHint),
			widget.NewLabel("Password"), w.password),
		container.NewBorder(nil, nil, test, nil, w.testRes),
	)
	directHint := widget.NewLabel("Good for an office whose internet line lets mail out on port 25 (business lines usually do). " +
		"Step 3 then shows the DNS records that make receiving servers trust your mail. " +
		"If mail later waits with \"did not answer in time\", your provider blocks port 25: come back here and choose your provider.")
	directHint.Wrapping = fyne.TextWrapWord
	directHint.Importance = widget.LowImportance
	w.mode = widget.NewRadioGroup([]string{modeDirect, modeProvider}, func(m string) {
		w.provBox.Hidden = m != modeProvider
		w.provBox.Refresh()
		directHint.Hidden = m != modeDirect
		directHint.Refresh()
	})
	w.mode.Required = true
	if w.s.Delivery.Mode == "smarthost" {
		w.mode.SetSelected(modeProvider)
		w.host.SetText(w.s.Delivery.Smarthost)
		w.user.SetText(w.s.Delivery.SmarthostUsername)
		w.password.SetText(w.s.Delivery.SmarthostPassword)
		for _, p := range providers {
			if p.host == w.s.Delivery.Smarthost {
				w.provider.SetSelected(p.name)
			}
		}
	} else {
		w.mode.SetSelected(modeDirect)
	}
	for _, c := range tlsChoices {
		if c.value == w.s.Delivery.SmarthostTLS {
			w.security.SetSelected(c.label)
		}
	}
	return container.NewVBox(intro, w.mode, directHint, w.provBox)
}

func (w *wizard) pickProvider(name string) {
	for _, p := range providers {
		if p.name != name {
			continue
		}
		if p.host != "" {
			w.host.SetText(p.host)
		}
		for _, c := range tlsChoices {
			if c.value == p.tls {
				w.security.SetSelected(c.label)
			}
		}
		w.userHint.SetText("Username: " + p.userHint + ".")
	}
}

// readMode copies step 1 into the settings; it returns a problem in
// words, or "".
func (w *wizard) readMode() string {
	if w.mode.Selected == modeDirect {
		w.s.Delivery.Mode = "mx"
		return ""
	}
	w.s.Delivery.Mode = "smarthost"
	w.s.Delivery.Smarthost = strings.TrimSpace(w.host.Text)
	w.s.Delivery.SmarthostTLS = valueOf(tlsChoices, w.security.Selected)
	w.s.Delivery.SmarthostUsername = strings.TrimSpace(w.user.Text)
	w.s.Delivery.SmarthostPassword = w.password.Text
	if w.s.Delivery.Smarthost == "" {
		return "Enter your provider's server, or choose a provider above."
	}
	if err := w.s.Validate(); err != nil {
		if ve, ok := config.AsValidationError(err); ok {
			var msgs []string
			for _, fe := range ve.Errors {
				if strings.HasPrefix(fe.Key, "delivery.") {
					msgs = append(msgs, fe.Reason)
				}
			}
			if len(msgs) > 0 {
				return "Please check: " + strings.Join(msgs, "; ")
			}
		}
	}
	return ""
}

func (w *wizard) testConnection() {
	if msg := w.readMode(); msg != "" {
		w.testRes.SetText(msg)
		return
	}
	s := w.s
	w.testRes.Importance = widget.MediumImportance
	w.testRes.SetText("Connecting to " + s.Delivery.Smarthost + "…")
	w.u.background(networkTimeout, func(ctx context.Context) error {
		return w.u.eng.TestSmarthost(ctx, s)
	}, func(err error) {
		if err != nil {
			w.testRes.Importance = widget.DangerImportance
			w.testRes.SetText("✗ " + capitalise(err.Error()))
			return
		}
		w.testRes.Importance = widget.SuccessImportance
		w.testRes.SetText("✓ Connected, secured and logged in.")
	})
}

// stepAccess: the local networks, and the port.
func (w *wizard) stepAccess() fyne.CanvasObject {
	intro := widget.NewLabel("This computer may always send mail through Postroom. Tick the networks whose computers, printers and scanners may send too.")
	intro.Wrapping = fyne.TextWrapWord
	var labels, checked []string
	nets, _ := w.u.eng.LocalNetworks()
	seen := map[string]bool{}
	for _, n := range nets {
		if seen[n.Network] {
			continue
		}
		seen[n.Network] = true
		l := fmt.Sprintf("%s (%s, where this computer is %s)", n.Network, n.Interface, n.Address)
		labels = append(labels, l)
		w.netValues[l] = n.Network
		if slices.Contains(w.s.Access.TrustedNetworks, n.Network) {
			checked = append(checked, l)
		}
	}
	w.networks = widget.NewCheckGroup(labels, nil)
	w.networks.SetSelected(checked)
	var netBox fyne.CanvasObject = w.networks
	if len(labels) == 0 {
		netBox = widget.NewLabel("No network was found on this computer; only this computer can send.")
	}

	portIntro := widget.NewLabel("Devices and apps send to Postroom on a port. 25 is the standard; some computers reserve it for administrators or another program already uses it. Then use 2525 and set that port in the devices.")
	portIntro.Wrapping = fyne.TextWrapWord
	w.port = widget.NewRadioGroup([]string{port25, port2525}, nil)
	w.port.Required = true
	if w.s.Listen.Port == 2525 {
		w.port.SetSelected(port2525)
	} else {
		w.port.SetSelected(port25)
	}
	w.portNote = widget.NewLabel("")
	w.portNote.Wrapping = fyne.TextWrapWord
	w.use2525 = widget.NewButton("Use port 2525 instead", func() {
		w.port.SetSelected(port2525)
		w.use2525.Hide()
		w.portNote.Importance = widget.MediumImportance
		w.portNote.SetText("Port 2525 it is. Set devices to send to this computer on port 2525.")
	})
	w.use2525.Hide()
	return container.NewVBox(intro, netBox, widget.NewSeparator(), portIntro, w.port, w.portNote, container.NewHBox(w.use2525))
}

// checkPort asks whether port 25 can be opened, and offers 2525 if not.
func (w *wizard) checkPort() {
	if w.port.Selected != port25 {
		return
	}
	addr := w.s.Listen.Address
	var err error
	w.u.background(engineTimeout, func(context.Context) error {
		err = w.u.eng.CanListen(addr, 25)
		return nil
	}, func(error) {
		if err == nil {
			w.portNote.Importance = widget.SuccessImportance
			w.portNote.SetText("✓ Port 25 is free for Postroom.")
			w.use2525.Hide()
			return
		}
		w.portNote.Importance = widget.DangerImportance
		w.portNote.SetText("Port 25 cannot be used: " + err.Error() + ".")
		w.use2525.Show()
	})
}

func (w *wizard) readAccess() {
	trusted := []string{"127.0.0.0/8", "::1/128"}
	for _, l := range w.networks.Selected {
		if n := w.netValues[l]; n != "" && !slices.Contains(trusted, n) {
			trusted = append(trusted, n)
		}
	}
	// Keep entries added by hand in Settings that are not networks of this
	// machine (a VPN, say).
	for _, n := range w.s.Access.TrustedNetworks {
		if !slices.Contains(trusted, n) && !w.isLocal(n) {
			trusted = append(trusted, n)
		}
	}
	w.s.Access.TrustedNetworks = trusted
	w.s.Listen.Port = 25
	if w.port.Selected == port2525 {
		w.s.Listen.Port = 2525
	}
}

func (w *wizard) isLocal(network string) bool {
	for _, n := range w.netValues {
		if n == network {
			return true
		}
	}
	return false
}

func (w *wizard) stepDomain() fyne.CanvasObject {
	w.dkim = newDKIMPanel(w.u)
	w.dkim.suggest(w.s.Hostname)
	skip := widget.NewLabel("You can skip this step and do it later under Settings, DKIM & DNS.")
	return container.NewVBox(w.dkim.content, skip)
}

// save stores the settings and starts the relay if it was not running.
func (w *wizard) save() {
	s := w.s
	w.next.Disable()
	var started error
	w.u.background(engineTimeout, func(ctx context.Context) error {
		if err := w.u.eng.SaveSettings(ctx, s); err != nil {
			return err
		}
		if w.u.eng.ListenAddr() == "" {
			started = w.u.eng.Start(ctx)
		}
		return nil
	}, func(err error) {
		w.next.Enable()
		if err != nil {
			w.status.SetText("The settings were not saved: " + err.Error())
			return
		}
		w.saved = true
		w.u.settings.revert()
		w.u.goBG(w.u.Refresh)
		w.show(3)
		if started != nil {
			w.status.SetText("Saved, but Postroom cannot accept mail yet: " + started.Error())
		}
	})
}

func (w *wizard) stepTest() fyne.CanvasObject {
	intro := widget.NewLabel("Send a test email to an address you can read, and watch it go out.")
	intro.Wrapping = fyne.TextWrapWord
	w.to = widget.NewEntry()
	w.to.SetPlaceHolder("you@example.com")
	w.send = widget.NewButton("Send test email", w.sendTest)
	w.progress = widget.NewLabel("")
	w.progress.Wrapping = fyne.TextWrapWord
	return container.NewVBox(intro, container.NewBorder(nil, nil, nil, w.send, w.to), w.progress)
}

func (w *wizard) sendTest() {
	to := strings.TrimSpace(w.to.Text)
	var id int64
	w.send.Disable()
	w.progress.Importance = widget.MediumImportance
	w.progress.SetText("Queueing…")
	w.u.background(engineTimeout, func(ctx context.Context) (err error) {
		id, err = w.u.eng.SendTestMail(ctx, to)
		return err
	}, func(err error) {
		w.send.Enable()
		if err != nil {
			w.progress.Importance = widget.DangerImportance
			w.progress.SetText("✗ " + capitalise(err.Error()))
			return
		}
		w.testID = id
		w.progress.SetText("Queued. Sending to " + to + "…")
	})
}

// onEvent follows the test message through the queue.
func (w *wizard) onEvent(ev engine.Event) {
	if w.testID == 0 || ev.MessageID != w.testID || ev.Kind != engine.EventDelivery {
		return
	}
	switch ev.State {
	case engine.StateSent:
		w.progress.Importance = widget.SuccessImportance
		w.progress.SetText(fmt.Sprintf("✓ Sent: the receiving server accepted it (%d). Look for \"Postroom test message\" in the mailbox, and in its spam folder.", ev.Code))
	case engine.StateDeferred:
		w.progress.Importance = widget.WarningImportance
		w.progress.SetText("Not delivered yet; Postroom will keep trying. The reason: " + ev.Text)
	case engine.StateBounced, engine.StateExpired:
		w.progress.Importance = widget.DangerImportance
		w.progress.SetText("✗ The message was refused: " + ev.Text)
	}
}
