package raft

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// backBadgerFiles gives each of Badger's memtable logs (*.mem) real blocks
// for its whole length, spending at most budget bytes. Badger makes these
// files with truncate and writes them through a memory mapping, so the
// filesystem hands out a block only when a page is first touched; on a
// disk that filled in the meantime that touch is a SIGBUS. A file that is
// backed when it is new can be written to its end whatever happens to the
// disk afterwards. The value logs are left sparse: commands are far below
// the value threshold, so Badger writes only their headers.
func backBadgerFiles(dir string, budget uint64) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".mem") || !e.Type().IsRegular() {
			continue
		}
		spent, err := backFile(filepath.Join(dir, e.Name()), budget)
		budget -= spent
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// backFile allocates the holes of path if they fit in budget, and says how
// many bytes it may have taken.
func backFile(path string, budget uint64) (uint64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	allocated := uint64(st.Blocks) * 512
	if st.Size <= 0 || allocated >= uint64(st.Size) {
		return 0, nil
	}
	missing := uint64(st.Size) - allocated
	if missing > budget {
		return 0, nil
	}
	// Mode 0 over a range inside the file allocates without changing
	// its size, so Badger sees the same file.
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, st.Size); err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) {
			return 0, nil
		}
		return missing, &os.PathError{Op: "fallocate", Path: path, Err: err}
	}
	return missing, nil
}
