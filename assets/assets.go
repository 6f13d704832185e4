// Package assets holds Postroom's embedded images: the application icon and
// the system tray variants. It deliberately imports nothing from Fyne so the
// headless build and the engine side can use it without pulling in a GUI.
//
// The PNGs are drawn by gen/main.go; edit that program rather than the images.
package assets

import _ "embed"

// Icon is the application icon, 512×512 PNG: an envelope with an outgoing
// arrow. It is also the tray icon while mail is flowing normally.
//
//go:embed icon.png
var Icon []byte

// IconPaused is the 64×64 PNG tray icon shown while sending is paused.
//
//go:embed icon-paused.png
var IconPaused []byte

// IconAlert is the 64×64 PNG tray icon shown while delivery is failing.
//
//go:embed icon-alert.png
var IconAlert []byte
