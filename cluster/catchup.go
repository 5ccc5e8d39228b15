package cluster

import (
	"time"
)

// learnCatchUpTarget asks the leader, for a node that came up without Raft
// state, what it must hold before it votes (raft/voteguard.go): the
// leader's read index, which covers every entry committed before it was
// asked, so every entry this node may have acknowledged before it lost
// its data. Until a leader answers, the node does not vote.
func (c *Cluster) learnCatchUpTarget() {
	if !c.store.NeedsCatchUpTarget() {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for c.store.NeedsCatchUpTarget() {
			ctx, cancel := c.stopContext(5 * time.Second)
			index, err := c.fetchReadIndex(ctx)
			cancel()
			if err == nil && index > 0 {
				if err := c.store.SetCatchUpTarget(index); err != nil {
					c.log.Warn("could not record the index this node must catch up to", "error", err)
				} else {
					c.log.Info("catching up: this node votes once it holds the cluster's log through this index", "index", index)
				}
				return
			}
			if c.pause(500*time.Millisecond) != nil {
				return
			}
		}
	}()
}
