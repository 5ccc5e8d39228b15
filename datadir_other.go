//go:build !unix

package main

import "os"

// Elsewhere Badger's own directory lock is the only guard.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) {}
