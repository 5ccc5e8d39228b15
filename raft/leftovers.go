package raft

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// What a process killed mid-write leaves in a data directory, and what the
// next start does with it, before it opens what the files belong to
// (TestKillsDuringStartLeaveANodeThatStarts kills starts at random).

// dropEmptyLogs removes the empty memtable logs (*.mem) and value logs
// (*.vlog) in dir. Badger creates either file and then sizes it (a value
// log at every open, a memtable log at every memtable); a process killed
// between the two leaves an empty file, and badger v4.9.6 refuses to open
// a directory that holds one ("while opening fid: N err: Create a new
// file", "Open existing file: …vlog err: Create a new file"), so the node
// could not start again (a kill -9 in the e2e tests met the first). An
// empty file holds no write: Herald's values all stay in the LSM tree
// (WithValueThreshold), and Badger's applied state is rebuilt from the Raft
// log in any case, so the file goes.
func dropEmptyLogs(dir string, log *slog.Logger) error {
	for _, pattern := range []string{"*.mem", "*.vlog"} {
		files, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return err
		}
		for _, f := range files {
			fi, err := os.Stat(f)
			if err != nil || fi.Size() != 0 {
				continue
			}
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("remove the empty log %s: %w", f, err)
			}
			log.Warn("removed an empty log file left by a crash", "file", f)
		}
	}
	return nil
}

// dropCrashLeftovers removes the temporary files of a snapshot load or
// receipt that a kill interrupted: a load's copy of the stream
// (restore-*.tmp, loadSnapshot) and a snapshot being written
// (snapshots/snapshots/*.tmp, hashicorp/raft's FileSnapshotStore, which
// skips them with a warning at every start but never deletes them). Each is
// as large as the state it carried, and nothing reads them again: a load
// starts over, and a snapshot counts only once renamed into place.
func dropCrashLeftovers(dir string, log *slog.Logger) error {
	var left []string
	for _, pattern := range []string{filepath.Join(dir, "restore-*.tmp"), filepath.Join(dir, "snapshots", "snapshots", "*.tmp")} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			return err
		}
		left = append(left, m...)
	}
	for _, p := range left {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("remove %s, left by an interrupted snapshot: %w", p, err)
		}
		log.Warn("removed what an interrupted snapshot left", "path", p)
	}
	return nil
}
