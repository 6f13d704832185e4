//go:build !headless

// Postroom is a desktop mail relay for a small business: it accepts mail
// from the office's apps and devices over SMTP, keeps it in a durable
// queue and delivers it, directly or through a provider. Run without a
// command it opens the window and the tray icon; `postroom serve` runs the
// relay alone. This file only wires the desktop app together; the build
// tag `headless` replaces it with headless.go for servers without X11.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"fyne.io/fyne/v2/app"

	"postroom/engine"
	"postroom/gui"
)

// The window talks to the engine only through gui.Engine.
var _ gui.Engine = (*engine.Engine)(nil)

func main() {
	os.Exit(run(os.Args[1:], stdio{os.Stdin, os.Stdout, os.Stderr}, desktop))
}

// desktop runs the window, the tray icon and the relay in one process.
func desktop(dataDir string, std stdio) error {
	ctx := context.Background()
	c := &command{dataDir: &dataDir}
	st, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	// The Log tab reads the last lines from a ring that every record also
	// goes through on its way to stderr.
	logs := engine.NewLogRing(2000)
	lw := newLogWriter(std.err)
	defer lw.Flush()
	log := slog.New(logs.Handler(slog.NewTextHandler(lw, nil)))
	eng := engine.New(engine.Options{Store: st, Logger: log, SpoolDir: dataDir})
	if err := eng.Start(ctx); err != nil {
		// The window still opens: it shows that mail is not being accepted,
		// and the settings can be fixed there.
		log.Error("the relay did not start", "err", err)
		if err := eng.Load(ctx); err != nil {
			return err
		}
	}
	a := app.NewWithID("com.postroom.relay")
	gui.New(a, eng, logs).ShowAndRun()
	shutdownCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return eng.Shutdown(shutdownCtx)
}
