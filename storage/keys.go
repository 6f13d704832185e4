package storage

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// DKIMKey is a stored DKIM private key.
type DKIMKey struct {
	Domain        string
	Selector      string
	Algorithm     string
	PrivateKeyPEM []byte
	Created       time.Time
}

// SaveDKIMKey stores a key. A domain may have several (rotation); the
// newest signs.
func (s *Store) SaveDKIMKey(ctx context.Context, k DKIMKey) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO dkim_keys(domain, selector, algorithm, private_key, created_at)
			VALUES (?, ?, ?, ?, ?)`, k.Domain, k.Selector, k.Algorithm, k.PrivateKeyPEM, ms(k.Created))
		if err != nil {
			return fmt.Errorf("saving the DKIM key %s for %s (does this selector exist already?): %w", k.Selector, k.Domain, err)
		}
		return nil
	})
}

// DKIMKeys returns the keys of a domain, newest first; an empty domain
// returns every key.
func (s *Store) DKIMKeys(ctx context.Context, domain string) ([]DKIMKey, error) {
	// Asked at every delivery (is the sender's domain signed?).
	st, err := s.readStmt(ctx, `SELECT domain, selector, algorithm, private_key, created_at FROM dkim_keys
		WHERE ? = '' OR domain = ? ORDER BY domain, created_at DESC, selector DESC`)
	if err != nil {
		return nil, classify(err)
	}
	rows, err := st.QueryContext(ctx, domain, domain)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []DKIMKey
	for rows.Next() {
		var k DKIMKey
		var created int64
		if err := rows.Scan(&k.Domain, &k.Selector, &k.Algorithm, &k.PrivateKeyPEM, &created); err != nil {
			return nil, err
		}
		k.Created = fromMS(created)
		out = append(out, k)
	}
	return out, rows.Err()
}

// RemoveDKIMKey deletes one key.
func (s *Store) RemoveDKIMKey(ctx context.Context, domain, selector string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM dkim_keys WHERE domain = ? AND selector = ?", domain, selector)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("DKIM key %s for %s: %w", selector, domain, ErrNotFound)
		}
		return nil
	})
}
