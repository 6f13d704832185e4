package storage

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestUsersRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "scanner", "hash-1", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "accounts", "hash-2", t0.Add(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "scanner", "other", t0); !errors.Is(err, ErrUserExists) {
		t.Fatalf("adding a taken name: %v, want ErrUserExists", err)
	}
	if err := s.SetPassword(ctx, "accounts", "hash-3"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// What was stored survives a reopen.
	s = openAt(t, path)
	users, err := s.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Name != "accounts" || users[1].Name != "scanner" {
		t.Fatalf("Users = %+v, want accounts and scanner in that order", users)
	}
	if users[0].PasswordHash != "hash-3" || users[1].PasswordHash != "hash-1" {
		t.Errorf("hashes = %q, %q; want hash-3 (replaced) and hash-1 (kept: the refused add changed nothing)", users[0].PasswordHash, users[1].PasswordHash)
	}
	u, err := s.User(ctx, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	if !u.Created.Equal(t0) || u.PerHour != 0 || u.PerDay != 0 {
		t.Errorf("User(scanner) = %+v, want created %v and no quotas", u, t0)
	}

	if err := s.RemoveUser(ctx, "scanner"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(ctx, "scanner"); !errors.Is(err, ErrNotFound) {
		t.Errorf("User after removal: %v, want ErrNotFound", err)
	}
	if err := s.RemoveUser(ctx, "scanner"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing a missing user: %v, want ErrNotFound", err)
	}
	if err := s.SetPassword(ctx, "scanner", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetPassword of a missing user: %v, want ErrNotFound", err)
	}
	if users, _ := s.Users(ctx); len(users) != 1 {
		t.Errorf("Users after removal = %+v, want only accounts", users)
	}
}

// Names are matched exactly: the engine folds case before it asks.
func TestUserNamesAreExact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t)
	if err := s.AddUser(ctx, "scanner", "h", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(ctx, "Scanner"); !errors.Is(err, ErrNotFound) {
		t.Errorf("User(Scanner): %v, want ErrNotFound", err)
	}
}

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
