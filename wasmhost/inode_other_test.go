//go:build !unix

package wasmhost

import "io/fs"

// inode returns 0: this platform's FileInfo has no inode number, and
// FuzzMountPath then checks what it reads and lists, not identities.
func inode(fs.FileInfo) uint64 { return 0 }
