//go:build linux

package chaos

import (
	"fmt"
	"math/rand"
	"syscall"
	"time"

	"github.com/herald-notify/herald/internal/faultproxy"
)

// Fault kinds.
const (
	faultKill       = "kill -9 + restart"
	faultPause      = "SIGSTOP/SIGCONT"
	faultIsolate    = "node cut off"
	faultOneWay     = "one-way cut"
	faultLatency    = "added latency"
	faultDrop       = "dropped connections"
	faultRestartAll = "whole-cluster restart"
	faultDiskFull   = "full disk"
)

var faultKinds = []string{faultKill, faultPause, faultIsolate, faultOneWay, faultLatency, faultDrop, faultRestartAll, faultDiskFull}

// kinds is the faults this cluster can take: a full disk needs the node
// on its own small filesystem.
func (c *cluster) kinds() []string {
	var out []string
	for _, k := range faultKinds {
		if k != faultDiskFull || c.diskNode >= 0 {
			out = append(out, k)
		}
	}
	return out
}

// faultRecord is one injected fault, for the table and for reading a
// failure against the history's times.
type faultRecord struct {
	Kind       string
	Node       int // -1: every node or every link
	Start, End time.Time
	Detail     string
	// FullFrom..FullTo: a full disk, while the node said so.
	FullFrom, FullTo time.Time
	OnLeader         bool // the full node led when the fault began
	// HandedOff: a full leader was seen to lead no more while full (it
	// hands the leadership to a node with room).
	HandedOff bool
}

func (f faultRecord) String() string {
	n := "all"
	if f.Node >= 0 {
		n = fmt.Sprintf("n%d", f.Node+1)
	}
	return fmt.Sprintf("[%s..%s] %s on %s %s", f.Start.Format("15:04:05.000"), f.End.Format("15:04:05.000"), f.Kind, n, f.Detail)
}

// scheduler injects one fault at a time, from a seeded RNG: the fault, its
// target and its length. After each it heals and waits for every node to
// be ready again, so that faults never pile up into more than the one
// failure a three-node cluster is promised to survive.
type scheduler struct {
	c     *cluster
	h     *history
	rng   *rand.Rand
	admin string
	// hold is the range of a fault's length.
	holdMin, holdMax time.Duration
	logf             func(string, ...any)
}

func (s *scheduler) hold() time.Duration {
	return s.holdMin + time.Duration(s.rng.Int63n(int64(s.holdMax-s.holdMin)+1))
}

// target picks a node, the leader seven times in ten: faults on the
// leader are the ones that test failover.
func (s *scheduler) target() int {
	if s.rng.Intn(10) < 7 {
		if l := s.c.leader(s.admin); l >= 0 {
			return l
		}
	}
	return s.rng.Intn(len(s.c.nodes))
}

// inject runs one fault of the kind to its end, heals, and waits until
// the cluster is ready; an error means it did not recover.
func (s *scheduler) inject(kind string) error {
	c := s.c
	f := faultRecord{Kind: kind, Node: -1, Start: time.Now()}
	d := s.hold()
	switch kind {
	case faultKill:
		f.Node = s.target()
		p := c.nodes[f.Node]
		p.kill()
		f.Detail = fmt.Sprintf("down %s", d.Round(time.Millisecond))
		time.Sleep(d) // the outage itself
		if err := p.start(c.bin); err != nil {
			return err
		}
	case faultPause:
		f.Node = s.target()
		p := c.nodes[f.Node]
		p.signal(syscall.SIGSTOP)
		f.Detail = fmt.Sprintf("stopped %s", d.Round(time.Millisecond))
		time.Sleep(d)
		p.signal(syscall.SIGCONT)
	case faultIsolate:
		f.Node = s.target()
		g := c.linksOf(f.Node)
		g.Cut()
		f.Detail = fmt.Sprintf("for %s", d.Round(time.Millisecond))
		time.Sleep(d)
		g.Heal()
	case faultOneWay:
		// What the node sends to the others vanishes; what they send
		// reaches it: it keeps hearing the cluster, the cluster stops
		// hearing it.
		f.Node = s.target()
		var g faultproxy.Group
		for j := range c.nodes {
			if j != f.Node {
				c.link[f.Node][j].CutDirection(faultproxy.Forward)
				c.link[j][f.Node].CutDirection(faultproxy.Backward)
				g = append(g, c.link[f.Node][j]...)
				g = append(g, c.link[j][f.Node]...)
			}
		}
		f.Detail = fmt.Sprintf("outbound for %s", d.Round(time.Millisecond))
		time.Sleep(d)
		g.Heal()
	case faultLatency:
		lat := time.Duration(20+s.rng.Intn(180)) * time.Millisecond
		g := c.allLinks()
		g.SetLatency(lat)
		f.Detail = fmt.Sprintf("%s each way for %s", lat, d.Round(time.Millisecond))
		time.Sleep(d)
		g.Heal()
	case faultDrop:
		g := c.allLinks()
		n := 2 + s.rng.Intn(4)
		for i := range n {
			g.DropConnections()
			if i < n-1 {
				time.Sleep(d / time.Duration(n))
			}
		}
		f.Detail = fmt.Sprintf("%d times in %s", n, d.Round(time.Millisecond))
	case faultRestartAll:
		f.Detail = "SIGTERM took"
		for _, p := range c.nodes {
			t0 := time.Now()
			if err := p.terminate(30 * time.Second); err != nil {
				return err
			}
			f.Detail += fmt.Sprintf(" %s", time.Since(t0).Round(time.Millisecond))
		}
		for _, p := range c.nodes {
			if err := p.start(c.bin); err != nil {
				return err
			}
		}
	case faultDiskFull:
		if err := s.injectDiskFull(&f, d); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	default:
		return fmt.Errorf("no fault %q", kind)
	}
	healed := time.Now()
	err := c.waitReady(readyTimeout)
	f.End = time.Now()
	f.Detail += fmt.Sprintf("; all ready %s later", f.End.Sub(healed).Round(time.Millisecond))
	s.h.addFault(f)
	s.logf("fault %s", f)
	if err != nil {
		return fmt.Errorf("no recovery after %s: %w", f, err)
	}
	return nil
}

// run injects faults until the deadline: in the short form each kind once
// in a random order, in the long form a random kind each time; gaps of
// 1–3 s between them keep the load running on a healthy cluster too.
func (s *scheduler) run(until time.Time, everyKindOnce bool) error {
	kinds := s.c.kinds()
	if everyKindOnce {
		s.rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	}
	for i := 0; time.Now().Before(until); i++ {
		if everyKindOnce && i == len(kinds) {
			return nil
		}
		time.Sleep(time.Second + time.Duration(s.rng.Int63n(int64(2*time.Second)))) // the gap: load on a healthy cluster
		kind := kinds[s.rng.Intn(len(kinds))]
		if everyKindOnce {
			kind = kinds[i]
		}
		if err := s.inject(kind); err != nil {
			return err
		}
	}
	return nil
}
