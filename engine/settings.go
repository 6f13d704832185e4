package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"

	"postroom/engine/config"
	"postroom/engine/policy"
)

// LoadSettings returns the stored settings, or the defaults (with this
// machine's host name) when none were saved; found tells which.
func LoadSettings(ctx context.Context, st Store) (s config.Settings, found bool, err error) {
	s, version, err := loadSettings(ctx, st)
	return s, version > 0, err
}

// loadSettings is LoadSettings with the stored version (0 = defaults).
func loadSettings(ctx context.Context, st Store) (s config.Settings, version int, err error) {
	doc, version, found, err := st.Settings(ctx)
	if err != nil {
		return s, 0, fmt.Errorf("reading the settings: %w", err)
	}
	if !found {
		s = config.Default()
		if h, err := os.Hostname(); err == nil && h != "" {
			def := s.Hostname
			s.Hostname = h
			if s.Validate() != nil {
				s.Hostname = def
			}
		}
		return s, 0, nil
	}
	s, err = config.Parse([]byte(doc))
	if err != nil {
		return s, version, fmt.Errorf("the stored settings (version %d) are not valid: %w", version, err)
	}
	return s, version, nil
}

// reloadSettings picks up settings saved by another process (the command
// line) since they were last read. The scheduler calls it at every look at
// the queue; it costs one small read.
func (e *Engine) reloadSettings(ctx context.Context) {
	version, found, err := e.store.SettingsVersion(ctx)
	e.mu.Lock()
	current := e.version
	e.mu.Unlock()
	if err != nil || !found || version == current {
		return
	}
	s, version, err := loadSettings(ctx, e.store)
	var pol *policy.Policy
	if err == nil {
		pol, err = newPolicy(&s)
	}
	if err != nil {
		e.log.Error("the saved settings could not be applied; the previous ones stay in effect", "err", err)
		e.mu.Lock()
		e.version = version // do not retry a bad version at every scan
		e.mu.Unlock()
		return
	}
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	e.mu.Lock()
	old, running, current := e.settings, e.accept[sockMain] != nil, e.version
	e.mu.Unlock()
	if current >= version {
		return // a SaveSettings in this process got there first
	}
	var fresh [sockKinds]net.Listener
	var changed [sockKinds]bool
	if running {
		if fresh, changed, err = e.reopenSockets(old, s); err != nil {
			e.log.Error("the new listening address or port could not be opened; the old ones stay in effect", "err", err)
			fresh, changed = [sockKinds]net.Listener{}, [sockKinds]bool{}
			s.Listen.Address, s.Listen.Port = old.Listen.Address, old.Listen.Port
			s.Listen.SubmissionPort, s.Listen.TLSPort = old.Listen.SubmissionPort, old.Listen.TLSPort
		}
	}
	e.adopt(old, s, pol, version, running, fresh, changed)
	e.log.Info("settings changed by another program were applied", "version", version)
}

// ImportSettings validates a TOML settings document and stores it as the
// settings in effect. A bad document changes nothing; the error names each
// bad key and value.
func (e *Engine) ImportSettings(ctx context.Context, doc []byte) error {
	s, err := config.Parse(doc)
	if err != nil {
		return err
	}
	return e.SaveSettings(ctx, s)
}

// SaveSettings validates and stores settings. A running engine applies
// them at once: to new sessions and deliveries, and by moving to new ports
// when the listening address or ports change (sessions in progress end on
// the old intake). A port that cannot be opened changes nothing.
func (e *Engine) SaveSettings(ctx context.Context, s config.Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	pol, err := newPolicy(&s)
	if err != nil {
		return err
	}
	doc, err := s.Encode()
	if err != nil {
		return err
	}
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	e.mu.Lock()
	running := e.accept[sockMain] != nil
	old := e.settings
	e.mu.Unlock()
	// New ports are opened before anything is saved: a port that cannot
	// be opened leaves the settings as they were.
	var fresh [sockKinds]net.Listener
	var changed [sockKinds]bool
	if running {
		if fresh, changed, err = e.reopenSockets(old, s); err != nil {
			return fmt.Errorf("nothing was changed: %w", err)
		}
	}
	version, err := e.store.SaveSettings(ctx, string(doc), e.now())
	if err != nil {
		closeAll(fresh[:])
		return fmt.Errorf("saving the settings: %w", err)
	}
	e.log.Info("settings saved", "version", version)
	e.adopt(old, s, pol, version, running, fresh, changed)
	return nil
}

// adopt puts saved settings in effect: at once for new sessions and
// deliveries, on a new intake server (and new sockets) when what go-smtp
// was built with changed. The caller holds applyMu.
func (e *Engine) adopt(old, s config.Settings, pol *policy.Policy, version int, running bool, fresh [sockKinds]net.Listener, changed [sockKinds]bool) {
	e.mu.Lock()
	e.settings, e.policy, e.version = s, pol, version
	e.mu.Unlock()
	if running && (slices.Contains(changed[:], true) || intakeChanged(old, s)) {
		e.restartIntake(fresh, changed)
	}
	e.Wake()
}

// intakeChanged reports whether the go-smtp server must be rebuilt: it
// reads these settings once, when it is made (newSMTPServer). The rest
// (access lists, connection caps, quotas) is read per connection.
func intakeChanged(old, s config.Settings) bool {
	o, n := old.Limits, s.Limits
	return old.Hostname != s.Hostname || old.Listen.AuthWithoutTLS != s.Listen.AuthWithoutTLS ||
		o.MaxMessageBytes != n.MaxMessageBytes || o.MaxRecipients != n.MaxRecipients ||
		o.MaxLineLength != n.MaxLineLength || o.IdleTimeout != n.IdleTimeout
}

// ExportSettings returns the settings in effect as a complete TOML document.
func (e *Engine) ExportSettings(ctx context.Context) ([]byte, error) {
	s, _, err := LoadSettings(ctx, e.store)
	if err != nil {
		return nil, err
	}
	return s.Encode()
}
