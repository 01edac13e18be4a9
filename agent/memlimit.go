package agent

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// DefaultMemoryShare is the part of the memory available to the agent
// that it sets as its soft memory limit when the config sets none. With
// gc_percent = 400 the heap may grow to five times what is live between
// collections; under a stream of cache misses much of what is live is
// the buffers of badger's compactions, and 25 s of unique 1 KB misses
// took the cache's process past 1.2 GB (docs/CACHE.md). The limit makes the
// collector run before that reaches the OOM killer. The quarter left over
// is for what the limit does not count: compiled wasm code, badger's
// memory-mapped files, other processes.
const DefaultMemoryShare = 0.75

// defaultMemoryLimit is DefaultMemoryShare of the memory available to
// this process, in whole MiB, or 0 when that is unknown.
func defaultMemoryLimit() int64 {
	return int64(float64(memoryAvailable("/"))*DefaultMemoryShare) &^ (1<<20 - 1)
}

// memoryAvailable is the memory this process may use, in bytes: the
// smallest memory limit of its cgroup and those above it (cgroup v2, or
// v1's memory controller), and of the machine's total memory; 0 when
// none can be read. root prefixes /proc and /sys, for tests.
func memoryAvailable(root string) int64 {
	avail := memTotal(filepath.Join(root, "proc/meminfo"))
	if l := cgroupLimit(root); l > 0 && (avail == 0 || l < avail) {
		avail = l
	}
	return avail
}

// memTotal reads MemTotal from a /proc/meminfo file; 0 when absent.
func memTotal(file string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// unlimited is the least value that cgroup v1 uses for "no limit" (it
// writes the largest page count in bytes, just under 2^63).
const unlimited = 1 << 62

// cgroupLimit is the smallest memory limit on the way from this process's
// cgroup up to the root of the hierarchy, as /proc/self/cgroup names it;
// 0 when there is none.
func cgroupLimit(root string) int64 {
	b, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0
	}
	var limit int64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-ID:controllers:path; v2 is "0::path".
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var base, file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			base, file = "sys/fs/cgroup", "memory.max"
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			base, file = "sys/fs/cgroup/memory", "memory.limit_in_bytes"
		default:
			continue
		}
		for dir := path.Clean("/" + parts[2]); ; dir = path.Dir(dir) {
			if l := readLimit(filepath.Join(root, base, dir, file)); l > 0 && (limit == 0 || l < limit) {
				limit = l
			}
			if dir == "/" {
				break
			}
		}
	}
	return limit
}

// readLimit reads a cgroup memory limit file: 0 for "max", an absent
// file or cgroup v1's "unlimited".
func readLimit(file string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v <= 0 || v >= unlimited {
		return 0
	}
	return v
}
