//go:build unix

package wasmhost

import (
	"io/fs"
	"syscall"
)

// inode returns a file's inode number.
func inode(fi fs.FileInfo) uint64 {
	return uint64(fi.Sys().(*syscall.Stat_t).Ino)
}
