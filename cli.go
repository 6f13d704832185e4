package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"postroom/engine"
	"postroom/storage"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

// exitUsage is the exit status for a wrong command or flag.
const exitUsage = 2

const usage = `Postroom — a mail relay for the office.

Usage:
  postroom                          the desktop app: window, tray icon and relay
  postroom serve [--config FILE]    the relay alone, logging to stderr
  postroom config export            print the settings in effect as TOML
  postroom config import FILE       check FILE and store it as the settings
  postroom queue list [--json] [--state S] [--limit N]
  postroom queue show ID
  postroom queue retry|hold|release|delete|bounce ID...
  postroom queue schedule ID TIME   deliver no earlier than TIME (RFC 3339)
  postroom queue pause|resume       stop or restart all sending
  postroom user add NAME            add an SMTP AUTH user; the password is read from standard input
  postroom user list                the users, their quotas and when they were added
  postroom user password NAME       set a new password (read from standard input)
  postroom user quota NAME H D      at most H messages per hour and D per day (0 = no limit)
  postroom user remove NAME         remove a user
  postroom dkim generate DOMAIN [--selector S] [--algo rsa2048|ed25519]
  postroom dkim dns DOMAIN          the DNS records to publish (DKIM, SPF, DMARC)
  postroom dkim check DOMAIN        check what is published in DNS
  postroom version

Every command takes --data DIR (default %s).
`

// stdio is where a command reads and writes; tests pass buffers.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// desktopFunc runs the window; nil in a headless build.
type desktopFunc func(dataDir string, io stdio) error

// usageError is a wrong command or flag: usage goes to stderr, exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func defaultDataDir() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "postroom-data"
	}
	return filepath.Join(dir, "postroom")
}

// run is the whole command line; it returns the exit status.
func run(args []string, std stdio, desktop desktopFunc) int {
	err := dispatch(args, std, desktop)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(std.err, "postroom: %s\n\n", ue.msg)
		fmt.Fprintf(std.err, usage, defaultDataDir())
		return exitUsage
	default:
		fmt.Fprintf(std.err, "postroom: %v\n", err)
		return 1
	}
}

// command is one subcommand's flags and positional arguments.
type command struct {
	fs      *flag.FlagSet
	dataDir *string
	std     stdio
}

func newCommand(name, synopsis string, std stdio) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &command{fs: fs, std: std}
	c.dataDir = fs.String("data", defaultDataDir(), "the data directory (holds postroom.db)")
	fs.Usage = func() {
		fmt.Fprintf(std.out, "Usage: postroom %s\n\nFlags:\n", synopsis)
		fs.SetOutput(std.out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return c
}

// parse accepts flags before, between and after positional arguments, as
// users type them ("dkim generate example.com --selector s1").
func (c *command) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.fs.Usage()
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (c *command) openStore(ctx context.Context) (*storage.Store, error) {
	return storage.Open(ctx, filepath.Join(*c.dataDir, storage.FileName))
}

// commands are the first words dispatch knows.
var commands = []string{"help", "serve", "config", "queue", "dkim", "user", "version"}

// commandFirst moves a command typed after the global flag to the front
// ("postroom --data DIR queue list" is "postroom queue list --data DIR"),
// where dispatch and the command's own flags expect it.
func commandFirst(args []string) []string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return args
		case a == "-data" || a == "--data":
			i++ // its value
		case strings.HasPrefix(a, "-"):
			// another flag (--data=DIR, -h): nothing to skip
		case slices.Contains(commands, a):
			return slices.Concat([]string{a}, args[:i], args[i+1:])
		default:
			return args
		}
	}
	return args
}

func dispatch(args []string, std stdio, desktop desktopFunc) error {
	args = commandFirst(args)
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" && args[0] != "-help" {
		c := newCommand("postroom", "[--data DIR]", std)
		pos, err := c.parse(args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return &usageError{fmt.Sprintf("unknown command %q", pos[0])}
		}
		if desktop == nil {
			return errors.New("this postroom was built without the window (headless); run `postroom serve`, or build the desktop app with `make build` on a machine with the X11/OpenGL headers")
		}
		return desktop(*c.dataDir, std)
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprintf(std.out, usage, defaultDataDir())
		return nil
	case "serve":
		return cmdServe(args[1:], std)
	case "config":
		return cmdConfig(args[1:], std)
	case "queue":
		return cmdQueue(args[1:], std)
	case "dkim":
		return cmdDKIM(args[1:], std)
	case "user":
		return cmdUser(args[1:], std)
	case "version":
		c := newCommand("version", "version", std)
		if _, err := c.parse(args[1:]); err != nil {
			return err
		}
		fmt.Fprintln(std.out, versionString())
		return nil
	}
	return &usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func versionString() string {
	v := "postroom " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}

func cmdServe(args []string, std stdio) error {
	c := newCommand("serve", "serve [--data DIR] [--config FILE]", std)
	configFile := c.fs.String("config", "", "import this settings file (TOML) at start")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return &usageError{"serve takes no arguments"}
	}
	lw := newLogWriter(std.err)
	defer lw.Flush()
	log := slog.New(slog.NewTextHandler(lw, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	eng := engine.New(engine.Options{Store: st, Logger: log, SpoolDir: *c.dataDir})
	// A relay already serving this queue must not have its settings
	// replaced by one that will not start.
	unlock, err := st.LockRun()
	if err != nil {
		return err
	}
	unlock()
	if *configFile != "" {
		if err := importFile(ctx, eng, *configFile); err != nil {
			return err
		}
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	// A second Ctrl-C or SIGTERM ends the process at once; mail in flight
	// is safe in the queue and its claims are released at the next start.
	stop()
	log.Info("stopping (signal received); a second signal stops at once")
	lw.Flush() // a second signal ends the process before the log writer would
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return eng.Shutdown(shutdownCtx)
}

func importFile(ctx context.Context, eng *engine.Engine, path string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading settings: %w", err)
	}
	if err := eng.ImportSettings(ctx, doc); err != nil {
		return fmt.Errorf("%s: nothing was changed:\n%w", path, err)
	}
	return nil
}

func cmdConfig(args []string, std stdio) error {
	c := newCommand("config", "config export | config import FILE", std)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return &usageError{"config needs a subcommand: export or import FILE"}
	}
	ctx := context.Background()
	switch {
	case pos[0] == "export" && len(pos) == 1:
		st, err := c.openStore(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		doc, err := engine.New(engine.Options{Store: st}).ExportSettings(ctx)
		if err != nil {
			return err
		}
		_, err = std.out.Write(doc)
		return err
	case pos[0] == "import" && len(pos) == 2:
		st, err := c.openStore(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := importFile(ctx, engine.New(engine.Options{Store: st}), pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(std.out, "Settings imported from %s. A running Postroom applies them at its next look at the queue (within queue_scan_interval).\n", pos[1])
		return nil
	}
	return &usageError{"usage: config export | config import FILE"}
}
