package raft

import (
	"fmt"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// DefaultMemory is Badger's share of memory when none is set: sized for a
// small appliance. Badger's own defaults (64 MiB memtables, five of them, a
// 256 MiB block cache) can hold over half a gigabyte under a write load.
const DefaultMemory = 64 << 20

// minMemory keeps the memtables large enough that flushes stay rare.
const minMemory = 16 << 20

// ParseMemory reads --memory: Badger's budget for memtables and caches.
func ParseMemory(s string) (uint64, error) {
	if s == "" {
		return DefaultMemory, nil
	}
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("memory %q: %w", s, err)
	}
	if n < minMemory {
		return 0, fmt.Errorf("memory %q: at least 16MiB", s)
	}
	return n, nil
}

// badgerOptions splits budget bytes between Badger's memory users: two
// memtables (one filling, one flushing) of an eighth each, three eighths
// for the block cache (decompressed blocks of the tables that reads
// touch), and the rest left to the compactions' table builders and Go's
// heap, where the feed's view cache takes a quarter of the budget
// (viewCacheBytes). Both caches fill only as reads need them, so an idle
// node holds far less. There is no index cache: badger v4 caches the indexes and bloom
// filters of encrypted tables only, and reads those of plain tables, as
// Herald's are, in place from the mapped table files (table.fetchIndex),
// so a share of the budget given to one would hold nothing.
func badgerOptions(dir string, budget uint64) badger.Options {
	if budget == 0 {
		budget = DefaultMemory
	}
	memtable := int64(min(max(budget/8, 4<<20), 256<<20))
	o := badger.DefaultOptions(filepath.Join(dir, "badger")).
		WithLogger(nil).
		WithSyncWrites(false). // the Raft log is the durable record; see DESIGN.md
		WithNumVersionsToKeep(1).
		// A stop only flushes the memtables: compacting level 0 on close
		// held a stop for up to 11 s after a busy half hour (the
		// three-node soak in BENCHMARKS.md), past Docker's default 10 s
		// grace, for work the compactors do after the next start anyway.
		WithCompactL0OnClose(false).
		// Only the FSM writes, one transaction at a time, so there is
		// nothing to detect; tracking every read key costs each apply.
		WithDetectConflicts(false).
		WithMemTableSize(memtable).
		WithNumMemtables(2).
		WithBlockCacheSize(int64(budget / 8 * 3)).
		// Tables flushed from a small memtable are small too; level sizes
		// follow, so that compactions move a few MiB at a time.
		// Blocks of 16 KiB instead of 4: ZSTD builds its entropy tables
		// once per block, half of its time on 4 KiB blocks, and packs a
		// larger block tighter (249 bytes of tables per notification
		// instead of 432). A table is sized by its compressed bytes and
		// its builder holds the raw blocks too, several times that, for
		// each of the up to eight-plus tables a compaction builds at
		// once: tables of a sixteenth of a memtable (512 KiB by
		// default; 2 MiB before) halve the builders' memory at the same
		// rate. Ingest +15-30 %, p99 -40 %, heap at the peak -40 %
		// (BENCHMARKS.md). Each table is an open file: about two per
		// MiB of stored tables (four under a 32 MiB budget). A table
		// records its own block offsets, so tables written with 4 KiB
		// blocks stay readable. The floor is 256 KiB, not 512, so that
		// a smaller budget shrinks the builders too: under 32 MiB, with
		// 512 KiB tables the peak under ingest stayed at the default's
		// (248-256 MiB resident); with 256 KiB it fell to 174-215 MiB
		// for about a tenth of the rate (BENCHMARKS.md).
		WithBaseTableSize(max(memtable/16, 256<<10)).
		WithBlockSize(16 << 10).
		WithNumCompactors(2).
		// Every table flushed to level 0 spans nearly every user, so
		// each compaction into the base level rewrites most of it:
		// merging ten flushed tables at a time instead of five halves
		// that rewriting (ingest +10-20 %, p99 -15 %, BENCHMARKS.md).
		// Writes stall at twenty tables (Badger: fifteen).
		WithNumLevelZeroTables(10).
		WithNumLevelZeroTablesStall(20).
		// Values stay in the LSM tree (a command is at most ~70 KiB), so
		// the value log holds little: smaller files are mapped and
		// garbage-collected in smaller steps. Badger wants the threshold
		// under its largest write batch, 15% of a memtable.
		WithValueThreshold(min(1<<20, memtable/8)).
		WithValueLogFileSize(64 << 20).
		// ZSTD at its fastest level instead of Badger's default Snappy:
		// notifications are small JSON records that share most of their
		// keys and wording, which ZSTD's entropy coding packs far tighter,
		// for compaction CPU that is still small beside the Raft path.
		// The manifest records each table's codec, so tables written
		// with Snappy before stay readable (memory_test.go) and turn into
		// ZSTD ones as compactions rewrite them.
		WithCompression(options.ZSTD).
		WithZSTDCompressionLevel(1)
	// Tables of every level at the base size. Badger's default doubles
	// the size at each level below the base level, and a table builder
	// holds its whole table in the heap, as written and compressed (the
	// size counts compressed bytes, so the first copy is several times
	// it), in an allocator that grows by doubling: the builders' memory
	// would grow with the data's depth (Badger's pool of them is kept
	// empty: builderpool.go).
	o.TableSizeMultiplier = 1
	return o
}

// viewCacheBytes bounds the feed's cache of decoded notifications (views.go)
// for a budget of budget bytes: a quarter of it, 16 MiB by default, about
// 24,000 small notifications. It fills only as feeds are read. A feed
// whose notifications it does not hold costs three to seven times the CPU
// a page (BENCHMARKS.md, 4 December 2026: with 16,000 notifications read,
// 5,427-6,476 pages/s at 8 MiB, 12,348-13,020 at 16).
func viewCacheBytes(budget uint64) int {
	if budget == 0 {
		budget = DefaultMemory
	}
	return int(budget / 4)
}

// GoMemoryLimit is the Go runtime's soft memory limit for a node whose
// Badger budget is budget bytes: the budget twice over (the memtables and
// caches live in Go's heap, and the collector lets a heap grow to about
// twice what it keeps) plus 24 MiB for the rest of the server. Under it the
// collector works harder rather than let garbage from a burst (a write load,
// sign-ins) raise resident memory far beyond what is live. It is a soft
// limit: live data above it is never refused, and `herald serve` raises it
// while the live heap needs more (nextMemoryLimit in package main), so that
// the collector does not run back to back.
func GoMemoryLimit(budget uint64) int64 {
	if budget == 0 {
		budget = DefaultMemory
	}
	return int64(2*budget + 24<<20)
}
