package gui

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"postroom/engine"
)

// usersView is the Settings' Users page: the accounts programs log in
// with to send mail from outside the trusted networks. Users are not part
// of the settings document, so each change here goes to the engine at
// once; Apply and Cancel do not concern them.
type usersView struct {
	u       *UI
	content fyne.CanvasObject

	// Fyne goroutine only.
	users   []engine.User
	list    *fyne.Container
	name    *widget.Entry
	pass    *widget.Entry
	nameErr *widget.Label
	passErr *widget.Label
	add     *widget.Button
	status  *widget.Label
	// rowButtons are each user's buttons by user name and label, for
	// tests and for disabling while a change runs.
	rowButtons map[string]map[string]*widget.Button
	// dialogEntries are the entries of the open password or quota dialog.
	dialogEntries []*widget.Entry
}

func newUsersView(u *UI) *usersView {
	v := &usersView{u: u, list: container.NewVBox(), rowButtons: map[string]map[string]*widget.Button{}}
	v.name = widget.NewEntry()
	v.name.SetPlaceHolder("User name, e.g. scanner or office@example.com")
	v.pass = widget.NewPasswordEntry()
	v.pass.SetPlaceHolder("Password, at least 8 characters")
	v.pass.OnSubmitted = func(string) { v.addUser() }
	v.nameErr, v.passErr = errorLine(), errorLine()
	v.add = widget.NewButtonWithIcon("Add user", theme.ContentAddIcon(), v.addUser)
	v.status = widget.NewLabel("")
	v.status.Wrapping = fyne.TextWrapWord

	intro := widget.NewLabel("Programs and devices outside the trusted networks log in with one of these names and passwords " +
		"to send mail through Postroom (on the submission port set on the Security page). " +
		"Changes here take effect at once.")
	intro.Wrapping = fyne.TextWrapWord
	addForm := widget.NewForm(
		widget.NewFormItem("New user", container.NewVBox(v.name, v.nameErr)),
		widget.NewFormItem("Password", container.NewVBox(v.pass, v.passErr)),
	)
	v.content = container.NewVBox(intro,
		widget.NewLabelWithStyle("Users", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		v.list, widget.NewSeparator(), addForm, container.NewHBox(v.add), v.status)
	v.redraw()
	return v
}

func errorLine() *widget.Label {
	l := widget.NewLabel("")
	l.Importance = widget.DangerImportance
	l.Wrapping = fyne.TextWrapWord
	l.Hide()
	return l
}

func showError(l *widget.Label, msg string) {
	l.SetText(msg)
	if msg == "" {
		l.Hide()
	} else {
		l.Show()
	}
}

// reload reads the users. It calls the engine: not on the Fyne goroutine.
func (v *usersView) reload() {
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	users, err := v.u.eng.Users(ctx)
	v.u.do(func() {
		if err != nil {
			v.status.SetText("Could not read the users: " + err.Error())
		} else {
			v.users = users
			v.redraw()
		}
		v.u.done()
	})
}

func (v *usersView) redraw() {
	v.list.RemoveAll()
	v.rowButtons = map[string]map[string]*widget.Button{}
	if len(v.users) == 0 {
		none := widget.NewLabel("No users yet: only the trusted networks may send.")
		none.Importance = widget.LowImportance
		v.list.Add(none)
	}
	for _, usr := range v.users {
		name := usr.Name
		buttons := map[string]*widget.Button{
			"password": widget.NewButton("Set password…", func() { v.askPassword(name) }),
			"quota":    widget.NewButton("Set limits…", func() { v.askQuota(name) }),
			"remove":   widget.NewButtonWithIcon("Remove", theme.DeleteIcon(), func() { v.confirmRemove(name) }),
		}
		buttons["remove"].Importance = widget.DangerImportance
		v.rowButtons[name] = buttons
		label := widget.NewLabelWithStyle(name, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
		quota := widget.NewLabel(quotaWords(usr))
		quota.Importance = widget.LowImportance
		v.list.Add(container.NewBorder(nil, nil, nil,
			container.NewHBox(buttons["password"], buttons["quota"], buttons["remove"]),
			container.NewHBox(label, quota)))
	}
	v.list.Refresh()
}

// quotaWords says how much a user may send.
func quotaWords(u engine.User) string {
	var parts []string
	if u.PerHour > 0 {
		parts = append(parts, plural(u.PerHour, "message")+" an hour")
	}
	if u.PerDay > 0 {
		parts = append(parts, plural(u.PerDay, "message")+" a day")
	}
	if len(parts) == 0 {
		return "no sending limit"
	}
	return "at most " + strings.Join(parts, " and ")
}

// change runs one user change on a goroutine, shows its outcome and
// reads the users again.
func (v *usersView) change(fn func(ctx context.Context) error, done string, onErr func(error), onOK func()) {
	v.add.Disable()
	v.u.background(engineTimeout, fn, func(err error) {
		v.add.Enable()
		if err == nil && onOK != nil {
			onOK()
		}
		if err != nil {
			if onErr != nil {
				onErr(err)
			} else {
				v.status.SetText(capitalise(err.Error()) + ".")
			}
			return
		}
		v.status.SetText(done)
		v.u.goBG(v.reload)
	})
}

// addUser adds the user typed in, showing a problem at its field.
func (v *usersView) addUser() {
	name, pass := strings.TrimSpace(v.name.Text), v.pass.Text
	showError(v.nameErr, "")
	showError(v.passErr, "")
	if name == "" {
		showError(v.nameErr, "Type a user name.")
		return
	}
	v.change(func(ctx context.Context) error { return v.u.eng.AddUser(ctx, name, pass) },
		"User "+name+" added.",
		func(err error) {
			if strings.Contains(err.Error(), "password") {
				showError(v.passErr, capitalise(err.Error())+".")
			} else {
				showError(v.nameErr, capitalise(err.Error())+".")
			}
		},
		func() {
			v.name.SetText("")
			v.pass.SetText("")
		})
}

func (v *usersView) confirmRemove(name string) {
	dialog.ShowConfirm("Remove user?",
		"Remove "+name+"? Programs that log in as "+name+" can no longer send mail.",
		func(ok bool) {
			if ok {
				v.change(func(ctx context.Context) error { return v.u.eng.RemoveUser(ctx, name) }, "User "+name+" removed.", nil, nil)
			}
		}, v.u.window)
}

func (v *usersView) askPassword(name string) {
	pass := widget.NewPasswordEntry()
	again := widget.NewPasswordEntry()
	again.Validator = func(s string) error {
		if s != pass.Text {
			return errors.New("the two passwords differ")
		}
		return nil
	}
	v.dialogEntries = []*widget.Entry{pass, again}
	d := dialog.NewForm("New password for "+name, "Set password", "Cancel", []*widget.FormItem{
		widget.NewFormItem("Password", pass),
		widget.NewFormItem("Again", again),
	}, func(ok bool) {
		v.dialogEntries = nil
		if !ok {
			return
		}
		p := pass.Text
		v.change(func(ctx context.Context) error { return v.u.eng.SetPassword(ctx, name, p) }, "Password of "+name+" changed.", nil, nil)
	}, v.u.window)
	d.Resize(fyne.NewSize(420, 220))
	d.Show()
}

func (v *usersView) askQuota(name string) {
	var cur engine.User
	for _, u := range v.users {
		if u.Name == name {
			cur = u
		}
	}
	count := func(n int) *widget.Entry {
		e := widget.NewEntry()
		e.SetText(fmt.Sprint(n))
		e.Validator = func(s string) error {
			if n, err := wholeNumber(strings.TrimSpace(s)); err != nil || n < 0 {
				return errors.New("a whole number, 0 for no limit")
			}
			return nil
		}
		return e
	}
	hour, day := count(cur.PerHour), count(cur.PerDay)
	v.dialogEntries = []*widget.Entry{hour, day}
	d := dialog.NewForm("Sending limits for "+name, "Set limits", "Cancel", []*widget.FormItem{
		{Text: "Messages per hour", Widget: hour, HintText: "0 means no limit"},
		{Text: "Messages per day", Widget: day, HintText: "0 means no limit"},
	}, func(ok bool) {
		v.dialogEntries = nil
		if !ok {
			return
		}
		h, _ := wholeNumber(strings.TrimSpace(hour.Text))
		dd, _ := wholeNumber(strings.TrimSpace(day.Text))
		v.change(func(ctx context.Context) error { return v.u.eng.SetUserQuota(ctx, name, h, dd) }, "Limits of "+name+" set.", nil, nil)
	}, v.u.window)
	d.Resize(fyne.NewSize(420, 240))
	d.Show()
}
