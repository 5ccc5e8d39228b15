// Package loopport picks loopback addresses for servers a process is about
// to start: the tests' nodes (internal/freeport) and herald bench's.
package loopport

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// Pick returns a loopback address whose port was free at the time of
// asking. The port comes from below the kernel's ephemeral range (32768 and
// up on Linux), so that no outgoing connection of this or another process
// can take it as its source port between now and the server's bind;
// processes pick at random from the same range, which makes them unlikely
// to meet. One process is never handed the same port twice, or two servers
// (say one node's HTTP and another's Raft port) could be given it: the
// kernel's choice for port 0 hands a closed port out again.
func Pick() (string, error) {
	for range 1000 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12000)))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		if _, dup := handedOut.LoadOrStore(addr, true); !dup {
			return addr, nil
		}
	}
	return "", errors.New("no free port between 20000 and 32000 on 127.0.0.1")
}

var handedOut sync.Map
