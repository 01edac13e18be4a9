package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMemoryAvailable reads fake /proc and /sys trees: the smallest of
// the machine's memory and the limits of the process's cgroup and its
// ancestors, for cgroup v2 and v1, with "max", v1's "unlimited" and
// missing files ignored.
func TestMemoryAvailable(t *testing.T) {
	const meminfo = "MemTotal:        8000000 kB\nMemFree:         1000 kB\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"nothing readable", nil, 0},
		{"machine only", map[string]string{"proc/meminfo": meminfo}, 8000000 << 10},
		{"v2, no limit", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "0::/system.slice/tern.service\n",
			"sys/fs/cgroup/system.slice/tern.service/memory.max": "max\n",
		}, 8000000 << 10},
		{"v2, own limit", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "0::/system.slice/tern.service\n",
			"sys/fs/cgroup/system.slice/tern.service/memory.max": "1073741824\n",
		}, 1 << 30},
		{"v2, a parent's limit is lower", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "0::/system.slice/tern.service\n",
			"sys/fs/cgroup/system.slice/tern.service/memory.max": "1073741824\n",
			"sys/fs/cgroup/system.slice/memory.max":              "536870912\n",
		}, 512 << 20},
		{"v2 in a container namespace", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "268435456\n",
		}, 256 << 20},
		{"v1", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "12:cpu,cpuacct:/docker/abc\n5:memory:/docker/abc\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "2147483648\n",
		}, 2 << 30},
		{"v1 unlimited", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "5:memory:/docker/abc\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
		}, 8000000 << 10},
		{"limit above the machine's memory", map[string]string{
			"proc/meminfo":               meminfo,
			"proc/self/cgroup":           "0::/a\n",
			"sys/fs/cgroup/a/memory.max": "99999999999999\n",
		}, 8000000 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tc.files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := memoryAvailable(root); got != tc.want {
				t.Errorf("memoryAvailable = %d, want %d", got, tc.want)
			}
		})
	}
}
