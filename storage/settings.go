package storage

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Settings returns the newest saved settings document and its version;
// found is false when none was ever saved (first run).
func (s *Store) Settings(ctx context.Context) (doc string, version int, found bool, err error) {
	err = s.queryRow(ctx, "SELECT document, version FROM settings ORDER BY version DESC LIMIT 1").Scan(&doc, &version)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, classify(err)
	}
	return doc, version, true, nil
}

// SettingsVersion returns the newest saved version of the settings, and
// false when none is saved: the scheduler asks at every pass whether the
// settings changed, which needs the number, not the document.
func (s *Store) SettingsVersion(ctx context.Context) (version int, found bool, err error) {
	var v sql.NullInt64
	if err := s.queryRow(ctx, "SELECT max(version) FROM settings").Scan(&v); err != nil {
		return 0, false, classify(err)
	}
	return int(v.Int64), v.Valid, nil
}

// SaveSettings stores a new version of the settings document. The caller
// validates it first: storage keeps what it is given.
func (s *Store) SaveSettings(ctx context.Context, doc string, now time.Time) (int, error) {
	var version int
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) + 1 FROM settings").Scan(&version); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO settings(version, document, saved_at) VALUES (?, ?, ?)", version, doc, ms(now))
		return err
	})
	return version, err
}

// Value returns a named value from the kv table; found is false when unset.
func (s *Store) Value(ctx context.Context, name string) (value []byte, found bool, err error) {
	err = s.queryRow(ctx, "SELECT value FROM kv WHERE name = ?", name).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	return value, err == nil, classify(err)
}

// SetValue stores a named value; a nil value removes it.
func (s *Store) SetValue(ctx context.Context, name string, value []byte) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if value == nil {
			_, err := tx.ExecContext(ctx, "DELETE FROM kv WHERE name = ?", name)
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO kv(name, value) VALUES (?, ?)
			ON CONFLICT(name) DO UPDATE SET value = excluded.value`, name, value)
		return err
	})
}
