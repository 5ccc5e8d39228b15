//go:build linux

package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The full-disk fault. One node keeps its data directory on a tmpfs that
// the test mounts (as node/diskfull_test.go does), so that filling it is
// a real full disk and touches nothing else on the machine. The fault
// fills that filesystem with a filler file until the node is below its
// --disk-reserve, holds, and deletes the file.

const (
	// smallDiskSize is the tmpfs; a 10-minute run writes well under half
	// of it into the node's data directory (docs/faults.md).
	smallDiskSize = 256 << 20
	// smallDiskReserve is the node's --disk-reserve; its ballast is a
	// quarter of it (raft/diskspace.go).
	smallDiskReserve = 48 << 20
	smallDiskBallast = smallDiskReserve / 4
)

// smallDisk is a tmpfs mounted by the test.
type smallDisk struct {
	dir    string // the mount point; the node's data directory is under it
	filler string // the file the fault fills the disk with
}

// mountSmallDisk mounts a tmpfs for one node's data. Where mounting is not
// permitted it returns nil (the run has no full-disk fault and says so),
// except in CI (CI=true), which runs as root and must run it.
func mountSmallDisk(t *testing.T) *smallDisk {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", smallDiskSize)); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs (%v): CI runs as root and must run the full-disk fault", err)
		}
		t.Logf("cannot mount a tmpfs here (%v): this run injects no full disk", err)
		return nil
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return &smallDisk{dir: dir, filler: filepath.Join(dir, "chaos-filler")}
}

func (d *smallDisk) reserveFlag() string { return fmt.Sprintf("%dMiB", smallDiskReserve>>20) }

