//go:build !linux

package raft

// backBadgerFiles is a no-op where there is no fallocate: the disk guard's
// reserve and ballast are the only defence there.
func backBadgerFiles(string, uint64) error { return nil }
