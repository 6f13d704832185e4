//go:build linux && (amd64 || arm64 || loong64 || ppc64le || riscv64 || s390x)

package storage

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// The "postroom" VFS: SQLite's own unix VFS, with two changes to how the
// write-ahead log is written and synced. Everything else goes to "unix" as
// it is; of a main database file only the locks on its shared-memory index
// are looked at, to know when its WAL must be written out (below).
//
//  1. SQLite writes each WAL frame as two pwrite calls, its 24-byte header
//     and then the page, so a group commit of 90 pages made 180 system
//     calls. The WAL file here gathers writes that continue one another in
//     a buffer and writes them with one pwrite. The buffer is written out
//     before anything that could look at the file (a read, its size, a
//     truncation, a file control, closing) and before the write that
//     completes a commit frame returns, so a commit's frames are all in the
//     file before SQLite syncs it or tells a reader about them. What a
//     transaction that spilled out of the page cache and then rolled back
//     left in the buffer is written before the connection gives up the
//     WAL's write lock (xShmLock on its database file), so it can never
//     land on frames another connection writes after it; anything still
//     held when SQLite publishes a commit in the WAL index (xShmBarrier)
//     is written first too, which matters only below synchronous=FULL.
//     A WAL whose file does not report powersafe overwrite (SQLite then
//     pads and syncs in the middle of a frame) is left to "unix".
//
//  2. The WAL's syncs, and the writes of the buffer, are system calls of
//     our own. While the last one took less than fastCall, they are made
//     without telling Go's scheduler: the runtime would otherwise hand the
//     writer's P to another thread 20 µs into an fdatasync and, having had
//     to, poll every 20 µs for the next milliseconds. On the relay's load
//     test that polling and the hand-offs were a tenth of its CPU. The
//     price is that a P (and a garbage collection waiting for every P)
//     waits for the call; a call slower than fastCall switches to the
//     ordinary, scheduler-aware one, so a slow disk holds a P at most once
//     for long. fdatasync on this machine's disk takes 0.3-6 ms under load.
//
// The database file's own syncs (at checkpoints) and the one-time sync of
// the directory after the WAL is created stay with "unix".
//
// The structures SQLite reads (the VFS, the method tables, the buffers) are
// allocated with the C allocator of modernc.org/libc, never on the Go heap:
// SQLite keeps them as plain addresses, where Go's garbage collector and its
// pointer checks (go test -race) must not see Go memory.

const (
	// vfsName is the VFS that Open asks for in its DSN.
	vfsName = "postroom"
	// walBufSize bounds what one WAL file holds back: a group commit of a
	// dozen 4 KiB messages is about 90 frames, 370 KiB.
	walBufSize = 512 << 10
	// fastCall: a WAL write or sync quicker than this lets the next one
	// skip the scheduler. With 2 ms, half the syncs under load went the
	// ordinary way, and each hand-off restarted the runtime's polling.
	fastCall = 10 * time.Millisecond
)

// vfsFile is what the VFS appends to each file "unix" opens (SQLite sizes
// file objects by the VFS's szOsFile). WAL files and main database files
// use it; SQLite calls a file's methods from one connection at a time, so
// a connection's database file and WAL, linked here, are never used at
// once from two goroutines.
type vfsFile struct {
	unixIO uintptr // the io methods "unix" gave the file
	link   uintptr // a WAL's database file; a database file's open WAL
	buf    uintptr // WAL: walBufSize bytes of C memory, allocated at the first write
	start  int64   // WAL: file offset of buf's first byte
	n      int64   // WAL: bytes held in buf
	commit int32   // WAL: the frame header just written starts a commit frame
	failed int32   // WAL: a write at a barrier failed; the next sync says so
}

var (
	vfsOnce sync.Once
	vfsOK   bool
	// unixSize is szOsFile of "unix": where a vfsFile starts.
	unixSize uintptr
	// ourMethods maps a method table "unix" gives a file, and what the
	// file is, to ours: a copy of it with the methods below in place.
	ourMethodsMu sync.Mutex
	ourMethods   = map[methodsKey]uintptr{}
	dbTables     = map[uintptr]bool{} // our tables for database files
)

type methodsKey struct {
	unixIO uintptr
	wal    bool
}

