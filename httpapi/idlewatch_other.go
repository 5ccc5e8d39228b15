//go:build !linux

package httpapi

// idleWatcher has no kernel watch to use here: every wait starts its
// goroutine, which blocks in a read as it did before the watcher.
type idleWatcher struct{}

func startIdleWatcher() *idleWatcher { return nil }

func (w *idleWatcher) arm(*idleWatch, func()) bool { return false }

func (w *idleWatcher) disarm(*idleWatch) {}
