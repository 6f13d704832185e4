//go:build !linux

package storage

// vfsName is unused here: the "postroom" VFS (walvfs_linux.go) is written
// against SQLite's unix VFS on Linux. Elsewhere Open keeps SQLite's default.
const vfsName = ""

func registerVFS() bool { return false }
