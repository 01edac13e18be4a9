package store

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cacheFilesDir is the directory, inside the store's, that holds large
// cache chunks as files: <cacheFilesDir>/<2 hex digits>/<body>.<idx>.
//
// Chunks of fileChunkMin bytes and more are files rather than badger
// values because badger's value log stalls every writer while it syncs a
// full file and rotates to the next one, and its garbage collection copies
// the live values of a file through the same write path: under a steady
// stream of 100 KB misses the writes behind a rotation waited 33 ms every
// 164 misses, and a cache at its byte budget, deleting as it fills, saw
// 300–550 ms at p99 (docs/CACHE.md). A file is written through the page
// cache and removed with one unlink, which is how nginx keeps its cache.
const cacheFilesDir = "cache"

// fileChunkMin is the size from which a chunk is a file: badger's value
// threshold (WithValueThreshold in Open). Smaller chunks live in the LSM
// tree, where a 1 KB body costs no inode and its entry and body commit
// in one write.
const fileChunkMin = 64 << 10

// Cache chunk files are not synced: the cache may lose what it wrote last
// in a power cut, as it may lose unsynced entries. An entry whose chunk
// file came back short or missing is found when it is read (the cache
// checks each chunk's length against the entry's size), dropped and
// fetched again.

// chunkName returns the file name of chunk idx of body. Body names the
// cache makes are base32 text and are used as they are; any other name is
// hex-encoded behind a '~', so no name can leave its directory or hold
// the '.' before the index.
func chunkName(body string, idx int) string {
	return encodeBodyName(body) + "." + strconv.Itoa(idx)
}

func encodeBodyName(body string) string {
	if body != "" && strings.IndexFunc(body, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0 {
		return body
	}
	return "~" + hex.EncodeToString([]byte(body))
}

// bodyDir spreads bodies over 256 directories, so none grows to hold
// every file of a large cache.
func (c *CacheStore) bodyDir(body string) string {
	h := fnv.New32a()
	h.Write([]byte(body))
	return filepath.Join(c.s.dir, cacheFilesDir, fmt.Sprintf("%02x", h.Sum32()&0xff))
}

func (c *CacheStore) chunkPath(body string, idx int) string {
	return filepath.Join(c.bodyDir(body), chunkName(body, idx))
}

// writeChunkFile writes p as chunk idx of body, creating its directory on
// first use.
func (c *CacheStore) writeChunkFile(body string, idx int, p []byte) error {
	path := c.chunkPath(body, idx)
	err := writeFile(path, p)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		err = writeFile(path, p)
	}
	return err
}

func writeFile(path string, p []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(p)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ChunkFile opens chunk idx of body if it is a file, for the cache to send
// with sendfile(2), and returns nil and no error if it is not: a badger
// value, or absent. The caller closes the file.
func (c *CacheStore) ChunkFile(body string, idx int) (*os.File, error) {
	f, err := os.Open(c.chunkPath(body, idx))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open cache chunk %s/%d: %w", body, idx, err)
	}
	return f, nil
}

// readChunkFile appends chunk idx of body to buf[:0]; it returns
// fs.ErrNotExist when there is no such file.
func (c *CacheStore) readChunkFile(body string, idx int, buf []byte) ([]byte, error) {
	f, err := os.Open(c.chunkPath(body, idx))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	n := int(fi.Size())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	m, err := io.ReadFull(f, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil // shrunk since the stat: the cache sees a short chunk
	}
	return buf[:m], err
}

// removeChunkFiles removes the chunk files of body. Chunks are written in
// order from 0, so the first missing index ends them.
func (c *CacheStore) removeChunkFiles(body string) error {
	for idx := 0; ; idx++ {
		err := os.Remove(c.chunkPath(body, idx))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// sweepChunkFiles removes chunk files whose body is not in live (encoded
// names), and anything else in the cache's directory that is not a chunk.
func (c *CacheStore) sweepChunkFiles(live map[string]bool) error {
	root := filepath.Join(c.s.dir, cacheFilesDir)
	dirs, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join(root, d.Name())
		files, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, f := range files {
			name := f.Name()
			if i := strings.LastIndexByte(name, '.'); i > 0 && live[name[:i]] {
				continue
			}
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}
