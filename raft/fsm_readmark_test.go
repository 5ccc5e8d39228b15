package raft

import (
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/y"
	hraft "github.com/hashicorp/raft"
)

// pendingReadsDoneUntil is the read timestamp up to which Badger has seen
// every transaction end. Compactions keep every version above it, and
// Badger keeps a record per read timestamp above it until it moves on.
// Badger does not export it; a test reads it to see that no transaction was
// left open.
func pendingReadsDoneUntil(t *testing.T, db *badger.DB) uint64 {
	t.Helper()
	orc := reflect.ValueOf(db).Elem().FieldByName("orc")
	if !orc.IsValid() || orc.Kind() != reflect.Pointer {
		t.Fatal("badger.DB has no oracle field orc: Badger changed; find its read watermark anew")
	}
	mark := orc.Elem().FieldByName("readMark")
	if !mark.IsValid() || mark.Type() != reflect.TypeFor[*y.WaterMark]() {
		t.Fatal("Badger's oracle has no readMark *y.WaterMark: Badger changed; find its read watermark anew")
	}
	return reflect.NewAt(mark.Type(), unsafe.Pointer(mark.UnsafeAddr())).Elem().Interface().(*y.WaterMark).DoneUntil()
}

// Each batch commits its Badger transaction and opens the next one; the
// last one opened must end with the batch. Left open, it held Badger's
// read watermark at the first batch for as long as the node ran: no
// compaction dropped an overwritten version or a deleted key from then on
// (a soak's tables grew by 1.6 MiB a minute with their live data flat),
// and Badger kept a record of every later read timestamp (2.5 MB of heap
// after 26 minutes, never given back).
func TestApplyBatchLeavesNoTransactionOpen(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("erin")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})})
	for i := uint64(2); i < 12; i++ {
		f.ApplyBatch([]*hraft.Log{entry(t, i, sendCmd(u.ID, "app", "same", now, now.Add(time.Hour)))})
	}
	// Badger's watermark takes its marks on a goroutine of its own.
	want := db.MaxVersion()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := pendingReadsDoneUntil(t, db)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Badger's reads are done only up to timestamp %d, its last commit is at %d: a transaction of ApplyBatch is still open", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
