//go:build unix

package disk

import "golang.org/x/sys/unix"

func usage(path string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Usage{}, err
	}
	bs := int64(st.Bsize)
	return Usage{Free: int64(st.Bavail) * bs, Size: int64(st.Blocks) * bs}, nil
}
