//go:build !linux || !(amd64 || arm64 || loong64 || ppc64le || riscv64 || s390x)

package storage

// vfsName is unused here: the "postroom" VFS (walvfs_linux.go) is written
// against SQLite's unix VFS on 64-bit Linux (its own pwrite takes the
// offset in one register). Elsewhere Open keeps SQLite's default.
const vfsName = ""

func registerVFS() bool { return false }
