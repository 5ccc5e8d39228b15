package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/raft"
)

func withIdentity(tr *Transport, id string, restored bool) *Transport {
	tr.SetIdentity(func() (raft.Identity, error) { return raft.Identity{ID: id, Restored: restored, Member: true}, nil })
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
	// Plain Raft has no answer to its protocol byte: a refusal is the
	// acceptor hanging up.
	hungUp := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := c.Read(b[:])
		hungUp <- err
	}()
	var s net.Conn
	select {
	case s = <-accepted:
	case err := <-hungUp:
		return fmt.Errorf("the acceptor hung up: %v", err)
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
// A node that names no cluster (new, of a cluster from before identities,
// or a member that has not applied its cluster's raise yet) is let in by any
// node but one of a cluster that began with a restore, whose members all
// name it: a node left out of a restore of a cluster that never had an
// identity, or the rest of that cluster still running, would otherwise win
// the restored nodes' votes or make them follow. One whose state is not
// open yet lets no Raft connection through.
func TestRaftConnectionsStayWithinOneCluster(t *testing.T) {
	logs := &syncbuf.Buffer{}
	restored := withIdentity(newTestTransport(t, testKey, TLSFiles{}, logs), "restored-cluster", true)
	member := withIdentity(newTestTransport(t, testKey, TLSFiles{}, nil), "restored-cluster", true)
	leftOut := withIdentity(newTestTransport(t, testKey, TLSFiles{}, nil), "replaced-cluster", false)
	raised := withIdentity(newTestTransport(t, testKey, TLSFiles{}, nil), "raised-cluster", false)
	nameless := withIdentity(newTestTransport(t, testKey, TLSFiles{}, nil), "", false)
	fresh := newTestTransport(t, testKey, TLSFiles{}, nil)
	fresh.SetIdentity(func() (raft.Identity, error) { return raft.Identity{}, nil })
	starting := newTestTransport(t, testKey, TLSFiles{}, nil)

	for _, c := range []struct {
		name     string
		from, to *Transport
	}{{"member to restored", member, restored}, {"restored to member", restored, member},
		{"restored to a new node, without state", restored, fresh},
		{"a raised cluster's node to one that names no cluster", raised, nameless},
		{"a node that names no cluster to one whose cluster got its identity at the raise", nameless, raised}} {
		if err := raftDial(t, c.from, c.to); err != nil {
			t.Errorf("%s: %v, want a Raft connection", c.name, err)
		}
	}
	if err := raftDial(t, nameless, restored); err == nil {
		t.Error("a node that names no cluster dialed Raft on a node of a restored cluster")
	}
	// Every member of a restored cluster names it: a node with state that
	// names none holds an older history in a member's place.
	if err := raftDial(t, restored, nameless); !errors.Is(err, ErrOtherCluster) {
		t.Errorf("a restored cluster's node dialed one with state that names no cluster: %v, want ErrOtherCluster", err)
	}
	waitLog(t, logs, "names no cluster")

	err := raftDial(t, leftOut, restored)
	if !errors.Is(err, ErrOtherCluster) || !strings.Contains(err.Error(), "replaced-cluster") ||
		!strings.Contains(err.Error(), "restored-cluster") {
		t.Errorf("the left-out node dials a restored one: %v, want ErrOtherCluster naming both clusters", err)
	}
	if err := raftDial(t, restored, leftOut); !errors.Is(err, ErrOtherCluster) {
		t.Errorf("a restored node dials the left-out one: %v, want ErrOtherCluster", err)
	}
	waitLog(t, logs, "another cluster")

	if err := raftDial(t, starting, restored); err == nil {
		t.Error("a node whose state is not open dialed Raft")
	}
	if err := raftDial(t, restored, starting); err == nil {
		t.Error("a node whose state is not open took a Raft connection that names a cluster")
	}
	if err := raftDial(t, nameless, starting); err == nil {
		t.Error("a node whose state is not open took a Raft connection")
	}
	// The internal HTTP side names no cluster: discovery asks any node
	// who it is.
	roundTrip(t, leftOut, restored)
}

func waitLog(t *testing.T, logs *syncbuf.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", want, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
