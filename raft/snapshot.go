package raft

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The snapshot and backup format: a header line, the applied index (8 bytes,
// big-endian), then for each key uvarint(len key) key uvarint(len value)
// value uvarint(expiresAt), then a zero key length and the CRC-32C of
// everything before it. Our own format rather than Badger's keeps restore
// independent of Badger's version; the applied index up front lets a node
// compare itself with a snapshot without reading it all.
const snapshotHeader = "HERALD-SNAPSHOT 1\n"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrBadSnapshot means a snapshot or backup file is not one, or is damaged.
var ErrBadSnapshot = errors.New("not a valid Herald snapshot")

func writeSnapshot(txn *badger.Txn, w io.Writer) error {
	crc := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 256<<10)
	bw.WriteString(snapshotHeader)
	applied, _, err := getValue(txn, []byte(keyApplied))
	if err != nil {
		return err
	}
	bw.Write(putUint64(getUint64(applied)))
	var num [binary.MaxVarintLen64]byte
	putUvarint := func(v uint64) { bw.Write(num[:binary.PutUvarint(num[:], v)]) }
	it := txn.NewIterator(badger.DefaultIteratorOptions)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if item.IsDeletedOrExpired() {
			continue
		}
		k := item.Key()
		putUvarint(uint64(len(k)))
		bw.Write(k)
		err := item.Value(func(v []byte) error {
			putUvarint(uint64(len(v)))
			_, err := bw.Write(v)
			return err
		})
		if err != nil {
			return err
		}
		putUvarint(item.ExpiresAt())
	}
	putUvarint(0)
	if err := bw.Flush(); err != nil {
		return err
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc.Sum32())
	_, err = w.Write(sum[:])
	return err
}

// WriteBackup streams a consistent copy of the state to w, in the snapshot
// format, once no entry is half applied (wholeEntries).
func WriteBackup(ctx context.Context, db *badger.DB, w io.Writer) error {
	txn, err := wholeEntries(ctx, db, backupWait)
	if err != nil {
		return err
	}
	defer txn.Discard()
	return writeSnapshot(txn, w)
}

// ErrEntryUnderWay means a backup found an entry half applied for longer
// than it waits.
var ErrEntryUnderWay = errors.New("an entry too large for one transaction is still being applied")

// backupWait bounds how long a backup waits for an entry committed in
// parts to end: a user with millions of notifications takes seconds to
// delete.
const backupWait = 30 * time.Second

