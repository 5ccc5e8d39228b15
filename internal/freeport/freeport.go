// Package freeport hands tests loopback addresses to bind servers to.
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Addr returns a loopback address whose port was free at the time of asking.
// The port comes from below the kernel's ephemeral range (32768 and up on
// Linux), so that no outgoing connection of this or another process can take
// it as its source port between now and the server's bind; test processes
// pick at random from the same range, which makes them unlikely to meet. One
// process is never handed the same port twice, or two servers (say one
// node's HTTP and another's Raft port) could be given it.
func Addr(t testing.TB) string {
	t.Helper()
	for range 1000 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12000)))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		if _, dup := handedOut.LoadOrStore(addr, true); !dup {
			return addr
		}
	}
	t.Fatal("no free port between 20000 and 32000 on 127.0.0.1")
	return ""
}

var handedOut sync.Map