// free is what statfs says is available (as the node reads it).
func (d *smallDisk) free() (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// fill grows the filler file until only leave bytes are free. tmpfs takes
// fallocate, which is instant; writes are the fallback.
func (d *smallDisk) fill(leave uint64) error {
	free, err := d.free()
	if err != nil {
		return err
	}
	if free <= leave {
		return nil
	}
	f, err := os.OpenFile(d.filler, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	grow := int64(free - leave)
	if err := syscall.Fallocate(int(f.Fd()), 0, fi.Size(), grow); err == nil {
		return nil
	}
	if _, err := f.Seek(0, 2); err != nil {
		return err
	}
	chunk := make([]byte, 1<<20)
	for n := int64(0); n < grow; n += int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(int64(len(chunk)), grow-n)]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
	return nil
}

func (d *smallDisk) empty() error {
	if err := os.Remove(d.filler); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// diskFull asks the node's /readyz whether it counts its disk as full (the
// "disk" member, node/ops.go).
func (p *proc) diskFull() (bool, error) {
	resp, err := probe.Get(p.url + "/readyz")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false, fmt.Errorf("%s /readyz: %s, %w", p.id, resp.Status, err)
	}
	return strings.HasPrefix(body["disk"], "full"), nil
}

// healthy is /healthz answering 200.
func (p *proc) healthy() error {
	resp, err := probe.Get(p.url + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s /healthz: %s", p.id, resp.Status)
	}
	return nil
}

// injectDiskFull is the fault: fill the node's disk below its reserve
// (leaving more than its ballast, which it would otherwise free), wait
// until the node says its disk is full, hold while /healthz and the
// process stay up, then free the space and wait until the node takes
// writes again. The window in which the node reported its disk full is
// recorded, for the checks (checkDiskFaults).
func (s *scheduler) injectDiskFull(f *faultRecord, d time.Duration) error {
	c := s.c
	f.Node = c.diskNode
	p := c.nodes[f.Node]
	role := "follower"
	if f.OnLeader = s.c.leader(s.admin) == f.Node; f.OnLeader {
		role = "leader"
	}
	// Somewhere between the ballast and the reserve, drawn like the rest.
	leave := uint64(smallDiskBallast) + 2<<20 + uint64(s.rng.Int63n(smallDiskReserve-smallDiskBallast-4<<20))
	if err := p.disk.fill(leave); err != nil {
		return fmt.Errorf("fill %s's disk: %w", p.id, err)
	}
	free, _ := p.disk.free()
	f.Detail = fmt.Sprintf("as %s, %.1f MiB left", role, float64(free)/(1<<20))
	// The node gives space back as it works (a flushed memtable's log, a
	// compacted table, a trimmed Raft log segment: up to 16 MiB at once),
	// so the disk is topped up to leave again at every look, as whatever
	// fills a real disk goes on filling it. Filled once, a leader 5.4 MiB
	// under its reserve never found its disk full in 15 s: what it freed
	// before its next look kept it above the reserve (seed
	// 1796443520989132947).
	err := pollFor(15*time.Second, func() error {
		if err := p.disk.fill(leave); err != nil {
			return fmt.Errorf("fill %s's disk: %w", p.id, err)
		}
		if full, err := p.diskFull(); err != nil || !full {
			return fmt.Errorf("%s does not report its disk full (%v)", p.id, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	f.FullFrom = time.Now()
	deadline := time.Now().Add(d)
	var looked time.Time
	for time.Now().Before(deadline) {
		if f.OnLeader && !f.HandedOff && time.Since(looked) >= time.Second {
			looked = time.Now()
			if l := s.c.leader(s.admin); l >= 0 && l != f.Node {
				f.HandedOff = true
				f.Detail += fmt.Sprintf(", handed off to n%d", l+1)
			}
		}
		if !p.alive() {
			return fmt.Errorf("%s exited with its disk full", p.id)
		}
		if err := p.healthy(); err != nil {
			return fmt.Errorf("with its disk full: %w", err)
		}
		if err := p.disk.fill(leave); err != nil {
			return fmt.Errorf("fill %s's disk: %w", p.id, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.FullTo = time.Now()
	if err := p.disk.empty(); err != nil {
		return err
	}
	f.Detail += fmt.Sprintf(", full for %s", f.FullTo.Sub(f.FullFrom).Round(time.Millisecond))
	return pollFor(15*time.Second, func() error {
		if !p.alive() {
			return fmt.Errorf("%s exited after its disk was freed", p.id)
		}
		if full, err := p.diskFull(); err != nil || full {
			return fmt.Errorf("%s still reports its disk full (%v)", p.id, err)
		}
		return nil
	})
}

// diskFullRefusal: the answer is the disk guard's 507, given before the
// command entered the Raft log (raft/diskspace.go, admit), and after a
// forwarded write's resend only if no earlier send can have reached a
// leader (cluster/batch.go): the write did not happen.
func diskFullRefusal(st int, e apiError) bool {
	return st == http.StatusInsufficientStorage && e.Error.Code == "quotaLimitReached" &&
		strings.HasPrefix(e.Error.Message, "The server's disk is full (")
}

// checkDiskFaults checks what the history shows of each full disk: the
// full node went on serving reads, and a full leader refused writes with
// the guard's 507 until it handed its leadership to a node with room. It returns the number of such refusals in the run.
func checkDiskFaults(v *verdict, faults []faultRecord, ops []*op) (refused int) {
	for _, o := range ops {
		if o.NotApplied && o.Status == http.StatusInsufficientStorage {
			refused++
		}
	}
	for _, f := range faults {
		if f.Kind != faultDiskFull || f.FullFrom.IsZero() {
			continue
		}
		var reads, refusals, ackedWrites int
		for _, o := range ops {
			if o.Start.Before(f.FullFrom) || o.End.After(f.FullTo) {
				continue
			}
			switch {
			case o.Node == f.Node && (o.Kind == opGet || o.Kind == opList) && o.acked():
				reads++
			case o.NotApplied && o.Status == http.StatusInsufficientStorage:
				refusals++
			case (o.Kind == opPut || o.Kind == opPatch) && o.acked():
				ackedWrites++
			}
		}
		if reads == 0 {
			v.failf("%s: the full node served no read while full", f)
		}
		if f.OnLeader && refusals == 0 && !f.HandedOff {
			v.failf("%s: the full leader neither refused a write with 507 nor handed its leadership to a node with room", f)
		}
		v.notes = append(v.notes, fmt.Sprintf("%s: %d reads on the full node, %d writes refused with 507, %d put/patch acknowledged",
			f, reads, refusals, ackedWrites))
	}
	return refused
}
