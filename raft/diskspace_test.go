package raft

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

func TestParseDiskReserve(t *testing.T) {
	for _, c := range []struct {
		in   string
		want DiskReserve
	}{
		{"", DefaultDiskReserve},
		{"0", DiskReserve{}},
		{"512MiB", DiskReserve{Bytes: 512 << 20}},
		{"1GB", DiskReserve{Bytes: 1e9}},
		{"300000", DiskReserve{Bytes: 300000}},
		{"5%", DiskReserve{Percent: 5}},
		{"256MiB, 2%", DiskReserve{Bytes: 256 << 20, Percent: 2}},
	} {
		got, err := ParseDiskReserve(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseDiskReserve(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"lots", "-1MiB", "150%", "1.5GiB", "MiB"} {
		if _, err := ParseDiskReserve(bad); err == nil {
			t.Errorf("ParseDiskReserve(%q) accepted", bad)
		}
	}
	if got := (DiskReserve{Bytes: 256 << 20, Percent: 2}).of(100 << 30); got != 2<<30 {
		t.Errorf("the larger of 256 MiB and 2%% of 100 GiB: %d", got)
	}
}

// Below the reserve, commands that add data get 507 and those that free
// space or keep the cluster and its clients working pass; above it, all
// pass; the ballast is given back when the disk fills past the reserve
// and made again once there is room.
func TestDiskGuard(t *testing.T) {
	dir := t.TempDir()
	var free atomic.Uint64
	const total = 1 << 30
	free.Store(total / 2)
	g := newDiskGuard(dir, DiskReserve{Bytes: 64 << 20}, func() (uint64, uint64, error) { return free.Load(), total, nil }, quiet)
	ballast := filepath.Join(dir, ballastName)

	if st := g.check(); st.Full || st.Reserve != 64<<20 {
		t.Fatalf("half the disk free: %+v", st)
	}
	if fi, err := os.Stat(ballast); err != nil || fi.Size() != 16<<20 {
		t.Fatalf("ballast: %v, %v", fi, err)
	}
	if err := g.admit(&Command{Op: OpSend}); err != nil {
		t.Fatalf("a send with room: %v", err)
	}

	free.Store(32 << 20)
	if st := g.check(); !st.Full {
		t.Fatalf("32 MiB free, 64 MiB reserve: %+v", st)
	}
	var re *resource.Error
	for _, op := range []Op{OpSend, OpPatchNotif, OpCreateUser, OpCreateSub, OpCreateApp} {
		if err := g.admit(&Command{Op: op}); !errors.As(err, &re) || re.Code != resource.CodeQuotaReached {
			t.Errorf("%s on a full disk: %v", op, err)
		}
	}
	for _, op := range []Op{OpDeleteNotif, OpDeleteNotifsBy, OpPurge, OpDeliveryOutcomes, OpIssueTokens, OpSetNode, OpSetSlots} {
		if err := g.admit(&Command{Op: op}); err != nil {
			t.Errorf("%s on a full disk: %v", op, err)
		}
	}
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("the ballast is kept while the reserve holds: %v", err)
	}

	free.Store(1 << 20)
	if st := g.check(); !st.Full || st.Free != 17<<20 {
		t.Fatalf("past the reserve: %+v", st)
	}
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the ballast is not freed past the reserve: %v", err)
	}

	free.Store(total / 2)
	if st := g.check(); st.Full {
		t.Fatalf("room again: %+v", st)
	}
	if err := g.admit(&Command{Op: OpSend}); err != nil {
		t.Fatalf("a send once space is freed: %v", err)
	}
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("the ballast is not made again: %v", err)
	}
}

// An unreadable statfs keeps the last verdict rather than stopping or
// letting through every write.
func TestDiskGuardKeepsItsVerdictWhenStatfsFails(t *testing.T) {
	fail := errors.New("statfs failed")
	var err atomic.Pointer[error]
	g := newDiskGuard(t.TempDir(), DiskReserve{Bytes: 64 << 20}, func() (uint64, uint64, error) {
		if e := err.Load(); e != nil {
			return 0, 0, *e
		}
		return 1 << 20, 1 << 30, nil
	}, quiet)
	if !g.check().Full {
		t.Fatal("1 MiB free is not full")
	}
	err.Store(&fail)
	if st := g.check(); !st.Full || !errors.Is(st.Err, fail) {
		t.Fatalf("after a failed statfs: %+v", st)
	}
}

