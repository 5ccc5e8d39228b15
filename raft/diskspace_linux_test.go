package raft

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A memtable log that Badger made with truncate is given real blocks, so
// that writing it through its mapping cannot fault whatever happens to the
// disk; but not out of a budget it does not fit in, and value logs are
// left alone.
func TestBackBadgerFiles(t *testing.T) {
	dir := t.TempDir()
	sparse := func(name string) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(8 << 20); err != nil {
			t.Fatal(err)
		}
		return p
	}
	allocated := func(p string) int64 {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	mem, vlog := sparse("00001.mem"), sparse("000001.vlog")
	if a := allocated(mem); a >= 8<<20 {
		t.Skipf("this filesystem does not make sparse files (%d bytes allocated)", a)
	}

	if err := backBadgerFiles(dir, 4<<20); err != nil {
		t.Fatal(err)
	}
	if a := allocated(mem); a >= 8<<20 {
		t.Fatalf("an 8 MiB log was backed out of a 4 MiB budget: %d bytes allocated", a)
	}
	if err := backBadgerFiles(dir, 64<<20); err != nil {
		t.Fatal(err)
	}
	if a := allocated(mem); a < 8<<20 {
		t.Fatalf("the memtable log has %d bytes of blocks, want 8 MiB", a)
	}
	if fi, err := os.Stat(mem); err != nil || fi.Size() != 8<<20 {
		t.Fatalf("backing changed the file: %v, %v", fi, err)
	}
	if a := allocated(vlog); a >= 8<<20 {
		t.Fatalf("the value log was backed: %d bytes", a)
	}
}
