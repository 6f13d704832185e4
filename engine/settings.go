package engine

import (
	"context"
	"fmt"
	"os"

	"postroom/engine/config"
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
	_, version, found, err := e.store.Settings(ctx)
	e.mu.Lock()
	current := e.version
	e.mu.Unlock()
	if err != nil || !found || version == current {
		return
	}
	if err := e.Load(ctx); err != nil {
		e.log.Error("the saved settings could not be applied; the previous ones stay in effect", "err", err)
		e.mu.Lock()
		e.version = version // do not retry a bad version at every scan
		e.mu.Unlock()
		return
	}
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
// them to new sessions and deliveries at once; a change of the listening
// address or port takes effect at the next start.
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
	version, err := e.store.SaveSettings(ctx, string(doc), e.now())
	if err != nil {
		return fmt.Errorf("saving the settings: %w", err)
	}
	e.mu.Lock()
	running := e.listener != nil
	old := e.settings
	e.settings, e.policy, e.version = s, pol, version
	e.mu.Unlock()
	e.log.Info("settings saved", "version", version)
	if running && old.Listen != s.Listen {
		e.log.Warn("the new listening settings take effect when Postroom is restarted")
	}
	e.Wake()
	return nil
}

// ExportSettings returns the settings in effect as a complete TOML document.
func (e *Engine) ExportSettings(ctx context.Context) ([]byte, error) {
	s, _, err := LoadSettings(ctx, e.store)
	if err != nil {
		return nil, err
	}
	return s.Encode()
}
