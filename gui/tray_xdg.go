//go:build linux || freebsd || netbsd || openbsd

package gui

import (
	"github.com/godbus/dbus/v5"
)

// statusNotifierWatcher is the D-Bus name of the service that shows tray
// icons on freedesktop desktops (KDE, XFCE, GNOME with the AppIndicator
// extension, ...). Fyne's tray registers with it.
const statusNotifierWatcher = "org.kde.StatusNotifierWatcher"

// xdgTray answers tray questions over the D-Bus session bus, which is how
// Fyne's tray reaches the desktop on Linux and the BSDs.
type xdgTray struct{}

func platformTray() trayHost { return xdgTray{} }

// available reports whether the session bus can be reached. Without one,
// Fyne's tray code cannot work and (in Fyne 2.7.1) panics on quit closing a
// connection it never made, so the tray is left out altogether. The shared
// connection opened here is the one the tray code then reuses.
func (xdgTray) available() bool {
	_, err := dbus.SessionBus()
	return err == nil
}

// showing reports whether a tray host is running right now. A desktop
// without one (plain GNOME) never shows the icon, and hiding the window
// there would leave the user no way back to it.
func (xdgTray) showing() bool {
	conn, err := dbus.SessionBus()
	if err != nil {
		return false
	}
	var has bool
	err = conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, statusNotifierWatcher).Store(&has)
	return err == nil && has
}