// registerVFS registers the VFS once and reports whether Open may name it.
// Where it cannot be registered, Open uses SQLite's default VFS instead:
// slower, as durable.
func registerVFS() bool {
	vfsOnce.Do(func() {
		tls := libc.NewTLS()
		defer tls.Close()
		name, err := libc.CString("unix")
		if err != nil {
			return
		}
		unix := sqlite3.Xsqlite3_vfs_find(tls, name)
		libc.Xfree(tls, name)
		if unix == 0 {
			return
		}
		u := (*sqlite3.Tsqlite3_vfs)(cptr(unix))
		if uintptr(u.FszOsFile) < unsafe.Sizeof(sqlite3.TunixFile{}) {
			return // not the unix VFS this file was written against
		}
		unixSize = (uintptr(u.FszOsFile) + 7) &^ 7
		v := libc.Xcalloc(tls, 1, sqlite3.Tsize_t(unsafe.Sizeof(sqlite3.Tsqlite3_vfs{})))
		zName, err := libc.CString(vfsName)
		if v == 0 || err != nil {
			return
		}
		p := (*sqlite3.Tsqlite3_vfs)(cptr(v))
		*p = *u
		p.FpNext = 0
		p.FzName = zName
		p.FszOsFile = int32(unixSize + unsafe.Sizeof(vfsFile{}))
		p.FpAppData = unix
		*(*func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&p.FxOpen)) = vfsOpen
		vfsOK = sqlite3.Xsqlite3_vfs_register(tls, v, 0) == sqlite3.SQLITE_OK
	})
	return vfsOK
}

// vfsOpen opens the file with "unix" and, for a main database file or its
// WAL, puts our methods in front of its own.
func vfsOpen(tls *libc.TLS, pVfs, zName, pFile uintptr, flags int32, pOutFlags uintptr) int32 {
	unix := (*sqlite3.Tsqlite3_vfs)(cptr(pVfs)).FpAppData
	open := *(*func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&(*sqlite3.Tsqlite3_vfs)(cptr(unix)).FxOpen))
	rc := open(tls, unix, zName, pFile, flags, pOutFlags)
	base := (*sqlite3.Tsqlite3_file)(cptr(pFile))
	if rc != sqlite3.SQLITE_OK || base.FpMethods == 0 {
		return rc
	}
	unixIO := base.FpMethods
	switch {
	case flags&sqlite3.SQLITE_OPEN_MAIN_DB != 0:
		if m := methodsFor(tls, unixIO, false); m != 0 {
			*ext(pFile) = vfsFile{unixIO: unixIO}
			base.FpMethods = m
		}
	case flags&sqlite3.SQLITE_OPEN_WAL != 0:
		// Without its database file's locks to write the buffer at, or
		// without powersafe overwrite, the WAL is written the ordinary way.
		db := sqlite3.Xsqlite3_database_file_object(tls, zName)
		if db == 0 || !isOurDB(db) || !powersafe(tls, pFile, unixIO) {
			return rc
		}
		if m := methodsFor(tls, unixIO, true); m != 0 {
			*ext(pFile) = vfsFile{unixIO: unixIO, link: db}
			ext(db).link = pFile
			base.FpMethods = m
		}
	}
	return rc // a file without a table of ours (or out of memory): "unix" as it is
}

func isOurDB(pFile uintptr) bool {
	ourMethodsMu.Lock()
	defer ourMethodsMu.Unlock()
	return dbTables[(*sqlite3.Tsqlite3_file)(cptr(pFile)).FpMethods]
}

func powersafe(tls *libc.TLS, pFile, unixIO uintptr) bool {
	f := *(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&(*sqlite3.Tsqlite3_io_methods)(cptr(unixIO)).FxDeviceCharacteristics))
	return f(tls, pFile)&sqlite3.SQLITE_IOCAP_POWERSAFE_OVERWRITE != 0
}

// methodsFor returns our copy of the method table unixIO, for a WAL or for
// a database file, made on first use.
func methodsFor(tls *libc.TLS, unixIO uintptr, wal bool) uintptr {
	ourMethodsMu.Lock()
	defer ourMethodsMu.Unlock()
	key := methodsKey{unixIO, wal}
	if m, ok := ourMethods[key]; ok {
		return m
	}
	r := (*sqlite3.Tsqlite3_io_methods)(cptr(unixIO))
	if !wal && (r.FiVersion < 2 || r.FxShmLock == 0 || r.FxShmBarrier == 0) {
		return 0 // no shared memory: no WAL to look after
	}
	m := libc.Xcalloc(tls, 1, sqlite3.Tsize_t(unsafe.Sizeof(sqlite3.Tsqlite3_io_methods{})))
	if m == 0 {
		return 0
	}
	t := (*sqlite3.Tsqlite3_io_methods)(cptr(m))
	*t = *r
	if wal {
		*(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&t.FxClose)) = walClose
		*(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&t.FxRead)) = walRead
		*(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&t.FxWrite)) = walWrite
		*(*func(*libc.TLS, uintptr, int64) int32)(unsafe.Pointer(&t.FxTruncate)) = walTruncate
		*(*func(*libc.TLS, uintptr, int32) int32)(unsafe.Pointer(&t.FxSync)) = walSync
		*(*func(*libc.TLS, uintptr, uintptr) int32)(unsafe.Pointer(&t.FxFileSize)) = walFileSize
		*(*func(*libc.TLS, uintptr, int32, uintptr) int32)(unsafe.Pointer(&t.FxFileControl)) = walFileControl
	} else {
		*(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&t.FxClose)) = dbClose
		*(*func(*libc.TLS, uintptr, int32, int32, int32) int32)(unsafe.Pointer(&t.FxShmLock)) = dbShmLock
		*(*func(*libc.TLS, uintptr))(unsafe.Pointer(&t.FxShmBarrier)) = dbShmBarrier
		dbTables[m] = true
	}
	ourMethods[key] = m
	return m
}

