package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-notify/herald/resource"
)

// DiskReserve is the free space below which the node refuses writes that
// add data: the larger of Bytes and Percent of the filesystem's size.
//
// Badger writes through memory-mapped files that it sizes with truncate,
// so the filesystem hands out blocks only as pages are touched; on a full
// disk that touch is a SIGBUS, not an error. The only defence is never to
// get there: refuse writes while a reserve is left. The default reserve
// (256 MiB) exceeds Badger's largest sparse file (the memtable's log, twice
// the 64 MiB memtable) with room for a compaction.
type DiskReserve struct {
	Bytes   uint64
	Percent float64
}

// DefaultDiskReserve is max(256 MiB, 2%).
var DefaultDiskReserve = DiskReserve{Bytes: 256 << 20, Percent: 2}

// ParseDiskReserve reads "" (the default), "0" (no reserve: for tests
// only), a size ("512MiB", "1GB", "300000000") or a share of the disk
// ("5%"). Parts joined by "," combine as the larger: "256MiB,2%".
func ParseDiskReserve(s string) (DiskReserve, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultDiskReserve, nil
	}
	var r DiskReserve
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if p, ok := strings.CutSuffix(part, "%"); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || f < 0 || f >= 100 {
				return DiskReserve{}, fmt.Errorf("disk reserve %q: a share must be a number from 0 to 100 followed by %%", part)
			}
			r.Percent = max(r.Percent, f)
			continue
		}
		n, err := parseSize(part)
		if err != nil {
			return DiskReserve{}, fmt.Errorf("disk reserve %q: %w", part, err)
		}
		r.Bytes = max(r.Bytes, n)
	}
	return r, nil
}

func parseSize(s string) (uint64, error) {
	units := []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := uint64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a whole number of bytes with an optional unit (KiB, MiB, GiB, KB, MB, GB), or a share such as 2%%")
	}
	return n * mult, nil
}

// of is the reserve in bytes on a filesystem of total bytes.
func (r DiskReserve) of(total uint64) uint64 {
	return max(r.Bytes, uint64(float64(total)*r.Percent/100))
}

// DiskSpace is what the node knows of its data directory's filesystem.
type DiskSpace struct {
	Free, Total, Reserve uint64
	Full                 bool // Free is below Reserve: writes that add data are refused
	// Critical: full, the ballast already given back, and less than
	// criticalRoom free; only membership and deletes are taken.
	Critical bool
	Err      error
}

// diskGuard watches the free space of the data directory. It is checked in
// the background every diskCheckEvery so that a write pays one atomic load,
// and so that both a full disk and its recovery are logged even when no
// write comes.
type diskGuard struct {
	dir     string
	reserve DiskReserve
	free    func() (free, total uint64, err error)
	log     *slog.Logger
	state   atomic.Pointer[DiskSpace]
	// ballast is a file of real blocks kept in the data directory: when
	// something else fills the disk past the reserve, deleting it gives
	// Badger room to flush its memtable, close and open again, which a
	// disk with no free block at all turns into a SIGBUS.
	ballast     string
	ballastSize uint64
	// mu serializes check, which the watcher and the FSM's roomFor both
	// call, and guards hasBallast.
	mu         sync.Mutex
	hasBallast bool
	// stop ends roomFor's wait for space (the store is closing); set
	// before Raft starts.
	stop <-chan struct{}
	// backing makes Badger's memtable logs real blocks, spending at most
	// budget bytes (diskspace_linux.go); nil where there is no fallocate.
	backing func(dir string, budget uint64) error
	// roomFree and roomAt are roomFor's last reading and when it was
	// taken; only the FSM's goroutine calls roomFor.
	roomFree uint64
	roomAt   time.Time
}

// roomFor reads the free space again before every batch only when the last
// reading is older than roomRecheck or left less than roomSlack to spare:
// a statfs a batch was a hundredth of a node's CPU under the latency load,
// and nothing fills a gigabyte in ten milliseconds.
const (
	roomRecheck = 10 * time.Millisecond
	roomSlack   = 1 << 30
)

const diskCheckEvery = time.Second

const ballastName = "disk-ballast"

// ballastSize is a quarter of the reserve's fixed part, at most 64 MiB:
// a flush of a full memtable (64 MiB by default) fits, and far less is
// needed to close and open a store whose memtable holds little.
func ballastSize(r DiskReserve) uint64 { return min(r.Bytes/4, 64<<20) }

