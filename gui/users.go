package gui

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	users []engine.User
	// usage is how much each user sent lately, by name; a user missing
	// from it (the count failed) shows its limits only.
	usage   map[string]engine.UserUsage
	list    *fyne.Container
	name    *widget.Entry
	pass    *widget.Entry
	nameErr *widget.Label
	passErr *widget.Label
	add     *widget.Button
	status  *widget.Label
	// readFailed is set while status says the last reload failed.
	readFailed bool
	// rowButtons are each user's buttons by user name and label, for
	// tests and for disabling while a change runs.
	rowButtons map[string]map[string]*widget.Button
	// usageLabels are each user's line on limits and use, by user name.
	usageLabels map[string]*widget.Label
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

// reload reads the users and what each sent lately. It calls the engine:
// not on the Fyne goroutine.
func (v *usersView) reload() {
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	users, err := v.u.eng.Users(ctx)
	usage := make(map[string]engine.UserUsage, len(users))
	var usageErr error
	for _, usr := range users {
		used, err := v.u.eng.UserUsage(ctx, usr.Name)
		if err != nil {
			usageErr = err
			continue
		}
		usage[usr.Name] = used
	}
	v.u.do(func() {
		switch {
		case err != nil:
			v.status.SetText("Could not read the users: " + err.Error())
		case usageErr != nil:
			v.status.SetText("Could not count what the users sent: " + usageErr.Error())
		case v.readFailed:
			v.status.SetText("") // the last read's error is over
		}
		v.readFailed = err != nil || usageErr != nil
		// The watcher reloads after every burst of mail; rebuild the rows
		// only when something they show changed.
		if err == nil && (!slices.Equal(users, v.users) || !maps.Equal(usage, v.usage)) {
			v.users, v.usage = users, usage
			v.redraw()
		}
		v.u.done()
	})
}

// refreshIfShown re-reads the users when their page is in front, so that
// what they sent follows the mail arriving. The watcher calls it after
// events and on its clock; it runs on any goroutine.
func (v *usersView) refreshIfShown() {
	v.u.do(func() {
		if v.shown() {
			v.u.goBG(v.reload)
		}
	})
}

// shown reports whether the Users page is what the window shows.
func (v *usersView) shown() bool {
	tab, page := v.u.tabs.Selected(), v.u.settings.pages.Selected()
	return tab != nil && tab.Text == "Settings" && page != nil && page.Text == "Users"
}

func (v *usersView) redraw() {
	v.list.RemoveAll()
	v.rowButtons = map[string]map[string]*widget.Button{}
	v.usageLabels = map[string]*widget.Label{}
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
		// Not red: a row of red buttons shouts, and Remove asks first.
		v.rowButtons[name] = buttons
		label := widget.NewLabelWithStyle(name, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
		quota := widget.NewLabel(quotaWords(usr))
		if used, ok := v.usage[name]; ok {
			quota.SetText(usageWords(usr, used))
			if atLimit(usr, used) {
				quota.Importance = widget.WarningImportance
			}
		}
		v.usageLabels[name] = quota
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

// usageWords says how much a user sent in the quota's two windows, and
// of how much, e.g. "12 of 100 sent in the last hour · 40 of 500 in the
// last 24 hours". A window without a limit shows the count alone, and a
// user without any limit says so first.
func usageWords(u engine.User, used engine.UserUsage) string {
	of := func(n, limit int) string {
		if limit > 0 {
			return fmt.Sprintf("%d of %d", n, limit)
		}
		return fmt.Sprint(n)
	}
	words := of(used.LastHour, u.PerHour) + " sent in the last hour · " + of(used.LastDay, u.PerDay) + " in the last 24 hours"
	if u.PerHour == 0 && u.PerDay == 0 {
		return "no limit · " + words
	}
	return words
}

// atLimit reports whether the user's next message would be refused.
func atLimit(u engine.User, used engine.UserUsage) bool {
	return u.PerHour > 0 && used.LastHour >= u.PerHour || u.PerDay > 0 && used.LastDay >= u.PerDay
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
