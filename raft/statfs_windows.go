package raft

import (
	"fmt"
	"io/fs"

	"golang.org/x/sys/windows"
)

func statfs(dir string) (free, total uint64, err error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	// Free to the caller, not on the volume: quotas count.
	if err := windows.GetDiskFreeSpaceEx(p, &free, &total, nil); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return free, total, nil
}

func allocated(info fs.FileInfo) int64 { return info.Size() }