func newDiskGuard(dir string, reserve DiskReserve, free func() (uint64, uint64, error), log *slog.Logger) *diskGuard {
	g := &diskGuard{dir: dir, reserve: reserve, free: free, log: log,
		ballast: filepath.Join(dir, ballastName), ballastSize: ballastSize(reserve)}
	if fi, err := os.Stat(g.ballast); err == nil && uint64(fi.Size()) >= g.ballastSize {
		g.hasBallast = true
	}
	if g.free == nil {
		g.free = func() (uint64, uint64, error) { return statfs(dir) }
	}
	g.backing = backBadgerFiles
	g.state.Store(&DiskSpace{})
	return g
}

// check reads the free space now and logs a change between full and not.
func (g *diskGuard) check() DiskSpace {
	g.mu.Lock()
	defer g.mu.Unlock()
	free, total, err := g.free()
	prev := g.state.Load()
	next := DiskSpace{Free: free, Total: total, Reserve: g.reserve.of(total), Err: err}
	if err != nil {
		// An unreadable statfs must not stop writes that Badger can
		// still make; keep the last verdict and say so once.
		next.Free, next.Total, next.Reserve, next.Full = prev.Free, prev.Total, prev.Reserve, prev.Full
		if prev.Err == nil {
			g.log.Warn("cannot read the data directory's free space; the disk-full guard keeps its last reading", "dir", g.dir, "error", err)
		}
	} else {
		g.tendBallast(&next)
		next.Full = next.Free < next.Reserve
		next.Critical = next.Full && !g.hasBallast && next.Free < g.criticalRoom()
		if !next.Full && g.backing != nil {
			// Only out of the room above the reserve: on a full disk the
			// free blocks are for flushes and deletes.
			if err := g.backing(filepath.Join(g.dir, "badger"), next.Free-next.Reserve); err != nil && !errors.Is(err, os.ErrNotExist) {
				g.log.Debug("cannot back Badger's memtable logs with blocks", "error", err)
			}
		}
		switch {
		case next.Full && !prev.Full:
			g.log.Error("the data directory's disk is full: refusing writes that add data (507) until space is freed",
				"dir", g.dir, "free_bytes", next.Free, "reserve_bytes", next.Reserve, "total_bytes", total)
		case !next.Full && prev.Full:
			g.log.Info("the data directory's disk has room again: taking writes", "dir", g.dir,
				"free_bytes", next.Free, "reserve_bytes", next.Reserve)
		}
	}
	g.state.Store(&next)
	return next
}

// tendBallast frees the ballast once free space is below its size (the
// disk filled past the reserve: storage needs the room now), and makes it
// again once the disk has room for it on top of the reserve.
func (g *diskGuard) tendBallast(st *DiskSpace) {
	switch {
	case g.ballastSize == 0:
	case g.hasBallast && st.Free < g.ballastSize:
		if err := os.Remove(g.ballast); err != nil && !errors.Is(err, os.ErrNotExist) {
			g.log.Error("cannot free the disk ballast", "path", g.ballast, "error", err)
			return
		}
		g.hasBallast = false
		st.Free += g.ballastSize
		g.log.Error("the data directory's disk filled past the reserve: freed the ballast file so that storage can flush and restart; free space on the disk now",
			"path", g.ballast, "freed_bytes", g.ballastSize)
	case !g.hasBallast && st.Free > st.Reserve+2*g.ballastSize:
		if err := writeBallast(g.ballast, g.ballastSize); err != nil {
			g.log.Warn("cannot write the disk ballast", "path", g.ballast, "error", err)
			return
		}
		g.hasBallast = true
		st.Free -= g.ballastSize
	}
}

