// Package freeport hands tests loopback addresses to bind servers to.
package freeport

import (
	"testing"

	"github.com/herald-notify/herald/internal/loopport"
)

// Addr returns a loopback address whose port was free at the time of
// asking, never the same twice in one process (loopport.Pick).
func Addr(t testing.TB) string {
	t.Helper()
	addr, err := loopport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