// dbShmLock writes out the WAL buffer before the connection gives up the
// WAL's write lock: what is left there then is a rolled-back transaction's
// spill, which must reach the file before another writer can append.
func dbShmLock(tls *libc.TLS, pFile uintptr, ofst, n, flags int32) int32 {
	const walWriteLock = 0 // WAL_WRITE_LOCK in wal.c
	if w := ext(pFile).link; w != 0 && flags&sqlite3.SQLITE_SHM_UNLOCK != 0 && ofst <= walWriteLock && walWriteLock < ofst+n {
		flush(tls, w) // it only ever holds frames no commit includes
	}
	f := *(*func(*libc.TLS, uintptr, int32, int32, int32) int32)(unsafe.Pointer(&realMethods(ext(pFile)).FxShmLock))
	return f(tls, pFile, ofst, n, flags)
}

// dbShmBarrier writes out the WAL buffer before SQLite publishes a new WAL
// index header. Under synchronous=FULL the commit's sync has emptied it
// already; below, a failure here is reported by the WAL's next sync.
func dbShmBarrier(tls *libc.TLS, pFile uintptr) {
	if w := ext(pFile).link; w != 0 {
		if rc := flush(tls, w); rc != sqlite3.SQLITE_OK {
			ext(w).failed = rc
		}
	}
	f := *(*func(*libc.TLS, uintptr))(unsafe.Pointer(&realMethods(ext(pFile)).FxShmBarrier))
	f(tls, pFile)
}

func dbClose(tls *libc.TLS, pFile uintptr) int32 {
	e := ext(pFile)
	if e.link != 0 {
		ext(e.link).link = 0
		e.link = 0
	}
	f := *(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&realMethods(e).FxClose))
	return f(tls, pFile)
}

func ext(pFile uintptr) *vfsFile { return (*vfsFile)(cptr(pFile + unixSize)) }

func realMethods(w *vfsFile) *sqlite3.Tsqlite3_io_methods {
	return (*sqlite3.Tsqlite3_io_methods)(cptr(w.unixIO))
}

// realWrite is "unix"'s xWrite, for a write SQLite made that is not held:
// at most a frame header or a page (64 KiB), which its 17-bit length mask
// (see flush) lets through.
func realWrite(tls *libc.TLS, w *vfsFile, pFile, buf uintptr, n int32, off int64) int32 {
	f := *(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&realMethods(w).FxWrite))
	return f(tls, pFile, buf, n, off)
}

// flush writes out what the buffer holds. The buffer is empty afterwards
// even when the write failed: SQLite abandons the transaction, and frames
// past the last commit are never read.
//
// It calls pwrite itself: "unix" masks the length of each write to 17 bits
// (seekAndWriteFd), so it takes a write of exactly 128 KiB, or of a
// multiple, for a full disk.
func flush(tls *libc.TLS, pFile uintptr) int32 {
	w := ext(pFile)
	if w.n == 0 {
		return sqlite3.SQLITE_OK
	}
	b := unsafe.Slice((*byte)(cptr(w.buf)), w.n)
	off := w.start
	w.n = 0
	fd := int((*sqlite3.TunixFile)(cptr(pFile)).Fh)
	for len(b) > 0 {
		r, errno := writeSlow.call(syscall.SYS_PWRITE64, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off))
		n := int(r)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.ENOSPC || errno == syscall.EDQUOT || errno == 0 && n == 0:
			return sqlite3.SQLITE_FULL
		case errno != 0:
			return sqlite3.SQLITE_IOERR_WRITE
		}
		b, off = b[n:], off+int64(n)
	}
	return sqlite3.SQLITE_OK
}

