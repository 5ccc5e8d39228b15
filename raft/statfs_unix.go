//go:build unix

package raft

import (
	"fmt"
	"io/fs"
	"syscall"
)

func statfs(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	// Bavail, not Bfree: blocks kept for root are not ours to count on.
	return uint64(st.Bavail) * uint64(st.Bsize), uint64(st.Blocks) * uint64(st.Bsize), nil
}

// allocated is what a file takes on disk: its blocks, fewer than its size
// says when it is sparse, more when space was reserved beyond its end.
func allocated(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return info.Size()
}
