package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/herald-notify/herald/node"
)

// lockName is the file in a data directory that a running herald holds
// locked. Badger locks its own directory too, but its message names Badger;
// this lock is taken first, so the user reads which directory is busy and
// what to do.
const lockName = "herald.lock"

// errDirInUse is returned when another process holds the data directory.
var errDirInUse = errors.New("data directory in use")

// lockDataDir creates dir if needed and locks it for this process until the
// returned release is called (or the process ends: the kernel drops the
// lock of a killed process, so a crash never leaves a stale lock).
func lockDataDir(dir string) (release func(), err error) {
	// Before anything is made there, the lock included: opened by name,
	// it would follow a link another user planted.
	if err := node.CheckDataDir(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errDirInUse) {
			return nil, fmt.Errorf("another herald is using %s: stop it first, or give this one its own --data-dir (and --http-addr, --raft-addr)", dir)
		}
		return nil, fmt.Errorf("data directory %s: lock: %w", dir, err)
	}
	return func() { unlockFile(f); f.Close() }, nil
}

// dirEntries lists dir without the lock file; a missing dir is empty.
func dirEntries(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Name() != lockName {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// replacedPrefix names the directory inside the data directory that a
// restore with --force moves the old entries to while it moves the restored
// ones in.
const replacedPrefix = ".replaced-"

// checkSwapped refuses a data directory that a restore was stopped in while
// it swapped the restored entries in: it holds part of the old state and part
// of the new (or nothing, which a node would take for a new cluster).
func checkSwapped(dir string) error {
	names, err := dirEntries(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if strings.HasPrefix(name, replacedPrefix) {
			return fmt.Errorf("a restore into %s was stopped while it moved the restored data in: the directory holds "+
				"part of it, and the old data is in %s; run the restore again (herald restore --force), or move the old "+
				"data back", dir, filepath.Join(dir, name))
		}
	}
	return nil
}

// A restore's work directory inside the data directory.
const partialPrefix, partialSuffix = ".restore-", ".partial"

// restoreDataDir fills dir with what load writes, so that dir holds either
// everything it held before or the complete restored state, never a part:
// load writes into a hidden directory inside dir (the same filesystem, and
// dir may be a mount point that cannot itself be replaced), and its entries
// are moved into place only once load succeeded. A dir that holds anything
// is refused unless force is set, in which case its entries are replaced.
func restoreDataDir(dir string, force bool, load func(tmp string) error) error {
	all, err := dirEntries(dir)
	if err != nil {
		return err
	}
	// What a restore that was stopped (Ctrl-C, a kill) left is no node's
	// data: it does not make dir hold anything, and goes once the lock is
	// ours, so that no other restore is writing it.
	var existing, stale []string
	for _, name := range all {
		if strings.HasPrefix(name, partialPrefix) && strings.HasSuffix(name, partialSuffix) {
			stale = append(stale, name)
		} else {
			existing = append(existing, name)
		}
	}
	if len(existing) > 0 && !force {
		return fmt.Errorf("%s is not empty (it holds %s): restore into an empty or new directory, or give --force to replace what it holds",
			dir, strings.Join(existing, ", "))
	}
	_, statErr := os.Stat(dir)
	created := errors.Is(statErr, os.ErrNotExist)
	release, err := lockDataDir(dir)
	if err != nil {
		return err
	}
	defer release()
	for _, name := range stale {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove %s, left by a restore that was stopped: %w", name, err)
		}
	}
	// A failed restore leaves dir as it found it: gone if it was not there,
	// empty if it was empty.
	undo := func() {
		if len(existing) == 0 {
			os.Remove(filepath.Join(dir, lockName))
		}
		if created {
			os.Remove(dir)
		}
	}

	tmp := filepath.Join(dir, partialPrefix+randomSuffix()+partialSuffix)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		undo()
		return err
	}
	if err := load(tmp); err != nil {
		os.RemoveAll(tmp)
		undo()
		return err
	}
	if err := syncDir(tmp); err != nil {
		os.RemoveAll(tmp)
		undo()
		return err
	}
	fresh, err := dirEntries(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	// Out of the way first, so that no old file stays beside new ones.
	var old string
	if len(existing) > 0 {
		old = filepath.Join(dir, replacedPrefix+randomSuffix())
		if err := os.Mkdir(old, 0o700); err != nil {
			os.RemoveAll(tmp)
			return err
		}
		for _, name := range existing {
			if err := os.Rename(filepath.Join(dir, name), filepath.Join(old, name)); err != nil {
				os.RemoveAll(tmp)
				return fmt.Errorf("moving the old %s aside (it is in %s now): %w", name, old, err)
			}
		}
	}
	for _, name := range fresh {
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("moving the restored %s into place: %w", name, err)
		}
	}
	if err := os.Remove(tmp); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if old != "" {
		// Renamed first, to a name that is no node's data, so that a kill
		// while it is removed does not leave a swap stopped half way.
		done := filepath.Join(dir, partialPrefix+randomSuffix()+partialSuffix)
		if err := os.Rename(old, done); err != nil {
			return err
		}
		return os.RemoveAll(done)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func randomSuffix() string {
	b := make([]byte, 6)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b)
}

// lockStoppedDataDir locks the existing data directory dir of a node that
// must not be running, for a command that reads it in its place.
func lockStoppedDataDir(dir string) (release func(), err error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	return lockDataDir(dir)
}
