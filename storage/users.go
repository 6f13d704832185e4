package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// User is an account that may authenticate (SMTP AUTH) to relay mail. The
// store keeps the password hash as the engine gives it and never sees a
// password.
type User struct {
	Name         string
	PasswordHash string
	// PerHour and PerDay cap the messages the user may send; 0 = no cap.
	PerHour, PerDay int
	Created         time.Time
}

// ErrUserExists is returned (wrapped) by AddUser when the name is taken.
var ErrUserExists = errors.New("a user with this name exists already")

// AddUser stores a new user without quotas. It fails with ErrUserExists,
// changing nothing, when the name is taken: replacing a password is
// SetPassword's job, so a typo in "user add" cannot overwrite an account.
func (s *Store) AddUser(ctx context.Context, name, passwordHash string, now time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO users(name, password_hash, created_at) VALUES (?, ?, ?)
			ON CONFLICT(name) DO NOTHING`, name, passwordHash, ms(now))
		if err != nil {
			return fmt.Errorf("adding user %q: %w", name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("user %q: %w", name, ErrUserExists)
		}
		return nil
	})
}

// SetPassword replaces a user's password hash; ErrNotFound (wrapped) when
// there is no such user.
func (s *Store) SetPassword(ctx context.Context, name, passwordHash string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE users SET password_hash = ? WHERE name = ?", passwordHash, name)
		if err != nil {
			return fmt.Errorf("setting the password of user %q: %w", name, err)
		}
		return affectedUser(res, name)
	})
}

// RemoveUser deletes a user; ErrNotFound (wrapped) when there is no such
// user. Messages the user sent keep its name in their AuthUser.
func (s *Store) RemoveUser(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM users WHERE name = ?", name)
		if err != nil {
			return fmt.Errorf("removing user %q: %w", name, err)
		}
		return affectedUser(res, name)
	})
}

func affectedUser(res sql.Result, name string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return nil
}

const userColumns = "name, password_hash, per_hour, per_day, created_at"

// Users returns every user, ordered by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+userColumns+" FROM users ORDER BY name")
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, classify(rows.Err())
}

// User returns one user; ErrNotFound (wrapped) when there is no such user.
func (s *Store) User(ctx context.Context, name string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE name = ?", name))
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", name, classify(err))
	}
	return u, nil
}

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var created int64
	if err := row.Scan(&u.Name, &u.PasswordHash, &u.PerHour, &u.PerDay, &created); err != nil {
		return User{}, err
	}
	u.Created = fromMS(created)
	return u, nil
}
