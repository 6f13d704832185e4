package gui

import (
	"context"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"postroom/engine/dkim"
)

// dkimPanel creates a DKIM key for a domain, shows the DNS records to
// publish with Copy buttons, and checks what is published. The Settings
// tab and the setup wizard both use it.
type dkimPanel struct {
	u       *UI
	content fyne.CanvasObject
	domain  *widget.Entry
	algo    *widget.Select
	records *fyne.Container
	checks  *fyne.Container
	status  *widget.Label
	buttons []*widget.Button
}

var algoChoices = []choice{
	{"RSA 2048 (understood everywhere)", string(dkim.AlgorithmRSA2048)},
	{"Ed25519 (short, newer)", string(dkim.AlgorithmEd25519)},
}

func newDKIMPanel(u *UI) *dkimPanel {
	p := &dkimPanel{u: u}
	p.domain = widget.NewEntry()
	p.domain.SetPlaceHolder("example.com")
	labels := []string{algoChoices[0].label, algoChoices[1].label}
	p.algo = widget.NewSelect(labels, nil)
	p.algo.SetSelected(labels[0])
	p.records = container.NewVBox()
	p.checks = container.NewVBox()
	p.status = widget.NewLabel("")
	p.status.Wrapping = fyne.TextWrapWord
	gen := widget.NewButton("Create signing key", p.generate)
	show := widget.NewButton("Show DNS records", p.showRecords)
	check := widget.NewButton("Check DNS", p.checkDNS)
	p.buttons = []*widget.Button{gen, show, check}
	intro := widget.NewLabel("Signing mail with DKIM, and publishing SPF and DMARC records, keeps your mail out of spam folders. " +
		"Create a key for the domain your mail comes from, publish the records at your domain's DNS provider, then check them here.")
	intro.Wrapping = fyne.TextWrapWord
	p.content = container.NewVBox(
		intro,
		container.New(layout.NewFormLayout(), widget.NewLabel("Your domain"), p.domain, widget.NewLabel("Key type"), p.algo),
		container.NewHBox(gen, show, check),
		p.status,
		p.records,
		p.checks,
	)
	return p
}

// suggest fills the domain from the host name when the user has not
// typed one: relay.example.com suggests example.com.
func (p *dkimPanel) suggest(hostname string) {
	if p.domain.Text != "" {
		return
	}
	parts := strings.Split(hostname, ".")
	if len(parts) >= 3 {
		p.domain.SetText(strings.Join(parts[1:], "."))
	} else if len(parts) == 2 {
		p.domain.SetText(hostname)
	}
}

func (p *dkimPanel) busy(on bool) {
	for _, b := range p.buttons {
		if on {
			b.Disable()
		} else {
			b.Enable()
		}
	}
}

func (p *dkimPanel) generate() {
	domain := strings.TrimSpace(p.domain.Text)
	algo := dkim.Algorithm(valueOf(algoChoices, p.algo.Selected))
	p.busy(true)
	p.status.SetText("Creating a key for " + domain + "…")
	p.u.background(engineTimeout, func(ctx context.Context) error {
		_, err := p.u.eng.GenerateDKIM(ctx, domain, "", algo)
		return err
	}, func(err error) {
		p.busy(false)
		if err != nil {
			p.status.SetText("✗ " + err.Error())
			return
		}
		p.status.SetText("✓ Key created. Mail from " + domain + " is signed from now on. Publish these records:")
		p.showRecords()
	})
}

func (p *dkimPanel) showRecords() {
	domain := strings.TrimSpace(p.domain.Text)
	var recs []dkim.Record
	p.u.background(engineTimeout, func(ctx context.Context) (err error) {
		recs, err = p.u.eng.DNSRecords(ctx, domain, "")
		return err
	}, func(err error) {
		p.records.RemoveAll()
		if err != nil {
			p.status.SetText("✗ " + err.Error())
			return
		}
		for _, r := range recs {
			p.records.Add(p.recordRow(r))
		}
	})
}

// recordRow shows one DNS record: what it is for, its name and value,
// each with a Copy button, since that is what the DNS provider's form asks.
func (p *dkimPanel) recordRow(r dkim.Record) fyne.CanvasObject {
	copyButton := func(text string) *widget.Button {
		return widget.NewButtonWithIcon("Copy", theme.ContentCopyIcon(), func() {
			p.u.app.Clipboard().SetContent(text)
			p.status.SetText("Copied to the clipboard.")
		})
	}
	kind := "SPF"
	switch {
	case strings.Contains(r.Name, "._domainkey."):
		kind = "DKIM"
	case strings.HasPrefix(r.Name, "_dmarc."):
		kind = "DMARC"
	}
	title := widget.NewLabelWithStyle(kind+" ("+r.Type+" record)", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	purpose := widget.NewLabel(r.Purpose)
	purpose.Wrapping = fyne.TextWrapWord
	name := widget.NewEntry()
	name.SetText(r.Name)
	value := widget.NewEntry()
	value.SetText(r.Value)
	return container.NewVBox(
		widget.NewSeparator(),
		title, purpose,
		container.NewBorder(nil, nil, widget.NewLabel("Name"), copyButton(r.Name), name),
		container.NewBorder(nil, nil, widget.NewLabel("Value"), copyButton(r.Value), value),
	)
}

func (p *dkimPanel) checkDNS() {
	domain := strings.TrimSpace(p.domain.Text)
	var res []dkim.Check
	p.busy(true)
	p.status.SetText("Looking up the records of " + domain + "…")
	p.u.background(networkTimeout, func(ctx context.Context) (err error) {
		res, err = p.u.eng.CheckDNS(ctx, domain)
		return err
	}, func(err error) {
		p.busy(false)
		p.checks.RemoveAll()
		if err != nil {
			p.status.SetText("✗ " + err.Error())
			return
		}
		p.status.SetText("What the DNS says now:")
		for _, c := range res {
			mark := "✓ "
			l := widget.NewLabel("")
			l.Wrapping = fyne.TextWrapWord
			l.Importance = widget.SuccessImportance
			if !c.OK {
				mark = "✗ "
				l.Importance = widget.DangerImportance
			}
			l.SetText(mark + c.Record + ": " + c.Message)
			p.checks.Add(l)
		}
	})
}
