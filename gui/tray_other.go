//go:build !(linux || freebsd || netbsd || openbsd)

package gui

// otherTray is the tray on Windows and macOS, which always have one.
type otherTray struct{}

func platformTray() trayHost { return otherTray{} }

func (otherTray) available() bool { return true }
func (otherTray) showing() bool   { return true }