// writeBallast writes zeros rather than truncating, so that the file holds
// real blocks that its removal gives back.
func writeBallast(path string, size uint64) error {
	tmp := path + ".tmp"
	// Made anew, never opened through whatever has its name (a link
	// left there would have the ballast written where it leads).
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for n := uint64(0); n < size && err == nil; n += uint64(len(buf)) {
		_, err = f.Write(buf[:min(uint64(len(buf)), size-n)])
	}
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// criticalRoom is the free space below which, with the ballast already
// given back, a full disk refuses even the small writes that keep clients
// working: what is left is for Badger's flushes and for deletes.
func (g *diskGuard) criticalRoom() uint64 { return max(g.ballastSize/2, 1<<20) }

// minStartRoom is the least free space the store opens with: Badger makes
// a new memtable log at once and writes it through its mapping, where a
// page the filesystem cannot back is a SIGBUS, not an error.
const minStartRoom = 1 << 20

// minApplyRoom is the least free space an apply of need bytes of commands
// goes ahead with: Badger writes them (and what they index) through
// memory-mapped files, and a page the filesystem cannot back is a SIGBUS.
func minApplyRoom(need uint64) uint64 { return 4*need + 256<<10 }

// roomFor is called by the FSM before it writes a batch of need bytes of
// commands. The background check runs only every second, and something
// else can fill the disk within one: so when free space is low it checks
// now, which gives back the ballast if the disk filled past it. If even
// then there is no room, it waits for space rather than let Badger fault:
// a node that stops applying is an outage the operator can end by freeing
// space, a SIGBUS is one that returns at every restart.
func (g *diskGuard) roomFor(need uint64) {
	if g == nil || g.reserve == (DiskReserve{}) {
		return
	}
	now := time.Now()
	if now.Sub(g.roomAt) < roomRecheck && g.roomFree >= roomSlack+minApplyRoom(need)+g.ballastSize {
		return
	}
	free, _, err := g.free()
	if err == nil {
		g.roomFree, g.roomAt = free, now
	}
	if err != nil || free >= minApplyRoom(need)+g.ballastSize {
		return
	}
	warned := false
	for {
		st := g.check()
		if st.Err != nil || st.Free >= minApplyRoom(need) {
			if warned {
				g.log.Info("the data directory's disk has room again: applying committed writes", "dir", g.dir, "free_bytes", st.Free)
			}
			return
		}
		if !warned {
			warned = true
			g.log.Error("the data directory's disk has no room left for committed writes: this node stops applying them until space is freed on the disk",
				"dir", g.dir, "free_bytes", st.Free, "needed_bytes", minApplyRoom(need))
		}
		select {
		case <-g.stop:
			return
		case <-time.After(diskCheckEvery):
		}
	}
}

func (g *diskGuard) watch(stop <-chan struct{}) {
	t := time.NewTicker(diskCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			g.check()
		}
	}
}

// admit is nil, or the 507 that refuses cmd on a full disk.
func (g *diskGuard) admit(cmd *Command) error {
	st := g.state.Load()
	switch {
	case !st.Full:
		return nil
	case st.Critical && keepsClusterOrFrees(cmd.Op):
		return nil
	case !st.Critical && freesOrKeepsAlive(cmd.Op):
		return nil
	}
	return resource.Errorf(resource.CodeQuotaReached,
		diskFullPrefix+"%s free, below the reserve of %s); nothing was stored. "+
			"Deleting notifications or freeing space on the server lets writes resume by themselves.",
		mib(st.Free), mib(st.Reserve))
}

const diskFullPrefix = "The server's disk is full ("

// IsDiskFull says whether err is the guard's refusal (admit), also after it
// crossed the wire from the leader: the command was refused before it
// entered the Raft log. That says nothing of an earlier send of the same
// command, which a caller that resends must answer for itself.
func IsDiskFull(err error) bool {
	var re *resource.Error
	return errors.As(err, &re) && re.Code == resource.CodeQuotaReached && strings.HasPrefix(re.Message, diskFullPrefix)
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// freesOrKeepsAlive names the commands a full disk still takes: those
// that free space (deletes, purge), those without which the cluster or its
// clients stop working (membership and slots, sign-in and sign-out, so
// that reads keep working, and the start-up writes of a new node), and delivery outcomes, without which every
// pending delivery would be retried for ever. All are small; the reserve
// is what they write into.
func freesOrKeepsAlive(op Op) bool {
	switch op {
	case OpDeleteUser, OpDeleteApp, OpRemovePassword, OpDeleteSub, OpDeleteNotif, OpDeleteNotifsBy, OpPurge,
		OpDeliveryOutcomes, OpIssueTokens, OpRevokeSession, OpTouchSession, OpBootstrapAdmin, OpSetVAPID,
		OpSetNode, OpRemoveNode, OpSetSlots:
		return true
	}
	return false
}

// keepsClusterOrFrees names what a critically full disk still takes:
// membership and slots, without which the cluster cannot heal, and
// deletes, which are how its admin makes room.
func keepsClusterOrFrees(op Op) bool {
	switch op {
	case OpDeleteUser, OpDeleteApp, OpRemovePassword, OpDeleteSub, OpDeleteNotif, OpDeleteNotifsBy, OpPurge,
		OpSetNode, OpRemoveNode, OpSetSlots:
		return true
	}
	return false
}

// DiskSpace is the latest reading of the data directory's free space.
func (s *Store) DiskSpace() DiskSpace { return *s.disk.state.Load() }
