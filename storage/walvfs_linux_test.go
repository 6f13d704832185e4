//go:build linux && (amd64 || arm64 || loong64 || ppc64le || riscv64 || s390x)

package storage

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// openRaw opens a database in WAL mode, synchronous=FULL, with or without
// our VFS, and no automatic checkpoint (so a test sees only the WAL's
// writes).
func openRaw(t *testing.T, path string, ours bool) *sql.DB {
	t.Helper()
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(0)"
	if ours {
		if !registerVFS() {
			t.Fatal("the postroom VFS could not be registered")
		}
		dsn += "&vfs=" + vfsName
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS b (id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		t.Fatal(err)
	}
	return db
}

// writeCalls is this process's count of write-type system calls.
func writeCalls(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("skipped: /proc/self/io is not readable here (%v), so write calls cannot be counted", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "syscw: "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatal("no syscw in /proc/self/io")
	return 0
}

func blob(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(i*7 + j%251)
	}
	return b
}

// insertBlobs commits n blobs of size bytes in one transaction and returns
// the write calls the commit made.
func insertBlobs(t *testing.T, db *sql.DB, from, n, size int) int {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < from+n; i++ {
		if _, err := tx.Exec("INSERT INTO b (id, v) VALUES (?, ?)", i, blob(i, size)); err != nil {
			t.Fatal(err)
		}
	}
	before := writeCalls(t)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return writeCalls(t) - before
}

// Not parallel: it counts the whole process's write calls.
func TestGroupCommitWritesTheWALInFewCalls(t *testing.T) {
	plain := insertBlobs(t, openRaw(t, filepath.Join(t.TempDir(), "plain.db"), false), 0, 40, 4000)
	ours := insertBlobs(t, openRaw(t, filepath.Join(t.TempDir(), "ours.db"), true), 0, 40, 4000)
	// 40 rows of 4000 bytes are about 45 pages: SQLite's own VFS writes
	// each as a frame header and a page.
	if plain < 80 {
		t.Fatalf("the default VFS made %d write calls for about 45 WAL frames; the test no longer measures what it should", plain)
	}
	if ours > 2 {
		t.Errorf("the commit made %d write calls (the default VFS: %d), want at most 2", ours, plain)
	}
}

// What a commit leaves in the files is the whole transaction: a copy of
// the database and its WAL, taken the moment Commit returns (as a power
// cut would leave them), opened by plain SQLite, holds every row.
func TestCommittedTransactionIsInTheFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := openRaw(t, filepath.Join(dir, "q.db"), true)
	insertBlobs(t, db, 0, 30, 4000)
	// A second transaction much larger than the page cache: SQLite spills
	// frames to the WAL before the commit and reads some of them back.
	if _, err := db.Exec("PRAGMA cache_size = 10"); err != nil {
		t.Fatal(err)
	}
	insertBlobs(t, db, 30, 300, 9000)

	copyDir := t.TempDir()
	for _, name := range []string{"q.db", "q.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(copyDir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, d := range map[string]*sql.DB{"the VFS": db, "a copy, with SQLite's own VFS": openRaw(t, filepath.Join(copyDir, "q.db"), false)} {
		rows, err := d.Query("SELECT id, v FROM b ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var id int
			var v []byte
			if err := rows.Scan(&id, &v); err != nil {
				t.Fatal(err)
			}
			size := 4000
			if id >= 30 {
				size = 9000
			}
			if id != n || sha256.Sum256(v) != sha256.Sum256(blob(id, size)) {
				t.Fatalf("%s: row %d is id %d with %d bytes, not what was written", name, n, id, len(v))
			}
			n++
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if n != 330 {
			t.Errorf("%s holds %d rows, want 330", name, n)
		}
	}
}

// fakeWAL is a WAL file object as the VFS sees it, around fd, for testing
// the buffer by itself.
func fakeWAL(t *testing.T, fd int) (tls *libc.TLS, pFile uintptr) {
	t.Helper()
	if !registerVFS() {
		t.Fatal("the postroom VFS could not be registered")
	}
	tls = libc.NewTLS()
	pFile = libc.Xcalloc(tls, 1, sqlite3.Tsize_t(unixSize+unsafe.Sizeof(vfsFile{})))
	(*sqlite3.TunixFile)(cptr(pFile)).Fh = int32(fd)
	t.Cleanup(func() {
		if w := ext(pFile); w.buf != 0 {
			libc.Xfree(tls, w.buf)
		}
		libc.Xfree(tls, pFile)
		tls.Close()
	})
	return tls, pFile
}

// cbytes copies b to C memory, as SQLite hands buffers to a VFS.
func cbytes(t *testing.T, tls *libc.TLS, b []byte) uintptr {
	p := libc.Xmalloc(tls, sqlite3.Tsize_t(len(b)))
	copy(unsafe.Slice((*byte)(cptr(p)), len(b)), b)
	t.Cleanup(func() { libc.Xfree(tls, p) })
	return p
}

func frameHeader(commitSize uint32) []byte {
	h := make([]byte, walFrameHeader)
	binary.BigEndian.PutUint32(h[0:], 7)
	binary.BigEndian.PutUint32(h[4:], commitSize)
	return h
}

func TestWALBufferIsWrittenWhenACommitFrameIsComplete(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "x-wal"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tls, pFile := fakeWAL(t, int(f.Fd()))
	page := bytes.Repeat([]byte("p"), 1024)
	var want []byte
	write := func(b []byte, off int64) {
		t.Helper()
		if rc := walWrite(tls, pFile, cbytes(t, tls, b), int32(len(b)), off); rc != sqlite3.SQLITE_OK {
			t.Fatalf("write at %d: rc %d", off, rc)
		}
		if end := int(off) + len(b); end > len(want) {
			want = append(want, make([]byte, end-len(want))...)
		}
		copy(want[off:], b)
	}
	onDisk := func() []byte {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	write(bytes.Repeat([]byte("h"), 32), 0) // the WAL header
	write(frameHeader(0), 32)
	write(page, 56)
	write(frameHeader(0), 56+1024)
	write(page, 56+1024+24)
	if got := onDisk(); len(got) != 0 {
		t.Fatalf("%d bytes written before the commit frame; want them held", len(got))
	}
	write(frameHeader(3), 2*(1024+24)+32)
	if got := onDisk(); len(got) != 0 {
		t.Fatalf("%d bytes written after the commit frame's header alone", len(got))
	}
	write(page, 2*(1024+24)+32+24)
	if got := onDisk(); !bytes.Equal(got, want) {
		t.Fatalf("after the commit frame the file holds %d bytes, want the %d written", len(got), len(want))
	}

	// A write elsewhere (SQLite overwriting a frame of this transaction)
	// first writes out what is held, so the later write wins.
	write(frameHeader(0), int64(len(want)))
	write(bytes.Repeat([]byte("q"), 1024), int64(len(want)))
	write(bytes.Repeat([]byte("r"), 100), 32) // not contiguous
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		t.Fatalf("flush: rc %d", rc)
	}
	if got := onDisk(); !bytes.Equal(got, want) {
		t.Fatal("after an out-of-order write the file is not what was written, in order")
	}
}

func TestWALBufferReportsAFullDisk(t *testing.T) {
	t.Parallel()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("skipped: no /dev/full to stand for a full disk (%v)", err)
	}
	defer full.Close()
	tls, pFile := fakeWAL(t, int(full.Fd()))
	h := frameHeader(1)
	if rc := walWrite(tls, pFile, cbytes(t, tls, h), int32(len(h)), 32); rc != sqlite3.SQLITE_OK {
		t.Fatalf("a held write failed: rc %d", rc)
	}
	page := make([]byte, 512)
	if rc := walWrite(tls, pFile, cbytes(t, tls, page), int32(len(page)), 56); rc != sqlite3.SQLITE_FULL {
		t.Errorf("the commit frame's write on a full disk: rc %d, want SQLITE_FULL (%d)", rc, sqlite3.SQLITE_FULL)
	}
	if w := ext(pFile); w.n != 0 {
		t.Errorf("%d bytes still held after the failed write", w.n)
	}
	// /dev/full cannot be synced either: that is an I/O error, not success.
	if rc := walSync(tls, pFile, sqlite3.SQLITE_SYNC_NORMAL); rc != sqlite3.SQLITE_IOERR_FSYNC {
		t.Errorf("sync: rc %d, want SQLITE_IOERR_FSYNC", rc)
	}
}