func walWrite(tls *libc.TLS, pFile, zBuf uintptr, iAmt int32, iOfst int64) int32 {
	w := ext(pFile)
	if w.n > 0 && (iOfst != w.start+w.n || w.n+int64(iAmt) > walBufSize) {
		if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
			return rc
		}
	}
	if int64(iAmt) > walBufSize {
		return realWrite(tls, w, pFile, zBuf, iAmt, iOfst)
	}
	if w.buf == 0 {
		if w.buf = libc.Xmalloc(tls, walBufSize); w.buf == 0 {
			return realWrite(tls, w, pFile, zBuf, iAmt, iOfst)
		}
	}
	if w.n == 0 {
		w.start = iOfst
	}
	copy(unsafe.Slice((*byte)(cptr(w.buf)), walBufSize)[w.n:], unsafe.Slice((*byte)(cptr(zBuf)), iAmt))
	w.n += int64(iAmt)
	// A frame is a 24-byte header, then its page. Bytes 4-7 of the header
	// are the database size after a commit, and zero in every other frame.
	// Only frame headers are 24 bytes long (the WAL's own header is 32).
	if iAmt == walFrameHeader {
		h := unsafe.Slice((*byte)(cptr(zBuf)), walFrameHeader)
		w.commit = int32(h[4] | h[5] | h[6] | h[7])
		return sqlite3.SQLITE_OK
	}
	if w.commit != 0 {
		w.commit = 0
		return flush(tls, pFile)
	}
	return sqlite3.SQLITE_OK
}

const walFrameHeader = 24

func walRead(tls *libc.TLS, pFile, zBuf uintptr, iAmt int32, iOfst int64) int32 {
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	f := *(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&realMethods(ext(pFile)).FxRead))
	return f(tls, pFile, zBuf, iAmt, iOfst)
}

func walTruncate(tls *libc.TLS, pFile uintptr, size int64) int32 {
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	f := *(*func(*libc.TLS, uintptr, int64) int32)(unsafe.Pointer(&realMethods(ext(pFile)).FxTruncate))
	return f(tls, pFile, size)
}

func walFileSize(tls *libc.TLS, pFile, pSize uintptr) int32 {
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	f := *(*func(*libc.TLS, uintptr, uintptr) int32)(unsafe.Pointer(&realMethods(ext(pFile)).FxFileSize))
	return f(tls, pFile, pSize)
}

func walFileControl(tls *libc.TLS, pFile uintptr, op int32, pArg uintptr) int32 {
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	f := *(*func(*libc.TLS, uintptr, int32, uintptr) int32)(unsafe.Pointer(&realMethods(ext(pFile)).FxFileControl))
	return f(tls, pFile, op, pArg)
}

func walClose(tls *libc.TLS, pFile uintptr) int32 {
	rc := flush(tls, pFile)
	w := ext(pFile)
	if w.link != 0 {
		ext(w.link).link = 0
		w.link = 0
	}
	f := *(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&realMethods(w).FxClose))
	if rc2 := f(tls, pFile); rc == sqlite3.SQLITE_OK {
		rc = rc2
	}
	if w.buf != 0 {
		libc.Xfree(tls, w.buf)
		w.buf = 0
	}
	return rc
}

func walSync(tls *libc.TLS, pFile uintptr, flags int32) int32 {
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	if e := ext(pFile); e.failed != 0 {
		rc := e.failed
		e.failed = 0
		return rc
	}
	u := (*sqlite3.TunixFile)(cptr(pFile))
	if u.FctrlFlags&sqlite3.UNIXFILE_DIRSYNC != 0 {
		// The first sync of a new WAL also syncs its directory.
		f := *(*func(*libc.TLS, uintptr, int32) int32)(unsafe.Pointer(&realMethods(ext(pFile)).FxSync))
		return f(tls, pFile, flags)
	}
	if err := fdatasync(uintptr(u.Fh)); err != nil {
		return sqlite3.SQLITE_IOERR_FSYNC
	}
	return sqlite3.SQLITE_OK
}

// fdatasync syncs fd.
func fdatasync(fd uintptr) error {
	for {
		_, errno := syncSlow.call(syscall.SYS_FDATASYNC, fd, 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// A sysTimer makes a system call outside the scheduler's view while the
// last one it made took less than fastCall (see the top of this file).
type sysTimer struct{ slow atomic.Bool }

var syncSlow, writeSlow sysTimer

func (s *sysTimer) call(trap, a1, a2, a3, a4 uintptr) (uintptr, syscall.Errno) {
	t := time.Now()
	var r uintptr
	var errno syscall.Errno
	if s.slow.Load() {
		r, _, errno = syscall.Syscall6(trap, a1, a2, a3, a4, 0, 0)
	} else {
		r, _, errno = syscall.RawSyscall6(trap, a1, a2, a3, a4, 0, 0)
	}
	s.slow.Store(time.Since(t) >= fastCall)
	return r, errno
}

// cptr turns the address of C memory (allocated by modernc.org/libc, never
// by Go) into a pointer.
func cptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }
