package raft

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

func testLayer(t *testing.T, key string) (*authLayer, chan error) {
	t.Helper()
	rejected := make(chan error, 8)
	l, err := newAuthLayer("127.0.0.1:0", []byte(key), nil, func(_ net.Addr, err error) { rejected <- err })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, rejected
}

// Peers sharing the key get a connection that carries data both ways.
func TestAuthLayerSameKey(t *testing.T) {
	a, _ := testLayer(t, "k1")
	b, _ := testLayer(t, "k1")
	c, err := b.Dial(hraft.ServerAddress(a.Addr().String()), time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	s, err := a.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// A dialer with the wrong key is refused on both sides: its Dial fails, and
// the acceptor never hands the connection to Raft.
func TestAuthLayerWrongKey(t *testing.T) {
	a, rejectedA := testLayer(t, "right")
	b, _ := testLayer(t, "wrong")
	_, err := b.Dial(hraft.ServerAddress(a.Addr().String()), time.Second)
	if !errors.Is(err, ErrHandshake) {
		t.Fatalf("dial with wrong key: %v, want ErrHandshake", err)
	}
	// The dialer gives up before proving anything (the acceptor's MAC did
	// not verify), so the acceptor sees the connection end mid-handshake.
	select {
	case <-rejectedA:
	case <-time.After(2 * HandshakeTimeout):
		t.Fatal("acceptor did not refuse the connection")
	}
	select {
	case c := <-a.conns:
		t.Fatalf("a connection with the wrong key reached Raft: %v", c.RemoteAddr())
	default:
	}
}

// A raw client that answers the challenge with a forged MAC gets nothing
// after the acceptor's challenge: no OK byte, no Raft traffic, just EOF.
func TestAuthLayerForgedResponse(t *testing.T) {
	a, rejected := testLayer(t, "right")
	c, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(append([]byte(handshakeMagic), make([]byte, nonceSize)...))
	challenge := make([]byte, nonceSize+32)
	if _, err := io.ReadFull(c, challenge); err != nil {
		t.Fatal(err)
	}
	c.Write(handshakeMAC([]byte("guess"), "dialer", make([]byte, nonceSize), challenge[:nonceSize]))
	c.SetReadDeadline(time.Now().Add(2 * HandshakeTimeout))
	rest, err := io.ReadAll(c)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after a forged response got %d bytes, %v; want EOF", len(rest), err)
	}
	if err := <-rejected; !errors.Is(err, ErrHandshake) {
		t.Fatalf("rejected with %v", err)
	}
	// A reflected acceptor MAC is not a valid dialer MAC either.
	c2, _ := net.Dial("tcp", a.Addr().String())
	defer c2.Close()
	c2.Write(append([]byte(handshakeMagic), make([]byte, nonceSize)...))
	io.ReadFull(c2, challenge)
	c2.Write(challenge[nonceSize:])
	rest, _ = io.ReadAll(c2)
	if len(rest) != 0 {
		t.Fatalf("a reflected MAC was accepted")
	}
}

// Stores sharing a key form a cluster over the authenticated transport.
func TestStoresWithTheKeyReplicate(t *testing.T) {
	open := func(id, key string, boot bool) *Store {
		s, err := Open(Options{Dir: t.TempDir(), NodeID: id, RaftAddr: "127.0.0.1:0", Bootstrap: boot,
			ClusterKey: []byte(key), HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	leader := open("a", "k", true)
	deadline := time.Now().Add(10 * time.Second)
	for !leader.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	good := open("b", "k", false)
	if err := leader.Raft().AddVoter("b", good.transport.LocalAddr(), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	for {
		if addr, _ := good.Raft().LeaderWithID(); addr != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower with the right key never heard from the leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