// The store names the VFS when it opens its database (the tests above
// show what naming it does).
func TestStoreOpensItsDatabaseThroughTheVFS(t *testing.T) {
	t.Parallel()
	if s := openTest(t); s.vfs != vfsName {
		t.Errorf("the store opened its database with VFS %q, want %q", s.vfs, vfsName)
	}
}

func exec(t *testing.T, db interface {
	Exec(string, ...any) (sql.Result, error)
}, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// checkCopy copies the database and its WAL as they are on disk, opens the
// copy with SQLite's own VFS and returns its integrity check and row ids.
func checkCopy(t *testing.T, dir, name string) (integrity string, ids []int) {
	t.Helper()
	copyDir := t.TempDir()
	for _, f := range []string{name, name + "-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(copyDir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	db := openRaw(t, filepath.Join(copyDir, name), false)
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	rows, err := db.Query("SELECT id FROM b ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return integrity, ids
}

// A transaction that spilled frames into the WAL buffer and rolled back
// must not write them later over frames another connection committed in
// the meantime (a review found that it did, and the database was damaged).
// Whether frames are still held at the rollback depends on how far the
// transaction got, so it is tried at every length up to 40 rows.
func TestRolledBackSpillNeverOverwritesAnotherCommit(t *testing.T) {
	t.Parallel()
	for rows := 1; rows <= 40; rows++ {
		dir := t.TempDir()
		path := filepath.Join(dir, "q.db")
		a, b := openRaw(t, path, true), openRaw(t, path, true)
		exec(t, a, "PRAGMA cache_size = 10") // pages: SQLite spills to the WAL early
		insertBlobs(t, a, 5000, 20, 3000)
		exec(t, a, "DELETE FROM b")
		exec(t, a, "PRAGMA wal_checkpoint(TRUNCATE)") // both write from the WAL's start
		tx, err := a.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := range rows {
			exec(t, tx, "INSERT INTO b (id, v) VALUES (?, ?)", 1000+i, blob(i, 3000))
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		insertBlobs(t, b, 0, 3, 3000) // at the WAL offsets the spill used
		var n int
		if err := a.QueryRow("SELECT count(*) FROM b").Scan(&n); err != nil {
			t.Fatalf("after %d rows rolled back: %v", rows, err)
		}
		if integrity, ids := checkCopy(t, dir, "q.db"); integrity != "ok" || len(ids) != 3 {
			t.Fatalf("after %d rows rolled back, on disk: integrity %q, rows %v; want ok and the 3 committed", rows, integrity, ids)
		}
		a.Close()
		b.Close()
	}
}

// Below synchronous=FULL nothing syncs the WAL at a commit, so what SQLite
// writes after the commit frame (the checksums it rewrites when a
// transaction overwrote its own frames) must be in the file by the time
// the commit is published.
func TestCommitIsInTheFileWithSynchronousNormal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := openRaw(t, filepath.Join(dir, "q.db"), true)
	exec(t, db, "PRAGMA synchronous = NORMAL")
	exec(t, db, "PRAGMA cache_size = 10")
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		exec(t, tx, "INSERT INTO b (id, v) VALUES (?, ?)", i, blob(i, 3000))
	}
	exec(t, tx, "UPDATE b SET v = zeroblob(3000)") // overwrites spilled frames
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if integrity, ids := checkCopy(t, dir, "q.db"); integrity != "ok" || len(ids) != 60 {
		t.Errorf("on disk: integrity %q, %d rows; want ok and 60", integrity, len(ids))
	}
}
