package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/syncbuf"
)

func withIdentity(tr *Transport, id string) *Transport {
	tr.SetIdentity(func() (string, error) { return id, nil })
	return tr
}

// raftDial dials to's Raft side from from and, when it is let in, checks
// that the connection reaches Raft's listener and carries bytes.
func raftDial(t *testing.T, from, to *Transport) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := to.raft.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := from.Dial(ctx, to.Addr(), protoRaft)
	if err != nil {
		return err
	}
	defer c.Close()
	var s net.Conn
	select {
	case s = <-accepted:
	case <-ctx.Done():
		t.Fatal("the acceptor never handed the connection to Raft")
	}
	defer s.Close()
	c.Write([]byte("vote"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "vote" {
		t.Fatalf("Raft read %q, %v", buf, err)
	}
	return nil
}

// A node that holds another cluster's data (left out of a restore) has the
// same key and addresses as a member: only the cluster's identity tells it
// apart, and a Raft connection between the two is refused, whichever side
// dials, with both ids in the dialer's error and a warning on the acceptor.
// A node without an identity (new, or of a cluster that has none yet) is
// let in both ways; one whose state is not open yet lets no Raft
// connection through.
func TestRaftConnectionsStayWithinOneCluster(t *testing.T) {
	logs := &syncbuf.Buffer{}
	restored := withIdentity(newTestTransport(t, testKey, TLSFiles{}, logs), "restored-cluster")
	member := withIdentity(newTestTransport(t, testKey, TLSFiles{}, nil), "restored-cluster")
	leftOut := withIdentity(newTestTransport(t, testKey, TLSFiles{}, nil), "replaced-cluster")
	fresh := withIdentity(newTestTransport(t, testKey, TLSFiles{}, nil), "")
	starting := newTestTransport(t, testKey, TLSFiles{}, nil)

	for _, c := range []struct {
		name     string
		from, to *Transport
	}{{"member to restored", member, restored}, {"restored to member", restored, member},
		{"fresh to restored", fresh, restored}, {"restored to fresh", restored, fresh}} {
		if err := raftDial(t, c.from, c.to); err != nil {
			t.Errorf("%s: %v, want a Raft connection", c.name, err)
		}
	}

	err := raftDial(t, leftOut, restored)
	if !errors.Is(err, ErrOtherCluster) || !strings.Contains(err.Error(), "replaced-cluster") ||
		!strings.Contains(err.Error(), "restored-cluster") {
		t.Errorf("the left-out node dials a restored one: %v, want ErrOtherCluster naming both clusters", err)
	}
	if err := raftDial(t, restored, leftOut); !errors.Is(err, ErrOtherCluster) {
		t.Errorf("a restored node dials the left-out one: %v, want ErrOtherCluster", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "another cluster") {
		if time.Now().After(deadline) {
			t.Fatalf("the restored node did not log the refusal; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := raftDial(t, starting, restored); err == nil {
		t.Error("a node whose state is not open dialed Raft")
	}
	if err := raftDial(t, restored, starting); err == nil {
		t.Error("a node whose state is not open took a Raft connection that names a cluster")
	}
	// The internal HTTP side names no cluster: discovery asks any node
	// who it is.
	roundTrip(t, leftOut, restored)
}
