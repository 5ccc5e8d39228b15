package raft

import (
	"io/fs"
	"path/filepath"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gauges an operator watches on every node's store: its
// Raft role and term (a term that keeps rising means elections keep
// happening), the commit index next to herald_raft_applied_index (a gap
// that grows is a node that cannot keep up), and Badger's two sizes, since
// the value log grows until garbage collection and a backup's size follows
// them. The sizes are read from the directory at each scrape, in blocks
// used: Badger's own Size is refreshed once a minute and counts the value
// log's preallocated, still sparse, length.
func (s *Store) Metrics() []prometheus.Collector {
	stages := append(s.timings.collectors(), raftStages().collectors()...)
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	return append([]prometheus.Collector{
		gauge("herald_raft_leader", "1 while this node is the Raft leader.", func() float64 {
			if s.raft.State() == hraft.Leader {
				return 1
			}
			return 0
		}),
		gauge("herald_raft_state", "Raft role of this node: 0 follower, 1 candidate, 2 leader, 3 shut down.",
			func() float64 { return float64(s.raft.State()) }),
		gauge("herald_raft_term", "Current Raft term.", func() float64 { return float64(s.raft.CurrentTerm()) }),
		gauge("herald_raft_commit_index", "Highest Raft index this node knows to be committed.",
			func() float64 { return float64(s.raft.CommitIndex()) }),
		gauge("herald_raft_last_contact_seconds", "Seconds since a follower last heard from the leader; 0 on the leader.",
			func() float64 {
				if s.raft.State() == hraft.Leader {
					return 0
				}
				last := s.raft.LastContact()
				if last.IsZero() {
					return 0
				}
				return time.Since(last).Seconds()
			}),
		// The log since the newest snapshot is what a restart replays and
		// what compaction removes: it should fall back every
		// --raft-snapshot-threshold entries, also under load.
		gauge("herald_raft_snapshot_index", "Raft index of this node's newest snapshot; the log up to it is compacted.",
			func() float64 { return float64(s.LogStats().SnapshotIndex) }),
		gauge("herald_raft_log_entries", "Raft log entries after the newest snapshot (what a restart replays).",
			func() float64 { return float64(s.LogStats().SinceSnapshot) }),
		gauge("herald_raft_log_bytes", "Disk used by the Raft log (raft-wal/).",
			func() float64 { return float64(dirUsage(filepath.Join(s.opts.Dir, walDirName), "")) }),
		gauge("herald_badger_lsm_bytes", "Disk used by Badger's LSM tree (.sst tables).",
			func() float64 { return float64(s.badgerUsage(".sst")) }),
		gauge("herald_badger_vlog_bytes", "Disk used by Badger's value log (.vlog files).",
			func() float64 { return float64(s.badgerUsage(".vlog")) }),
		gauge("herald_badger_memtable_bytes", "Disk used by Badger's memtable write-ahead logs (.mem files).",
			func() float64 { return float64(s.badgerUsage(".mem")) }),
		// Rises with every table written under a --memory below 512 MiB;
		// stays 0 where Badger keeps its pool (builderpool.go).
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_badger_table_builders_released_total",
			Help: "Table builders' buffers handed back to the Go collector instead of Badger's pool."},
			func() float64 { return float64(s.buildersReleased.Load()) }),
	}, stages...)
}

// badgerUsage sums the blocks used by Badger's files with extension ext.
func (s *Store) badgerUsage(ext string) int64 { return dirUsage(s.db.Opts().Dir, ext) }

// dirUsage sums the blocks used by the files under dir with extension ext,
// or by all of them when ext is empty.
func dirUsage(dir, ext string) int64 {
	var n int64
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (ext != "" && filepath.Ext(path) != ext) {
			return nil // a file compacted away mid-walk is simply not counted
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		n += allocated(info)
		return nil
	})
	return n
}