// Something else can fill the disk between two background checks. The
// FSM's roomFor checks at once before a write when space is low: it gives
// back the ballast so that the write has real blocks to go to, and with no
// room at all it waits until space is freed rather than let Badger touch a
// page the filesystem cannot back.
func TestDiskGuardRoomForAWrite(t *testing.T) {
	dir := t.TempDir()
	var free atomic.Uint64
	const total = 1 << 30
	free.Store(total / 2)
	g := newDiskGuard(dir, DiskReserve{Bytes: 64 << 20}, func() (uint64, uint64, error) { return free.Load(), total, nil }, quiet)
	stop := make(chan struct{})
	defer close(stop)
	g.stop = stop
	ballast := filepath.Join(dir, ballastName)
	g.check()
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("no ballast: %v", err)
	}

	free.Store(0) // filled since the last check
	g.roomFor(4 << 10)
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("roomFor on a disk filled to the last block kept the ballast: %v", err)
	}
	if st := g.state.Load(); !st.Full || st.Free != 16<<20 {
		t.Fatalf("after roomFor gave back the ballast: %+v", *st)
	}

	// No ballast left and nothing free: the write waits for space.
	free.Store(0)
	done := make(chan struct{})
	go func() { g.roomFor(4 << 10); close(done) }()
	select {
	case <-done:
		t.Fatal("roomFor let a write go ahead on a disk with no free block")
	case <-time.After(2 * diskCheckEvery):
	}
	free.Store(32 << 20)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("roomFor still waits with 32 MiB free")
	}
}

// With gigabytes to spare, roomFor reads the free space again only once
// its last reading is roomRecheck old; short of roomSlack it reads it
// before every write.
func TestDiskGuardRoomForRereadsWhenShortOrStale(t *testing.T) {
	var free, reads atomic.Uint64
	const total = 64 << 30
	free.Store(8 << 30)
	g := newDiskGuard(t.TempDir(), DiskReserve{Bytes: 64 << 20}, func() (uint64, uint64, error) {
		reads.Add(1)
		return free.Load(), total, nil
	}, quiet)
	// Two writes within roomRecheck of each other; a machine that takes
	// longer than that between them (a pause) is given another try.
	for try := 1; ; try++ {
		reads.Store(0)
		g.roomAt = time.Time{}
		start := time.Now()
		g.roomFor(4 << 10)
		g.roomFor(4 << 10)
		if time.Since(start) >= roomRecheck {
			if try == 20 {
				t.Fatalf("two writes never came within %v of each other", roomRecheck)
			}
			continue
		}
		if n := reads.Load(); n != 1 {
			t.Fatalf("two writes with 8 GiB free read the free space %d times, want 1", n)
		}
		break
	}
	g.roomAt = g.roomAt.Add(-roomRecheck) // the reading is now stale
	g.roomFor(4 << 10)
	if n := reads.Load(); n != 2 {
		t.Fatalf("a write after a stale reading: %d reads, want 2", n)
	}
	free.Store(roomSlack / 2)
	g.roomAt = g.roomAt.Add(-roomRecheck)
	for range 3 {
		g.roomFor(4 << 10)
	}
	if n := reads.Load(); n != 5 {
		t.Fatalf("three writes with half a gigabyte free: %d reads in all, want 5", n)
	}
}

// Past the reserve with the ballast spent, only what keeps the cluster
// whole or frees space is taken: sign-ins and delivery outcomes, which a
// merely full disk still takes, are refused too.
func TestDiskGuardCritical(t *testing.T) {
	var free atomic.Uint64
	const total = 1 << 30
	free.Store(total / 2)
	g := newDiskGuard(t.TempDir(), DiskReserve{Bytes: 64 << 20}, func() (uint64, uint64, error) { return free.Load(), total, nil }, quiet)
	g.check()
	free.Store(1 << 20) // the ballast goes: 17 MiB free, full but not critical
	if st := g.check(); !st.Full || st.Critical {
		t.Fatalf("17 MiB free with a 64 MiB reserve: %+v", st)
	}
	if err := g.admit(&Command{Op: OpIssueTokens}); err != nil {
		t.Fatalf("a sign-in on a full disk: %v", err)
	}
	free.Store(2 << 20)
	if st := g.check(); !st.Critical {
		t.Fatalf("2 MiB free, no ballast: %+v", st)
	}
	var re *resource.Error
	for _, op := range []Op{OpIssueTokens, OpTouchSession, OpDeliveryOutcomes, OpSend} {
		if err := g.admit(&Command{Op: op}); !errors.As(err, &re) || re.Code != resource.CodeQuotaReached {
			t.Errorf("%s on a critically full disk: %v", op, err)
		}
	}
	for _, op := range []Op{OpDeleteNotif, OpPurge, OpSetNode, OpSetSlots} {
		if err := g.admit(&Command{Op: op}); err != nil {
			t.Errorf("%s on a critically full disk: %v", op, err)
		}
	}
}
