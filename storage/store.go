// Package storage keeps Postroom's durable state in one SQLite database:
// the queue (messages, their bodies, per-recipient delivery state and the
// attempt log), the settings document, users, DKIM keys and the counters
// behind the dashboard.
//
// Every write that answers a client is committed with synchronous=FULL in
// WAL mode before the method returns, so a "250" given after Enqueue means
// the message survives a crash or a power cut. The package knows nothing of
// SMTP or of the engine; it stores and answers questions.
package storage

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// FileName is the database's name inside the data directory.
const FileName = "postroom.db"

// Store is the SQLite-backed store. It is safe for concurrent use.
type Store struct {
	db   *sql.DB // reads; a pool of connections
	w    *writer // every write, through one connection (commit.go)
	path string
	vfs  string // the SQLite VFS it was opened with; "" for the default

	readMu sync.Mutex
	reads  map[string]*sql.Stmt // prepared hot reads (queryRow)

	checkpointDone chan struct{} // closed when the checkpointer has returned
}

// Open opens (creating when needed) the database at path, checks that it is
// durable (WAL, synchronous=FULL) and brings its schema up to date.
//
// The errors name the file and say what to do: a database another program
// holds locked, one the user cannot write, and one that is damaged each get
// their own sentence, never a panic.
func Open(ctx context.Context, path string) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create the data directory %s: %w", dir, err)
		}
	}
	// _txlock=immediate: every transaction takes the write lock at BEGIN,
	// so two writers never deadlock upgrading a read lock.
	dsn := "file:" + path + "?_txlock=immediate" +
		"&_pragma=busy_timeout(10000)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)" +
		"&_pragma=foreign_keys(ON)"
	vfs := ""
	if registerVFS() {
		vfs = vfsName // walvfs_linux.go
		dsn += "&vfs=" + vfs
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, openError(path, err)
	}
	// Readers come and go with the load (intake, workers, the window);
	// keeping a few connections open spares each query opening one, which
	// means reading the schema again.
	db.SetMaxIdleConns(8)
	// The writer's connection leaves checkpoints to the checkpointer
	// (checkpoint.go) and keeps savepoint journals in memory.
	wdb, err := sql.Open("sqlite", dsn+"&_pragma=wal_autocheckpoint(0)&_pragma=temp_store(MEMORY)")
	if err != nil {
		db.Close()
		return nil, openError(path, err)
	}
	// Commit with fdatasync, as SQLite's own Linux builds do: the same
	// durability (data and size are synced) without the inode timestamp
	// update that fsync pushes through the file system's journal.
	sqlite.Fdatasync(true)
	s := &Store{db: db, w: newWriter(wdb), path: path, vfs: vfs, reads: make(map[string]*sql.Stmt),
		checkpointDone: make(chan struct{})}
	go s.checkpointer()
	if err := s.check(ctx); err != nil {
		s.Close()
		return nil, openError(path, err)
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, openError(path, err)
	}
	return s, nil
}

// check verifies the durability settings actually in force. SQLite ignores
// a pragma it cannot apply, so asking is the only proof.
func (s *Store) check(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	var sync int
	if err := s.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return err
	}
	if sync != 2 { // 2 = FULL
		return fmt.Errorf("synchronous is %d, want 2 (FULL): accepted mail would not be safe on disk", sync)
	}
	// The connection that commits is the writer's: ask it too.
	err := s.w.do(ctx, func(t *wtx) error { return t.QueryRowContext(t.ctx, "PRAGMA synchronous").Scan(&sync) })
	if err != nil {
		return err
	}
	if sync != 2 {
		return fmt.Errorf("synchronous is %d on the writing connection, want 2 (FULL): accepted mail would not be safe on disk", sync)
	}
	var ok string
	if err := s.db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&ok); err != nil {
		return err
	}
	if ok != "ok" {
		return fmt.Errorf("integrity check failed: %s: %w", ok, errCorrupt)
	}
	return nil
}

var errCorrupt = errors.New("database disk image is malformed")

// openError turns SQLite's terse codes into a sentence a user can act on.
func openError(path string, err error) error {
	var se *sqlite.Error
	code := 0
	if errors.As(err, &se) {
		code = se.Code() & 0xff
	}
	switch {
	case code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("the database %s is locked by another program (is another postroom running on the same data directory?): %w", path, err)
	case code == sqlite3.SQLITE_READONLY || code == sqlite3.SQLITE_CANTOPEN || code == sqlite3.SQLITE_PERM || errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("the database %s cannot be opened for writing; check that the file and its directory belong to this user and are writable: %w", path, err)
	case code == sqlite3.SQLITE_CORRUPT || code == sqlite3.SQLITE_NOTADB || errors.Is(err, errCorrupt):
		return fmt.Errorf("the database %s is damaged or is not a Postroom database; move it aside (keep it for recovery) and start again to create a new one: %w", path, err)
	}
	return fmt.Errorf("cannot open the database %s: %w", path, err)
}

// migrate applies the embedded numbered migrations not yet recorded in
// schema_migrations, each in its own transaction.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL)`); err != nil {
		return err
	}
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("migration %s: name must start with a number and '_'", e.Name())
		}
		body, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return err
		}
		err = s.tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?", version).Scan(&n); err != nil || n > 0 {
				return err
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("migration %s: %w", e.Name(), err)
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)", version, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// Expect announces a message that is being received: until the returned
// function is called (it does something only the first time), a
// transaction may wait a moment for the message, to store it in the same
// commit (commit.go). Pass the function as NewMessage.Expected, which
// Enqueue calls once the message is in line; call it yourself when the
// message will not be stored after all.
func (s *Store) Expect() (done func()) {
	s.w.expect(1)
	var once sync.Once
	return func() { once.Do(func() { s.w.expect(-1) }) }
}

// Close stops the writer (after the transaction it is committing) and
// closes the database.
func (s *Store) Close() error {
	werr := s.w.close()
	<-s.checkpointDone
	s.readMu.Lock()
	for _, st := range s.reads {
		st.Close()
	}
	clear(s.reads)
	s.readMu.Unlock()
	return errors.Join(werr, s.db.Close())
}

// readStmt returns query prepared on the read pool (on each connection the
// first time that connection runs it), for the reads every message makes:
// parsing their SQL each time cost more than running them.
func (s *Store) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if st := s.reads[query]; st != nil {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.reads[query] = st
	return st, nil
}

// queryRow is QueryRowContext with a prepared statement.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return s.db.QueryRowContext(ctx, query, args...) // reports the same error
	}
	return st.QueryRowContext(ctx, args...)
}

// tx runs fn in a write transaction and returns once it is committed, the
// WAL on disk. fn shares its transaction with other writes (commit.go): on
// an error it returns, only its own work is rolled back. fn must not call
// tx (or anything that writes) itself: there is one writer.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.w.do(ctx, func(t *wtx) error { return fn(t.Tx) })
}

// ErrDiskFull is returned (wrapped) when the disk or the database is full.
// The engine answers such an intake with a temporary 452 4.3.1.
var ErrDiskFull = errors.New("disk full")

// ErrNotFound is returned when the named message or recipient does not exist.
var ErrNotFound = errors.New("not found")

func classify(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

func nullMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
