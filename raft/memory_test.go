package raft

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// tableCodecs reads from a closed Badger's manifest how many tables each
// compression codec wrote.
func tableCodecs(t *testing.T, opts badger.Options) map[options.CompressionType]int {
	t.Helper()
	f, err := os.Open(filepath.Join(opts.Dir, badger.ManifestFilename))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, _, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	if err != nil {
		t.Fatal(err)
	}
	codecs := map[options.CompressionType]int{}
	for _, tm := range m.Tables {
		codecs[tm.Compression]++
	}
	return codecs
}

func writeRecords(t *testing.T, db *badger.DB, from, to int) {
	t.Helper()
	wb := db.NewWriteBatch()
	for i := from; i < to; i++ {
		if err := wb.Set(recordKey(i), recordValue(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
}

func recordKey(i int) []byte { return fmt.Appendf(nil, "n/user-%03d/%08d", i%50, i) }

func recordValue(i int) []byte {
	return fmt.Appendf(nil, `{"id":"%016x","appNotificationId":"build-%d","payload":{"rawContent":"%d","visualContent":{"title":"Build %d finished","body":"All %d tests passed."}}}`, i*7919, i, i, i, i%1500)
}

// checkRecords reads every record written so far and compares it.
func checkRecords(t *testing.T, db *badger.DB, n int) {
	t.Helper()
	err := db.View(func(txn *badger.Txn) error {
		for i := range n {
			it, err := txn.Get(recordKey(i))
			if err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
			v, err := it.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
			if string(v) != string(recordValue(i)) {
				return fmt.Errorf("record %d reads %q", i, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSnappyTablesStayReadableUnderZSTD: data directories written before
// the switch to ZSTD hold Snappy tables. Badger opened with the new
// options must read them, write new tables in ZSTD beside them, and read
// both after compactions have merged them.
func TestSnappyTablesStayReadableUnderZSTD(t *testing.T) {
	dir := t.TempDir()
	opts := badgerOptions(dir, 0)
	if opts.Compression != options.ZSTD {
		t.Fatalf("Badger's compression is %v, want ZSTD", opts.Compression)
	}

	old, err := badger.Open(opts.WithCompression(options.Snappy))
	if err != nil {
		t.Fatal(err)
	}
	writeRecords(t, old, 0, 3000)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if c := tableCodecs(t, opts); c[options.Snappy] == 0 || c[options.ZSTD] != 0 {
		t.Fatalf("tables before the switch by codec: %v, want Snappy only", c)
	}

	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, db, 3000)
	writeRecords(t, db, 3000, 6000)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if c := tableCodecs(t, opts); c[options.ZSTD] == 0 {
		t.Fatalf("tables after the switch by codec: %v, want ZSTD ones", c)
	}

	db, err = badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkRecords(t, db, 6000)
	// Compactions rewrite the Snappy tables in ZSTD.
	if err := db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, db, 6000)
}

func TestGoMemoryLimitFollowsTheBudget(t *testing.T) {
	for _, c := range []struct {
		budget uint64
		want   int64
	}{
		{0, 2*DefaultMemory + 24<<20},
		{DefaultMemory, 152 << 20},
		{16 << 20, 56 << 20},
		{1 << 30, 2<<30 + 24<<20},
	} {
		if got := GoMemoryLimit(c.budget); got != c.want {
			t.Errorf("GoMemoryLimit(%d MiB) = %d MiB, want %d MiB", c.budget>>20, got>>20, c.want>>20)
		}
	}
}

// A smaller budget means smaller memtables and smaller tables, whose
// builders are most of the heap under a write load; the default keeps
// 512 KiB tables.
func TestMemoryBudgetSizesMemtablesAndTables(t *testing.T) {
	for _, c := range []struct {
		budget          uint64
		memtable, table int64
	}{
		{0, 8 << 20, 512 << 10},
		{16 << 20, 4 << 20, 256 << 10},
		{32 << 20, 4 << 20, 256 << 10},
		{128 << 20, 16 << 20, 1 << 20},
	} {
		o := badgerOptions(t.TempDir(), c.budget)
		if o.MemTableSize != c.memtable || o.BaseTableSize != c.table {
			t.Errorf("budget %d MiB: memtables of %d KiB and tables of %d KiB, want %d and %d",
				c.budget>>20, o.MemTableSize>>10, o.BaseTableSize>>10, c.memtable>>10, c.table>>10)
		}
	}
}

// Tables written with Badger's 4 KiB blocks, as nodes wrote them before,
// are read and compacted by a node that builds 16 KiB ones.
func TestSmallBlockTablesStayReadable(t *testing.T) {
	dir := t.TempDir()
	opts := badgerOptions(dir, 0)
	if opts.BlockSize != 16<<10 {
		t.Fatalf("Badger's block size is %d, want 16 KiB", opts.BlockSize)
	}
	old, err := badger.Open(opts.WithBlockSize(4 << 10))
	if err != nil {
		t.Fatal(err)
	}
	writeRecords(t, old, 0, 3000)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkRecords(t, db, 3000)
	writeRecords(t, db, 3000, 6000)
	if err := db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, db, 6000)
}

// The feed's view cache takes a quarter of --memory, in a Store as opened.
func TestViewCacheFollowsTheMemoryBudget(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), NodeID: "n1", RaftAddr: freeAddr(t), Bootstrap: true,
		Memory: 32 << 20, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.cache.views.limit; got != 8<<20 {
		t.Fatalf("view cache of %d bytes for a 32 MiB budget, want 8 MiB", got)
	}
	if got := viewCacheBytes(0); got != DefaultMemory/4 {
		t.Fatalf("view cache of %d bytes by default, want %d", got, DefaultMemory/4)
	}
}