// wholeEntries opens a read of db at a version where no entry is between
// two of its parts (parts.go). A snapshot for Raft may hold half an entry,
// since the log it goes with holds the rest; a backup may not: a restore
// starts a new log, and the rest of the entry is in neither.
func wholeEntries(ctx context.Context, db *badger.DB, patience time.Duration) (*badger.Txn, error) {
	deadline := time.Now().Add(patience)
	pause := time.Millisecond
	for {
		txn := db.NewTransaction(false)
		_, err := txn.Get([]byte(keyResume))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn, nil
		}
		txn.Discard()
		if err != nil {
			return nil, err
		}
		if testBackupWaits != nil {
			testBackupWaits()
		}
		if time.Now().After(deadline) {
			return nil, ErrEntryUnderWay
		}
		select {
		case <-ctx.Done(): // the client went
			return nil, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// testBackupWaits, when set, runs each time a backup finds an entry under
// way (tests).
var testBackupWaits func()

// snapshotApplied reads the applied index from a snapshot's header.
func snapshotApplied(r io.Reader) (uint64, error) {
	applied, ref, err := readSnapshotHead(r)
	if err == nil && ref {
		err = ErrBadSnapshot // a reference holds no state to load
	}
	return applied, err
}

// loadSnapshot replaces everything in db with the snapshot in r and returns
// the applied index it carries. The snapshot is copied to a file and its
// checksum verified first, so a damaged one leaves the state untouched.
// With whole set (a backup file, which holds one snapshot and nothing
// else), bytes after the checksum make it damaged too.
func loadSnapshot(db *badger.DB, r io.Reader, whole bool) (uint64, error) {
	f, err := os.CreateTemp(filepath.Dir(db.Opts().Dir), "restore-*.tmp")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := verifySnapshot(io.TeeReader(r, f), whole); err != nil {
		return 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if err := db.DropAll(); err != nil {
		return 0, fmt.Errorf("%w: %w", errStateDropped, err)
	}
	if afterDrop != nil {
		afterDrop()
	}
	applied, err := readSnapshot(f, db)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errStateDropped, err)
	}
	return applied, nil
}

// errStateDropped wraps what failed a load once it had begun to drop the
// state it replaces: what is left is neither the old state nor the new.
var errStateDropped = errors.New("the state was dropped for a snapshot that did not load")

// afterDrop, set by tests, runs while a snapshot load has emptied Badger.
var afterDrop func()

// verifySnapshot reads a whole snapshot and checks its structure and sum,
// and with whole set, that nothing follows the sum.
func verifySnapshot(r io.Reader, whole bool) error {
	// readSnapshot buffers its reader with bufio.NewReaderSize(r,
	// snapshotBuffer), which hands back br itself (as large already), so
	// what it has not parsed is still in br for the check below; a reader
	// of its own would read past the sum and hide a short tail.
	br := bufio.NewReaderSize(r, snapshotBuffer)
	if _, err := readSnapshot(br, nil); err != nil {
		return err
	}
	if !whole {
		return nil
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		if err != nil {
			return fmt.Errorf("%w: after its checksum: %v", ErrBadSnapshot, err)
		}
		return fmt.Errorf("%w: it goes on after its checksum (two files joined, or one written over a longer one)", ErrBadSnapshot)
	}
	return nil
}

// snapshotBuffer is the read buffer of a snapshot's parse.
const snapshotBuffer = 256 << 10

// readSnapshot parses a snapshot, writing its entries to db when db is set.
func readSnapshot(r io.Reader, db *badger.DB) (uint64, error) {
	br := &crcReader{r: bufio.NewReaderSize(r, snapshotBuffer), h: crc32.New(crcTable)}
	applied, err := snapshotApplied(br)
	if err != nil {
		return 0, err
	}
	var wb *badger.WriteBatch
	if db != nil {
		wb = db.NewWriteBatch()
		defer wb.Cancel()
	}
	// The applied index is written last, once everything else is: the
	// write batch commits as it fills, and a node killed part-way through
	// a load would otherwise start again with the snapshot's applied index
	// over part of its state, and catch up from nothing (catchUpFromSnapshot
	// compares that index with its snapshot's). Without it the state reads
	// as applied through 0, and the next start loads the snapshot again.
	var appliedEntry *badger.Entry
	for {
		klen, err := binary.ReadUvarint(br)
		if err != nil {
			return 0, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
		}
		if klen == 0 {
			break
		}
		if klen > 1<<16 {
			return 0, ErrBadSnapshot
		}
		k := make([]byte, klen)
		if _, err := io.ReadFull(br, k); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
		}
		vlen, err := binary.ReadUvarint(br)
		if err != nil || vlen > 1<<30 {
			return 0, ErrBadSnapshot
		}
		v := make([]byte, vlen)
		if _, err := io.ReadFull(br, v); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
		}
		exp, err := binary.ReadUvarint(br)
		if err != nil {
			return 0, ErrBadSnapshot
		}
		if wb != nil {
			e := badger.NewEntry(k, v)
			e.ExpiresAt = exp
			if string(k) == keyApplied {
				appliedEntry = e
				continue
			}
			if restoreCut != nil && restoreCut(k) {
				return 0, errors.Join(errRestoreCut, wb.Flush(), db.Sync())
			}
			if err := wb.SetEntry(e); err != nil {
				return 0, err
			}
		}
	}
	want := br.h.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(br.r, sum[:]); err != nil || binary.BigEndian.Uint32(sum[:]) != want {
		return 0, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	if wb == nil {
		return applied, nil
	}
	if err := wb.Flush(); err != nil {
		return 0, err
	}
	if appliedEntry != nil {
		if err := db.Update(func(txn *badger.Txn) error { return txn.SetEntry(appliedEntry) }); err != nil {
			return 0, err
		}
	}
	return applied, db.Sync()
}

// restoreCut, set by tests, stops a load before the key it returns true
// for, as a kill there would: what came before is written and synced.
var restoreCut func(key []byte) bool

var errRestoreCut = errors.New("snapshot load cut short (test)")

// crcReader sums exactly the bytes consumed, not what bufio read ahead.
type crcReader struct {
	r *bufio.Reader
	h hash.Hash32
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.h.Write([]byte{b})
	}
	return b, err
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	return n, err
}
